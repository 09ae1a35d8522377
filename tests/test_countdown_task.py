"""Countdown as a task (issue 16): generator, step format, verifier, and the seams every stage reads."""

from __future__ import annotations

import builtins
import json
import random
from fractions import Fraction

import pytest

from astro_reasoner.tasks import countdown_solver as cd
from astro_reasoner.tasks.countdown import CountdownGold, evaluate, leaves, parse, verify
from astro_reasoner.types import Verdict

NUMS, TARGET = (8, 2, 3, 4), 22


def brute_force(numbers, target) -> bool:
    """Independent of the solver: every pair, every operation (both orders), exact Fractions, whole-number
    divisions only (the verifier's rule; negatives allowed)."""
    def go(vals):
        if len(vals) == 1:
            return vals[0] == target
        for i in range(len(vals)):
            for j in range(len(vals)):
                if i == j:
                    continue
                a, b = vals[i], vals[j]
                rest = [v for k, v in enumerate(vals) if k not in (i, j)]
                outs = [a + b, a - b, a * b]
                if b != 0 and (a / b).denominator == 1:
                    outs.append(a / b)
                if any(go(rest + [c]) for c in outs):
                    return True
        return False

    return go([Fraction(x) for x in numbers])


# ---- generator ---------------------------------------------------------------------------------------------

def test_every_generated_puzzle_is_solvable_and_its_solution_verifies():
    problems = cd.synthesize(60, seed=3, counts=(3, 4))
    assert {len(p.meta["numbers"]) for p in problems} == {3, 4}
    for p in problems:
        nums, target = p.meta["numbers"], p.meta["target"]
        assert p.answer == str(target) and p.meta["task"] == "countdown"
        assert all(1 <= x <= 12 for x in nums) and 5 <= target <= 40
        assert brute_force(nums, target), (nums, target)
        assert verify(p.meta["solution"], tuple(nums), target)[0] is Verdict.CORRECT


def test_unsolvable_puzzles_are_recognized():
    assert not cd.solvable([1, 1, 1], 40) and not brute_force([1, 1, 1], 40)
    assert cd.solvable([8, 2, 3, 4], 22)
    with pytest.raises(ValueError, match="cannot make"):
        cd.direct_solution([1, 1, 1], 40)


def test_splits_are_disjoint_by_numbers_and_target_and_seeded():
    keys = {}
    for split, seed in (("train", 0), ("validation", 0), ("test", 0), ("test", 1)):
        ps = cd.synthesize(40, seed=seed, split=split, counts=(3,), max_number=8, max_target=20)
        ks = {(tuple(sorted(p.meta["numbers"])), p.meta["target"]) for p in ps}
        assert len(ks) == len(ps)  # distinct within a set
        assert all(cd.split_of(*k) == split for k in ks)
        keys[(split, seed)] = ks
    assert not keys[("train", 0)] & (keys[("test", 0)] | keys[("test", 1)] | keys[("validation", 0)])
    assert not keys[("validation", 0)] & keys[("test", 0)]
    again = cd.synthesize(40, seed=0, split="train", counts=(3,), max_number=8, max_target=20)
    assert [p.to_json() for p in again] == [p.to_json() for p in cd.synthesize(
        40, seed=0, split="train", counts=(3,), max_number=8, max_target=20)]
    assert [p.to_json() for p in again[:15]] == [p.to_json() for p in cd.synthesize(
        15, seed=0, split="train", counts=(3,), max_number=8, max_target=20)]  # a larger n extends a smaller
    assert keys[("test", 0)] != keys[("test", 1)]


def test_generator_options_are_checked():
    with pytest.raises(ValueError, match="counts"):
        cd.synthesize(3, counts=(5,))
    with pytest.raises(ValueError, match="split"):
        cd.synthesize(3, split="dev")
    with pytest.raises(ValueError, match="could not make"):
        cd.synthesize(50, counts=(3,), min_number=1, max_number=1, min_target=1, max_target=3)


