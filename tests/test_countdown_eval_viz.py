"""Countdown in the eval metrics and the viewers: maj@k votes by the verifier's notion, and the CoT graph and
tree page judge against the puzzle, not against the target as a math gold (issue 16).

A bare ``\\boxed{22}`` has the target's value, so the math checker calls it equivalent to a solving
expression, but it is no solution (it uses no given number): voting or colouring by value gets it wrong.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

import pytest

from astro_reasoner.evaluate.metrics import maj_at_k, majority_vote
from astro_reasoner.tasks import vote_keys
from astro_reasoner.tasks.countdown import SOLVED, vote_key
from astro_reasoner.types import Completion, GenParams

PUZZLE = {"task": "countdown", "numbers": [8, 2, 3, 4], "target": 22}


class Scripted:
    """A Policy test double (as in test_eval_run): every prompt gets the same fixed texts, in order."""

    name, deterministic = "scripted", True

    def __init__(self, texts: list[str]):
        self.texts, self.prompts = texts, []

    def apply_chat_template(self, messages: Sequence[dict[str, str]], continue_text: str = "") -> str:
        return messages[-1]["content"] + "\n" + continue_text

    def generate(self, prompts: Sequence[str], params: GenParams) -> list[list[Completion]]:
        self.prompts.extend(prompts)
        return [[Completion(self.texts[j % len(self.texts)], 5, 0.0, "eos") for j in range(params.n)]
                for _ in prompts]

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def close(self) -> None:
        pass


def test_vote_keys_follow_the_verifier():
    answers = ["22", "(8-2)*3+4", "4 + 3 \\times (8 - 2)", "(8 - 2) * 3 + 3", "(8-2)*3+3", "hello  world", None]
    verdicts = ["wrong", "correct", "correct", "wrong", "wrong", "unparseable", "unparseable"]
    keys = vote_keys("countdown", answers, verdicts)
    assert keys == ["22", SOLVED, SOLVED, "(8-2)*3+3", "(8-2)*3+3", "hello world", None]
    assert vote_keys(None, answers, verdicts) is None and vote_keys("math", answers, verdicts) is None
    assert vote_key("x" * 10_000, "unparseable") == "x" * 10_000  # bounded: no parse of a long text
    # value voting would put "22" with the two solutions (first member "22", wrong); the verifier does not
    assert majority_vote(answers[:3], lambda a, b: False, keys[:3]) == 1
    # ties keep the earliest group: two solved (from index 1) and two (8-2)*3+3 (from index 3) -> solved
    block = ["22", "(8-2)*3+4", "4+3*(8-2)", "(8-2)*3+3", "(8 - 2)*3 + 3"]
    block_keys = vote_keys("countdown", block, ["wrong", "correct", "correct", "wrong", "wrong"])
    assert maj_at_k(block, [False, True, True, False, False], 5, lambda a, b: False, block_keys) == 1.0
    assert maj_at_k(block[:1] + block[3:], [False] * 3, 3, lambda a, b: False,
                    block_keys[:1] + block_keys[3:]) == 0.0  # the two wrong ones outvote "22"
    assert maj_at_k(["a", "b"], [False, False], 2, lambda a, b: False, [None, None]) == 0.0
    with pytest.raises(ValueError, match="differ in length"):
        majority_vote(["a", "b"], lambda a, b: False, ["a"])


def test_countdown_maj_at_k_through_run_eval(tmp_path):
    """The bug: with the math checker's equivalence "22" and both solutions formed one group led by the
    wrong "22", so maj@3 was 0 although two of three samples solve the puzzle."""
    from astro_reasoner.checking import Checker
    from astro_reasoner.evaluate.config import EvalConfig
    from astro_reasoner.evaluate.run import read_samples, run_eval

    data = tmp_path / "cd.jsonl"
    data.write_text(json.dumps({"id": "c1", "problem": "Make 22.", "answer": "22", **PUZZLE}) + "\n")
    texts = ["8 + 2 = 10. Left: 3, 4, 10.\n\n\\boxed{22}", "\\boxed{(8-2)*3+4}", "\\boxed{4+(8-2)*3}"]
    cfg = EvalConfig(datasets=[str(data)], n=3, k=3, max_tokens=8, bootstrap=20)
    policy = Scripted(texts)
    with Checker(workers=1, warmup=False) as checker:
        assert checker.equivalent("22", "(8-2)*3+4")  # the math checker's value equivalence
        s = run_eval(None, tmp_path / "e", cfg, policy=policy, checker=checker, progress=False)
    assert "Numbers: 8, 2, 3, 4. Target: 22." in policy.prompts[0]
    m = s["datasets"]["cd"]
    assert m["pass@1"] == pytest.approx(2 / 3)
    assert m["maj@3"] == 1.0
    recs = read_samples(tmp_path / "e")
    assert [r["verdict"] for r in recs] == ["wrong", "correct", "correct"]
    assert all({k: r[k] for k in PUZZLE} == PUZZLE for r in recs)  # samples carry the puzzle


COT = ("8 - 2 = 6. Left: 3, 4, 6.\n\n"
       "6 * 4 = 24. Left: 3, 24. So the answer is \\boxed{22}.\n\n"
       "But wait, are we solving the problem correctly so far? Hmm, I think I made a mistake.\n\n"
       "Let's go back to where we had \"8 - 2 = 6. Left: 3, 4, 6.\" and try a different approach.\n\n"
       "6 * 3 = 18. Left: 4, 18.\n\n"
       "18 + 4 = 22. Left: 22. The answer is \\boxed{(8-2)*3+4}.")


def test_cot_graph_judges_abandoned_countdown_answers_with_the_verifier(tmp_path):
    from astro_reasoner.checking import Checker
    from astro_reasoner.viz.cot_graph import write_cot

    rec = {"dataset": "cd", "problem_id": "c1", "sample": 0, "problem": "Make 22.", "gold": "22", "text": COT,
           "answer": "(8-2)*3+4", "verdict": "correct", "backtracks": 1, **PUZZLE}
    path = tmp_path / "samples.jsonl"
    path.write_text(json.dumps(rec) + "\n")
    with Checker(workers=1, warmup=False) as checker:
        svg = write_cot(path, "c1", tmp_path / "g.svg", checker=checker).read_text()
        html = write_cot(path, "c1", tmp_path / "g.html", checker=checker).read_text()
        math_rec = {k: v for k, v in rec.items() if k not in PUZZLE}  # the same text judged as math
        path.write_text(json.dumps(math_rec) + "\n")
        math_svg = write_cot(path, "c1", tmp_path / "m.svg", checker=checker).read_text()
    status = dict((int(i), c) for c, i in re.findall(r'class="node (\w*)" data-step="(-?\d+)"', svg))
    assert status[1] == "wrong" and status[3] == "correct"  # "\boxed{22}" uses no given number
    assert 'class="node correct" data-step="1"' in math_svg  # math: 22 equals the gold
    assert "numbers 8, 2, 3, 4 · target 22" in html


def test_tree_page_states_the_puzzle_of_a_countdown_tree():
    from eval_helpers import small_tree

    from astro_reasoner.viz.tree_view import render_tree_html

    tree = small_tree()
    assert "gold answer: <b>10</b>" in render_tree_html(tree)  # math: unchanged
    tree.task = {"task": "countdown", "numbers": [8, 2, 3, 4], "target": 22}
    page = render_tree_html(tree)
    assert "gold answer" not in page
    assert "numbers <b>8, 2, 3, 4</b>, target <b>22</b> (verdicts by the countdown verifier)" in page
