"""Rewrite and self-evaluation driven by a scripted policy (a test double of backends.base.Policy), so the
ACCEPT branches run: a faithful rewrite is kept, an unfaithful one falls back to the template, and
self-evaluation of the correct terminals decides which terminal n* may be (astro and direct alike)."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence

import pytest
from clone_helpers import build_tree

from astro_reasoner.checking import Checker
from astro_reasoner.clone import CloneConfig, run_clone
from astro_reasoner.io import read_jsonl
from astro_reasoner.types import Completion, GenParams


def faithful(cot: str) -> str:
    """A rewording that keeps every step, check, backtrack and the answer."""
    return (cot.replace("Let's go back to", "Okay, let's go back to").replace("Hmm…", "Hmm.")
            .replace("Our solution", "The solution"))


def drops_backtracks(cot: str) -> str:
    return "\n\n".join(p for p in cot.split("\n\n") if not re.search(r"go back|restart|start over|revisit|"
                                                                      r"start again", p, re.I))


def changes_answer(cot: str) -> str:
    return re.sub(r"\\boxed\{10\}", r"\\boxed{11}", cot)


class ScriptedClonePolicy:
    """Self-evaluation: ``yes_votes(solution)`` of the N votes say yes. Rewrite: by a marker in the problem,
    [faithful] / [drop] / [answer] apply the functions above."""

    name = "scripted-clone"
    deterministic = True

    def __init__(self, yes_votes):
        self.yes_votes = yes_votes
        self.judged: list[str] = []

    def apply_chat_template(self, messages: Sequence[dict[str, str]], continue_text: str = "") -> str:
        return "<user>" + messages[-1]["content"] + "<assistant>" + continue_text

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def close(self) -> None:
        pass

    def generate(self, prompts: Sequence[str], params: GenParams) -> list[list[Completion]]:
        out = []
        for p in prompts:
            if "Is the proposed solution correct" in p:
                solution = p.split("Proposed solution:\n", 1)[1].split("\n\nIs the proposed", 1)[0]
                self.judged.append(solution)
                k = self.yes_votes(solution)
                texts = ["Yes." if i < k else "No, it is wrong." for i in range(params.n)]
            else:
                problem = p.split("Problem:\n", 1)[1].split("\n\nSolution:\n", 1)[0]
                cot = p.split("\n\nSolution:\n", 1)[1].removesuffix("<assistant>")
                fn = {"[faithful]": faithful, "[drop]": drops_backtracks, "[answer]": changes_answer}
                texts = [next(f for m, f in fn.items() if m in problem)(cot)] * params.n
            out.append([Completion(t, len(t.split()), -1.0, "eos") for t in texts])
        return out


def two_correct_tree(pid: str, problem: str = "How many apples?"):
    """Correct terminals 3 (path 1-2-3, "5 * 2 = 10") and 5 (path 1-5, "a lucky guess"); wrong 4 and 6."""
    return build_tree([
        (0, "Alice has 2 + 3 = 5 apples.", None),  # 1
        (1, "She doubles them: 5 * 2 = 10.", None),  # 2
        (2, "So the answer is \\boxed{10}.", "10"),  # 3 correct, sound
        (2, "She adds 2: 10 + 2 = 12, so \\boxed{12}.", "12"),  # 4 wrong
        (1, "A lucky guess: \\boxed{10}.", "10"),  # 5 correct, judged poorly
        (0, "Alice has 2 * 3 = 6 apples, so \\boxed{6}.", "6"),  # 6 wrong
    ], gold="10", problem_id=pid, problem=problem)


def votes_for(solution: str) -> int:
    return 8 if "5 * 2 = 10" in solution else 3


@pytest.fixture(scope="module")
def checker():
    with Checker(workers=1) as ch:
        yield ch


def write_trees(path, trees):
    path.write_text("".join(json.dumps(t.to_json()) + "\n" for t in trees))
    return path


@pytest.mark.parametrize("mode", ["astro", "direct"])
def test_selfeval_on_correct_terminals_decides_n_star(tmp_path, checker, mode):
    trees = write_trees(tmp_path / "trees.jsonl", [two_correct_tree(f"p{i}") for i in range(12)])
    policy = ScriptedClonePolicy(votes_for)
    cfg = CloneConfig(mode=mode, selfeval=True, batch_size=5)  # N = 8 votes, a majority (5) to pass
    stats = run_clone(trees, tmp_path / mode, cfg, policy=policy, checker=checker)
    # the LM judged the correct terminals' solution paths, not the long CoT with its wrong attempts
    assert len(policy.judged) == 24 and not any("wait" in s.lower() or "go back" in s.lower() for s in policy.judged)
    assert Counter("5 * 2 = 10" in s for s in policy.judged) == {True: 12, False: 12}
    assert stats["selfeval_judged"] == 24 and stats["selfeval_kept"] == 12 and stats["votes"] == {"yes": 132, "no": 60}
    traces = list(read_jsonl(tmp_path / mode / "traces.jsonl"))
    assert traces and {t["meta"]["correct_node"] for t in traces} == {3}  # only the approved terminal
    rows = list(read_jsonl(tmp_path / mode / "sft.jsonl"))
    assert all(r["selfeval_votes"] == ["yes"] * 8 for r in rows)
    # a lower threshold lets the other terminal in: n* is then sampled among both
    low = run_clone(trees, tmp_path / f"{mode}-low", CloneConfig(mode=mode, selfeval=True, min_votes=3),
                    policy=ScriptedClonePolicy(votes_for), checker=checker)
    ends = {t["meta"]["correct_node"] for t in read_jsonl(tmp_path / f"{mode}-low" / "traces.jsonl")}
    assert ends == {3, 5} and low["selfeval_kept"] == 24


def test_selfeval_rejecting_everything_leaves_no_trace(tmp_path, checker):
    trees = write_trees(tmp_path / "trees.jsonl", [two_correct_tree("p0")])
    stats = run_clone(trees, tmp_path / "out", CloneConfig(selfeval=True), policy=ScriptedClonePolicy(lambda s: 0),
                      checker=checker)
    assert stats["no_approved"] == 1 and stats["traces"] == stats["examples"] == 0
    assert "passed self-evaluation" in "\n".join(stats["messages"])


def test_rewrite_accepts_a_faithful_rewrite_and_rejects_unfaithful_ones(tmp_path, checker):
    trees = [two_correct_tree("f", "How many apples? [faithful]"), two_correct_tree("d", "How many? [drop]"),
             two_correct_tree("a", "How many? [answer]")]
    write_trees(tmp_path / "trees.jsonl", trees)
    cfg = CloneConfig(rewrite=True, direct_traces=0, search_traces=1, max_backtracks=2)
    stats = run_clone(tmp_path / "trees.jsonl", tmp_path / "out", cfg, policy=ScriptedClonePolicy(votes_for),
                      checker=checker)
    cots = {c["problem_id"]: c for c in read_jsonl(tmp_path / "out" / "cots.jsonl")}
    f = cots["f"]
    assert f["rewritten"] and f["rewrite_reason"] == "accepted" and f["cot"] == faithful(f["template"]) != f["template"]
    assert not cots["d"]["rewritten"] and cots["d"]["rewrite_reason"].startswith("backtracks 0 != 2")
    assert not cots["a"]["rewritten"] and cots["a"]["rewrite_reason"].startswith("final answer wrong")
    assert cots["d"]["cot"] == cots["d"]["template"] and cots["a"]["cot"] == cots["a"]["template"]
    assert stats["rewrite_attempted"] == 3 and stats["rewrite_accepted"] == 1 and stats["examples"] == 3
    sft = {r["problem_id"]: r for r in read_jsonl(tmp_path / "out" / "sft.jsonl")}
    assert sft["f"]["rewritten"] and sft["f"]["completion"][0]["content"] == f["cot"]
