"""A small Countdown search with the real SmolLM2-135M (slow tier; sized to about a minute on an idle
2-core machine: 2 puzzles, 3 iterations, k=2 children, 1 rollout each, short steps and rollouts).

Issue 16 measured that SmolLM2-135M with two worked examples gets few Countdown steps right and solves
almost nothing, so this checks the mechanics on the real model rather than a solve rate: the search prompt
is the countdown one (the model writes the step format after two solver-written examples), every tree
carries its task, and every terminal's verdict is the countdown verifier's.
"""

from __future__ import annotations

import json

import pytest

from astro_reasoner.cli import main
from astro_reasoner.search import load_trees
from astro_reasoner.search.mcts import validate_tree
from astro_reasoner.tasks.countdown import verify

pytestmark = pytest.mark.slow


def test_real_model_countdown_search(tmp_path):
    data = tmp_path / "cd.jsonl"
    assert main(["data", "synth", "--task", "countdown", "--split", "validation", "--n", "2", "--seed", "0",
                 "--counts", "3", "--max-number", "6", "--max-target", "12", "-o", str(data)]) == 0
    out = tmp_path / "run"
    assert main(["search", "--problems", str(data), "--model", "smollm2-135m", "--out", str(out), "--quiet",
                 "--checker-workers", "1",
                 "-b", "threads=1", "iterations=3", "k=2", "rollouts=1", "few_shot=2", "max_step_tokens=40",
                 "max_rollout_tokens=128"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trees"] == 2
    trees = load_trees(out)
    steps = [n.step for t in trees for n in t.nodes[1:]]
    assert sum("Left:" in s for s in steps) >= len(steps) // 2, steps[:8]  # the countdown step format
    checked = 0
    for tree in trees:
        assert validate_tree(tree) == [], tree.problem_id
        assert tree.task["task"] == "countdown"
        for n in tree.nodes:
            if n.terminal and n.answer is not None:
                assert n.verdict == verify(n.step, tuple(tree.task["numbers"]), tree.task["target"])[0].value
                checked += 1
    assert checked > 0