# ---- step format ---------------------------------------------------------------------------------------------

def test_step_format_restates_numbers_and_the_final_step_recomputes_the_boxed_expression():
    for nums, target in (((8, 2, 3, 4), 22), ((4, 9, 3), 21), ((12, 7, 6), 14), ((6, 4, 9, 1), 16)):
        sols = cd.solutions(nums, target)
        assert sols
        for root in sols[:40]:
            steps = cd.render_steps(nums, root)
            left = sorted(nums)
            for step in steps[:-1]:  # "a op b = c. Left: ...": one operation, the numbers left restated
                eq, _, rest = step.partition(". Left: ")
                lhs, _, c = eq.partition(" = ")
                a, op, b = lhs.split(" ")
                assert verify(f"\\boxed{{{lhs} = {c}}}", (int(a), int(b)), int(c))[0] is Verdict.CORRECT
                left.remove(int(a))
                left.remove(int(b))
                left = sorted(left + [int(c)])
                assert rest == ", ".join(map(str, left)) + "."
            final = steps[-1]
            assert "target" not in final.lower()  # it recomputes; it never asserts the target
            chain = final.removeprefix("Check: ").split(". The answer is")[0].split(" = ")
            assert len(chain) == len(steps)  # one link per operation
            for i, link in enumerate(chain):  # each link rewrites exactly one operation and keeps the value
                expr = parse(link)[0]
                assert len(leaves(expr)) == len(nums) - i and evaluate(expr) == target
            boxed = final.split("\\boxed{")[1].rstrip("}.")
            assert boxed == chain[0] and chain[-1] == str(target)
            assert verify(final, tuple(nums), target)[0] is Verdict.CORRECT


def test_worked_examples_are_written_by_the_solver():
    for (statement, solution), (nums, target) in zip(cd.examples(), cd.EXAMPLE_PUZZLES):
        assert statement == cd.statement(nums, target)
        assert solution == cd.direct_solution(nums, target)
        assert verify(solution, nums, target)[0] is Verdict.CORRECT


# ---- verifier ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, verdict, reason", [
    ("So \\boxed{(8-2)*3+4}.", "correct", "countdown"),
    ("\\boxed{4 + 3 \\times (8 - 2)}", "correct", "countdown"),
    ("\\boxed{\\left(8 − 2\\right) × 3 + 4}", "correct", "countdown"),
    ("\\boxed{(8 - 2) * 3 + 4 = 22}", "correct", "countdown"),
    ("\\boxed{[8 - 2] \\cdot 3 + 4}", "correct", "countdown"),
    ("\\boxed{(8-2)*3+4 = 21}", "wrong", "equation does not hold"),
    ("\\boxed{(8+2)*3-4}", "wrong", "value 26, target 22"),
    ("\\boxed{8*3-2}", "wrong", "leaves out 4"),
    ("\\boxed{8*3-2+4-4}", "wrong", "more often than given"),
    ("\\boxed{(8-2)*3+5}", "wrong", "5 (not given)"),
    ("\\boxed{22}", "wrong", "leaves out"),
    ("\\boxed{82 / 3 - 4}", "wrong", "82 (not given)"),  # no concatenation of digits
    ("\\boxed{(8-2)/(4-4)*3}", "wrong", None),  # 4 reused
    ("\\boxed{-8+2*3*4}", "unparseable", "not an expression"),  # no unary minus
    ("\\boxed{(8-2)*3+}", "unparseable", "unexpected end"),
    ("\\boxed{((8-2)*3+4}", "unparseable", "unbalanced"),
    ("\\boxed{8 2 3 4}", "unparseable", None),
    ("no box at all", "unparseable", "no final answer"),
    ("\\boxed{x}", "unparseable", "unexpected 'x'"),
])
def test_verdicts(text, verdict, reason):
    v, _, why = verify(text, NUMS, TARGET)
    assert v.value == verdict, why
    if reason:
        assert reason in why


