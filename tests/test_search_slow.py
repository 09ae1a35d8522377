"""`astro search` with the real SmolLM2-135M on synthetic 2-step word problems (slow: minutes on 2 CPU cores).

Issue 3's acceptance is a correct terminal in >= 60 % of 20 trees, where one sample of the model is right 5-8 %
of the time (prompts.py); the 20-problem measurements are in BENCHMARKS.md. CI affords 8 problems, and on so
few the share is noisy (the first 10 of the same set gave 8/10 inside a 20-problem run and 5/10 alone: the
batch composition changes the samples), so this asks for half of them -- still ~10x what single samples find.
It runs on the llamacpp engine (llama-server, Q8_0), the CPU engine `backend: auto` picks: the hf engine took
866-1,136 s of CI here.
"""

from __future__ import annotations

import json

import pytest

from astro_reasoner.cli import main
from astro_reasoner.data import synthesize, write_problems
from astro_reasoner.search import load_trees
from astro_reasoner.search.mcts import validate_tree
from backend_helpers import require_llama_server

pytestmark = [pytest.mark.slow, pytest.mark.server]


def test_search_finds_correct_terminals_the_model_rarely_samples(tmp_path, capsys):
    require_llama_server()
    problems = synthesize(steps=2, n=8, seed=7, max_value=20, max_factor=3)
    write_problems(tmp_path / "p.jsonl", problems)
    out = tmp_path / "run"
    assert main(["search", "--problems", str(tmp_path / "p.jsonl"), "--model", "smollm2-135m", "--out", str(out),
                 "--backend", "llamacpp", "-b", "threads=2", "iterations=6", "leaves_per_tree=2"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trees"] == 8
    assert summary["share_with_correct"] >= 0.5, summary
    assert summary["share_with_wrong"] >= 0.75, summary
    trees = load_trees(out)
    for tree in trees:
        assert validate_tree(tree) == [], tree.problem_id
    assert summary["this_run"]["generated_tokens"] > 0 and summary["this_run"]["generate_seconds"] > 0
    capsys.readouterr()
    assert main(["trees", "stats", str(out), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["trees"] == 8
