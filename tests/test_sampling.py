"""The shared sample-and-check core (``sampling.py``) and the typed eval sample (``evaluate/sample.py``).

The core must give each caller exactly what its own generate + check_batch calls gave before (the callers'
files are compared byte for byte by their own tests); the eval sample must read and write today's
samples.jsonl lines unchanged, key order included.
"""

from __future__ import annotations

import json

import pytest
from search_helpers import ScriptedPolicy, problems
from test_countdown_eval_viz import PUZZLE, Scripted

from astro_reasoner.checking import Checker
from astro_reasoner.evaluate.sample import EvalSample
from astro_reasoner.io import jsonl_lines
from astro_reasoner.sampling import sample_and_check
from astro_reasoner.types import GenParams, Problem, SearchTree, Verdict


@pytest.fixture(scope="module")
def checker():
    with Checker(workers=1, warmup=False) as c:
        yield c


def _prompts(policy, probs):
    return [policy.apply_chat_template([{"role": "user", "content": p.problem}]) for p in probs]


def test_one_generate_call_and_the_checker_s_verdicts_per_prompt(checker):
    probs = problems(5)
    policy = ScriptedPolicy(seed=3)
    params = GenParams(n=4, max_tokens=64, seed=11)
    drawn = sample_and_check(policy, checker, probs, _prompts(policy, probs), params)
    assert policy.calls == [(5, 4)]  # the whole batch in one backend call
    # The same as generating and checking by hand (the scripted policy is a pure function of its inputs).
    outs = ScriptedPolicy(seed=3).generate(_prompts(policy, probs), params)
    results = checker.check_batch([(p.answer, c.text) for p, comps in zip(probs, outs) for c in comps])
    assert [len(row) for row in drawn] == [4] * 5
    flat = [s for row in drawn for s in row]
    assert [s.completion for s in flat] == [c for comps in outs for c in comps]
    assert [(s.verdict, s.answer) for s in flat] == [(Verdict(r.verdict), r.answer) for r in results]
    assert all(isinstance(s.verdict, Verdict) and s.correct == (s.verdict is Verdict.CORRECT) for s in flat)
    assert {s.verdict for s in flat} >= {Verdict.CORRECT, Verdict.WRONG}  # the script gives both
    s = flat[0]
    assert (s.text, s.tokens, s.finish_reason, s.prompt_tokens) == (
        s.completion.text, s.completion.tokens, s.completion.finish_reason, s.completion.prompt_tokens)


def test_items_may_be_problems_rl_rows_or_trees(checker):
    """Each caller passes its own record (eval a Problem, the filter an rl.jsonl row, best-of-N a tree):
    the gold comes from whichever it is, so all three check alike."""
    probs = problems(3)
    rows = [{"problem_id": p.id, "prompt": [{"role": "user", "content": p.problem}], "answer": p.answer}
            for p in probs]
    trees = [SearchTree(problem_id=p.id, problem=p.problem, answer=p.answer, nodes=[]) for p in probs]
    params = GenParams(n=3, max_tokens=64, seed=5)
    policy = ScriptedPolicy(seed=1)
    got = [sample_and_check(policy, checker, items, _prompts(policy, probs), params)
           for items in (probs, rows, trees)]
    assert got[0] == got[1] == got[2]


def test_a_task_s_own_verifier_decides():
    """A Countdown problem is checked by its verifier: "22" has the target's value but solves nothing."""
    puzzle = Problem(id="c1", problem="Make 22.", answer="22", meta=dict(PUZZLE))
    policy = Scripted(["\\boxed{22}", "\\boxed{(8-2)*3+4}"])
    with Checker(workers=1, warmup=False) as checker:
        [row] = sample_and_check(policy, checker, [puzzle], ["Make 22."], GenParams(n=2, max_tokens=8))
    assert [(s.verdict, s.answer) for s in row] == [(Verdict.WRONG, "22"), (Verdict.CORRECT, "(8-2)*3+4")]