def test_division_rules():
    # division by zero
    v, _, why = verify("\\boxed{6 / (3 - 3) + 8}", (6, 3, 3, 8), 8)
    assert (v, why) == (Verdict.WRONG, "division by zero")
    # non-integer intermediate: 8 / 3 * 3 would be 8 with fractions; the rule says whole divisions only
    v, _, why = verify("\\boxed{8 / 3 * 3 + 4}", (8, 3, 3, 4), 12)
    assert v is Verdict.WRONG and "non-integer intermediate" in why
    assert verify("\\boxed{8 * 3 / 3 + 4}", (8, 3, 3, 4), 12)[0] is Verdict.CORRECT
    # negative intermediates are allowed (the value of the expression is what counts)
    assert verify("\\boxed{4 - 8 + 6 * 1}", (4, 8, 6, 1), 2)[0] is Verdict.CORRECT
    # duplicated given numbers must each be used
    assert verify("\\boxed{3 * 3 + 5}", (3, 3, 5), 14)[0] is Verdict.CORRECT
    assert "leaves out 3" in verify("\\boxed{3 * 5 - 1}", (3, 3, 5), 14)[2]


def test_last_box_counts_and_long_inputs_are_bounded():
    assert verify("\\boxed{8*3-2} is wrong. \\boxed{(8-2)*3+4}", NUMS, TARGET)[0] is Verdict.CORRECT
    long_expr = "+".join(["1"] * 5000)  # 9999 characters in the box
    v, answer, why = verify(f"\\boxed{{{long_expr}}}", NUMS, TARGET)
    assert v is Verdict.UNPARSEABLE and "longer than" in why and len(answer) == 9999
    deep = "(" * 40 + "8" + ")" * 40
    assert "nested deeper" in verify(f"\\boxed{{{deep}-2*3*4}}", NUMS, TARGET)[2]
    padded = "x" * 10_000 + " \\boxed{(8-2)*3+4}"  # a 10k-character completion still checks
    assert verify(padded, NUMS, TARGET)[0] is Verdict.CORRECT
    assert verify("\\boxed{" + "9" * 13 + "}", NUMS, TARGET)[0] is Verdict.UNPARSEABLE


@pytest.mark.parametrize("payload", [
    "__import__('os').system('touch {marker}')",
    "open('{marker}', 'w').write('x')",
    "(lambda: exec(\"open('{marker}','w')\"))()",
    "8*3-2 if open('{marker}','w') else 4",
    "eval('8') * 3 - 2 + 4",
])
def test_code_in_the_box_is_never_executed(payload, tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    calls = []

    def trap(*args, **kwargs):
        calls.append(args)
        raise AssertionError("model text reached eval/exec/compile")

    for name in ("eval", "exec", "compile"):
        monkeypatch.setattr(builtins, name, trap)
    v, _, _ = verify("\\boxed{" + payload.format(marker=marker) + "}", NUMS, TARGET)
    assert v is Verdict.UNPARSEABLE
    assert not calls and not marker.exists()


# ---- the seams: checker, loader, prompt, tree, reward, CLI --------------------------------------------------

def test_checker_dispatches_on_the_task_and_keeps_math_unchanged():
    from astro_reasoner.checking import Checker

    gold = CountdownGold(NUMS, TARGET)
    with Checker(workers=1, warmup=False) as checker:
        math_only = checker.check_batch([("22", "\\boxed{22}"), ("5", "\\boxed{6}")])
        mixed = checker.check_batch([("22", "\\boxed{22}"), (gold, "\\boxed{(8-2)*3+4}"), ("5", "\\boxed{6}"),
                                     (gold, "\\boxed{22}")])
    assert [r.verdict for r in mixed] == [Verdict.CORRECT, Verdict.CORRECT, Verdict.WRONG, Verdict.WRONG]
    assert [mixed[0], mixed[2]] == math_only
    assert mixed[1].answer == "(8-2)*3+4" and mixed[3].reason.startswith("uses 22")


def test_a_file_in_the_issue_shape_loads_and_its_prompt_ignores_the_wording(tmp_path):
    from astro_reasoner.data import load_problems
    from astro_reasoner.io import DataError
    from astro_reasoner.prompts import PromptConfig, problem_messages
    from astro_reasoner.tasks import gold_of

    path = tmp_path / "cd.jsonl"
    rows = [{"id": "a", "problem": "Make 22 from 8 2 3 4.", "answer": "22", "task": "countdown",
             "numbers": [8, 2, 3, 4], "target": 22, "difficulty": "easy"},
            {"id": "b", "problem": "something else entirely", "answer": "22", "task": "countdown",
             "numbers": [8, 2, 3, 4], "target": 22}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    a, b = load_problems(str(path))
    assert a.task == "countdown" and a.meta["numbers"] == [8, 2, 3, 4] and a.meta["difficulty"] == "easy"
    cfg = PromptConfig(few_shot=2)
    assert problem_messages(a, cfg) == problem_messages(b, cfg)
    assert problem_messages(a, cfg)[-1]["content"].endswith("Numbers: 8, 2, 3, 4. Target: 22.")
    assert [m["content"] for m in problem_messages(a, cfg)[2:4:2]] == [cd.examples()[0][1]]
    assert gold_of(a) == CountdownGold(NUMS, 22)
    path.write_text(json.dumps({**rows[0], "numbers": "eight"}) + "\n")
    with pytest.raises(DataError, match=r"cd.jsonl:1: countdown: field 'numbers'"):
        load_problems(str(path))


def test_math_records_take_the_old_paths():
    from astro_reasoner.data import synthesize
    from astro_reasoner.prompts import PromptConfig, problem_messages
    from astro_reasoner.search.mcts import new_tree
    from astro_reasoner.tasks import gold_of, task_fields
    from astro_reasoner.types import SearchTree

    p = synthesize(2, 1, seed=0)[0]
    for few in (0, 2):
        assert problem_messages(p, PromptConfig(few_shot=few)) == problem_messages(p.problem, PromptConfig(few_shot=few))
    assert gold_of(p) == p.answer and task_fields(p) == {}
    tree = new_tree(p.id, p.problem, p.answer)
    assert "task" not in tree.to_json()
    tree.task = task_fields(cd.synthesize(1)[0])
    assert SearchTree.from_json(json.loads(json.dumps(tree.to_json()))).task == tree.task


def test_rl_reward_reads_the_task_column(tmp_path):
    from astro_reasoner.checking import Checker
    from astro_reasoner.clone.export import rl_row
    from astro_reasoner.io import write_jsonl
    from astro_reasoner.train.grpo import load_rl_rows
    from astro_reasoner.train.rewards import correctness_reward

    p = cd.synthesize(1, seed=5)[0]
    row = rl_row(p.id, p, p.answer, True)
    assert row["task"] == {"task": "countdown", "numbers": p.meta["numbers"], "target": p.meta["target"]}
    assert "Numbers: " in row["prompt"][-1]["content"]
    write_jsonl(tmp_path / "rl.jsonl", [row, {"problem_id": "m", "prompt": row["prompt"], "answer": "7"}])
    rows = load_rl_rows(tmp_path / "rl.jsonl")
    assert rows[0]["task"] == row["task"] and rows[1]["task"] is None
    good = p.meta["solution"]
    bad = good.replace("\\boxed{", "\\boxed{1 + ")
    with Checker(workers=1, warmup=False) as checker:
        got = correctness_reward([None] * 4, [good, bad, f"\\boxed{{{p.answer}}}", "\\boxed{7}"],
                                 [p.answer, p.answer, p.answer, "7"], checker=checker,
                                 task=[rows[0]["task"]] * 3 + [None])
    assert got == [1.0, -1.0, -1.0, 1.0]  # the bare target is not a countdown answer; math row unchanged
    # As GRPO runs it: rows through a datasets.Dataset (TRL passes every extra column to the reward).
    from datasets import Dataset

    from astro_reasoner.train.grpo import LoggedCorrectnessReward
    from astro_reasoner.train.rewards import RewardValues

    ds = Dataset.from_list(rows)
    columns = {k: [ds[i][k] for i in (0, 0, 1)] for k in ("answer", "task", "problem_id")}
    with Checker(workers=1, warmup=False) as checker:
        reward = LoggedCorrectnessReward(checker, RewardValues())
        bare = f"\\boxed{{{p.answer}}}"  # right value, numbers not used: +1 only if the task column were lost
        assert reward(prompts=[None] * 3, completions=[good, bare, "\\boxed{7}"], trainer_state=None,
                      **columns) == [1.0, -1.0, 1.0]


def test_cli_synth_and_check(tmp_path):
    from typer.testing import CliRunner

    from astro_reasoner.cli import app

    runner = CliRunner()
    out = tmp_path / "cd.jsonl"
    res = runner.invoke(app, ["data", "synth", "--task", "countdown", "--n", "12", "--seed", "4", "--counts",
                              "4", "-o", str(out), "--sft", str(tmp_path / "warm.jsonl"), "--sft-per-problem", "2"])
    assert res.exit_code == 0, res.output
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(recs) == 12 and all(r["task"] == "countdown" and len(r["numbers"]) == 4 and
                                   r["answer"] == str(r["target"]) for r in recs)
    from astro_reasoner.train.sft import load_sft_rows

    warm = load_sft_rows(tmp_path / "warm.jsonl")  # warm-start rows: solver-written direct solutions
    assert len(warm) == 24 and warm[0]["prompt"][-1]["content"].endswith(
        f"Numbers: {', '.join(map(str, recs[0]['numbers']))}. Target: {recs[0]['target']}.")
    for row, rec in zip(warm, [r for r in recs for _ in range(2)]):
        assert row["problem_id"] == rec["id"]
        assert verify(row["completion"][0]["content"], tuple(rec["numbers"]), rec["target"])[0] is Verdict.CORRECT
        assert "wait" not in row["completion"][0]["content"].lower()
    res = runner.invoke(app, ["data", "check", str(out)])
    assert res.exit_code == 0 and "tasks: countdown 12" in res.output
    res = runner.invoke(app, ["check", "--task", "countdown", "--numbers", "8,2,3,4", "--gold", "22",
                              "--completion", "so \\boxed{(8-2)*3+4}"])
    assert res.exit_code == 0 and "verdict:   correct" in res.output and "extracted: (8-2)*3+4" in res.output
    res = runner.invoke(app, ["check", "--task", "countdown", "--numbers", "8,2,3,4", "--gold", "22",
                              "--completion", "so \\boxed{8*3-2}"])
    assert "verdict:   wrong" in res.output and "leaves out 4" in res.output
    res = runner.invoke(app, ["check", "--task", "countdown", "--gold", "22", "--completion", "x"])
    assert res.exit_code != 0 and "--numbers" in res.output


def test_random_expressions_agree_with_exact_arithmetic():
    """The verifier's value equals an independent Fraction evaluation of random solver-shaped expressions."""
    rng = random.Random(0)
    for _ in range(200):
        nums = [rng.randint(1, 12) for _ in range(rng.choice((3, 4)))]
        reach = sorted(cd.reachable(nums))
        target = rng.choice(reach)
        root = cd.solutions(nums, target, limit=1)[0]
        assert verify(f"\\boxed{{{cd.expression(root)}}}", tuple(nums), target)[0] is Verdict.CORRECT
        other = target + rng.randint(1, 5)
        assert verify(f"\\boxed{{{cd.expression(root)}}}", tuple(nums), other)[0] is Verdict.WRONG


def test_data_synth_task_option_feeds_the_pipeline_spec():
    from astro_reasoner.tasks import synthesize

    ps = synthesize(n=5, seed=2, task="countdown", split="validation", counts=[3])
    assert [p.meta["split"] for p in ps] == ["validation"] * 5 and all(len(p.meta["numbers"]) == 3 for p in ps)
    with pytest.raises(ValueError, match="unknown option"):
        synthesize(n=5, split="train")


# ---- step verification (issue 16, variant 1): a right box after false arithmetic ------------------------------

TRUE_PATH = "3 * 4 = 12. Left: 2, 12.\n\n12 + 2 = 14. Left: 14.\n\n\\boxed{3 * 4 + 2}"


@pytest.mark.parametrize("text, reason", [
    (TRUE_PATH, None),
    ("3 * 4 = 13. Left: 2, 13.\n\n13 + 1 = 14. Left: 14.\n\n\\boxed{3 * 4 + 2}", "is false (3 * 4 = 12)"),
    ("3 * 3 = 9. Left: 2, 4, 9.\n\n\\boxed{3 * 4 + 2}", "not left"),             # 3 used twice
    ("3 * 4 = 12. Left: 12.\n\n\\boxed{3 * 4 + 2}", "the numbers left are 2, 12"),  # 2 dropped from the list
    ("3 / 2 = 1. Left: 1, 4.\n\n\\boxed{3 * 4 + 2}", "non-integer intermediate"),
    ("4 - 4 = 0. Left: 0, 2, 3.\n\n\\boxed{3 * 4 + 2}", "not left"),
    ("Some prose without steps.\n\n\\boxed{3 * 4 + 2}", None),                # nothing checkable: nothing false
    (TRUE_PATH.replace("\\boxed", "Check: 3 * 4 + 2 = 12 + 2 = 14. The answer is \\boxed"), None),
    (TRUE_PATH.replace("\\boxed", "Check: 3 * 4 + 2 = 12 + 2 = 15. The answer is \\boxed"), "sides are 14, 15"),
    (TRUE_PATH.replace("\\boxed", "Check: 3 * 4 + 2 = 12 + x. The answer is \\boxed"), "check '"),
])
def test_check_steps_finds_the_first_false_step(text, reason):
    from astro_reasoner.tasks.countdown import check_steps

    found = check_steps(text, (3, 4, 2))
    assert (found is None) if reason is None else (reason in found), found


def test_step_verification_turns_a_right_box_after_false_arithmetic_wrong_only_when_asked():
    false_path = "3 * 4 = 13. Left: 2, 13.\n\n13 + 1 = 14. Left: 14.\n\n\\boxed{3 * 4 + 2}"
    assert verify(false_path, (3, 4, 2), 14)[0] == Verdict.CORRECT           # the paper's verifier: the box
    verdict, answer, reason = verify(false_path, (3, 4, 2), 14, steps=True)
    assert (verdict, answer) == (Verdict.WRONG, "3 * 4 + 2") and "false" in reason
    assert verify(TRUE_PATH, (3, 4, 2), 14, steps=True)[0] == Verdict.CORRECT
    assert CountdownGold((3, 4, 2), 14, steps=True).verify(false_path)[0] == Verdict.WRONG
    # a wrong box stays wrong for its own reason
    assert "target" in verify("3 * 4 = 12. Left: 2, 12.\n\n\\boxed{3 * 4 - 2}", (3, 4, 2), 14, steps=True)[2]


def test_gold_of_passes_step_verification_to_countdown_and_ignores_it_for_math():
    from astro_reasoner.tasks import gold_of

    record = {"answer": "14", "task": "countdown", "numbers": [3, 4, 2], "target": 14}
    assert gold_of(record).steps is False and gold_of(record, verify_steps=True).steps is True
    assert gold_of({"answer": "7"}, verify_steps=True) == "7"


def test_solver_solutions_pass_step_verification():
    for p in cd.synthesize(n=100, seed=5, counts=(3, 4)):
        text = cd.direct_solution(p.meta["numbers"], p.meta["target"], random.Random(p.id))
        assert verify(text, tuple(p.meta["numbers"]), p.meta["target"], steps=True)[0] == Verdict.CORRECT, text