def test_items_and_prompts_must_pair_up(checker):
    with pytest.raises(ValueError, match="2 items but 1 prompts"):
        sample_and_check(ScriptedPolicy(), checker, problems(2), ["<Q>What is 1 + 2?\n<A>"], GenParams())


def test_an_empty_batch_makes_no_check():
    policy = ScriptedPolicy()
    with Checker(workers=1, warmup=False) as checker:
        assert sample_and_check(policy, checker, [], [], GenParams(n=2)) == []
    assert policy.calls == [(0, 2)]


# ---- the eval sample ----------------------------------------------------------------------------------------

# A samples.jsonl line as eval has written it since task fields were added (math lines lack the last three keys).
LINE = ('{"dataset": "cd", "problem_id": "c1", "sample": 2, "seed": 123, "problem": "Make 22.", "gold": "22", '
        '"text": "So \\\\boxed{(8-2)*3+4}", "tokens": 5, "finish_reason": "eos", "answer": "(8-2)*3+4", '
        '"verdict": "correct", "steps": 1, "reflections": 0, "backtracks": 0, "task": "countdown", '
        '"numbers": [8, 2, 3, 4], "target": 22}\n')


def test_an_eval_sample_reads_and_writes_today_s_line_unchanged():
    s = EvalSample.from_json(json.loads(LINE))
    assert s.verdict is Verdict.CORRECT and s.correct and s.task == "countdown"
    assert s.counts == {"steps": 1, "reflections": 0, "backtracks": 0} and s.task_fields == PUZZLE
    assert "".join(jsonl_lines([s.to_json()])) == LINE  # same keys, same order, same bytes
    assert EvalSample.from_json(s.to_json()) == s


def test_an_eval_sample_round_trips():
    math = EvalSample(dataset="gsm8k", problem_id="7", sample=0, seed=None, problem="What is 1 + 2?", gold="3",
                      text="\\boxed{4}", tokens=3, finish_reason="length", answer="4", verdict=Verdict.WRONG,
                      counts={"steps": 1, "reflections": 0, "backtracks": 0})
    none = EvalSample(dataset="d", problem_id="x", sample=4, seed=9, problem="p", gold="g", text="", tokens=0,
                      finish_reason="eos", answer=None, verdict="unparseable")  # a string verdict is converted
    for s in (math, none):
        assert EvalSample.from_json(s.to_json()) == s
        assert EvalSample.from_json(json.loads(json.dumps(s.to_json()))) == s  # through JSON too
    assert none.verdict is Verdict.UNPARSEABLE and none.task is None and "task" not in math.to_json()
    assert list(math.to_json())[-4:] == ["verdict", "steps", "reflections", "backtracks"]
    with pytest.raises(ValueError):
        EvalSample.from_json({**math.to_json(), "verdict": "maybe"})


def test_the_samples_eval_writes_are_eval_samples(tmp_path, checker):
    """Every line run_eval writes (math and a task, first run and resumed) reads back as an EvalSample whose
    to_json gives the very same bytes."""
    from astro_reasoner.evaluate.config import EvalConfig
    from astro_reasoner.evaluate.run import SAMPLES, load_samples, run_eval

    probs = {"a": problems(3), "b": problems(2, start=3)}
    for n in (2, 3):  # the second run resumes: adds sample 2 to every problem
        cfg = EvalConfig(datasets=["a", "b"], n=n, k=2, max_tokens=64, batch_size=2, bootstrap=5)
        run_eval(probs, tmp_path / "e", cfg, policy=ScriptedPolicy(seed=4), checker=checker, model="m", progress=False)
    lines = (tmp_path / "e" / SAMPLES).read_text().splitlines(keepends=True)
    assert len(lines) == 5 * 3
    samples = load_samples(tmp_path / "e")
    assert all(isinstance(s, EvalSample) for s in samples)
    assert ["".join(jsonl_lines([s.to_json()])) for s in samples] == lines
    assert [s.to_json() for s in samples] == [json.loads(x) for x in lines]

