"""Paired ASTRO − Direct differences, accuracy by number of backtracks, the RL signal, and their rendering in
the pipeline's results table."""

from __future__ import annotations

import json

import pytest

from astro_reasoner.evaluate.compare import accuracy_by_backtracks, paired_difference, per_problem_pass, rl_signal
from astro_reasoner.io import write_json, write_jsonl
from astro_reasoner.pipeline.table import collect, results_markdown


def _samples(correct_by_problem: dict[str, list[bool]], backtracks: int = 0) -> list[dict]:
    return [{"dataset": "test", "problem_id": pid, "sample": i, "verdict": "correct" if ok else "wrong",
             "backtracks": backtracks}
            for pid, oks in correct_by_problem.items() for i, ok in enumerate(oks)]


def test_paired_difference_is_the_mean_of_per_problem_differences():
    a = _samples({"p1": [True, True], "p2": [True, False], "p3": [False, False], "only-a": [True, True]})
    b = _samples({"p1": [True, False], "p2": [False, False], "p3": [False, False], "only-b": [False, False]})
    assert per_problem_pass(a)[("test", "p2")] == 0.5
    d = paired_difference(a, b, bootstrap=2000, seed=3)
    assert d["problems"] == 3  # only problems both arms answered
    assert d["diff"] == pytest.approx((0.5 + 0.5 + 0.0) / 3)
    assert (d["a_better"], d["b_better"]) == (2, 0)
    lo, hi = d["ci95"]
    assert 0.0 <= lo <= d["diff"] <= hi <= 0.5 + 1e-9  # resampling 3 differences in {0.5, 0.5, 0}
    assert paired_difference(a, b, bootstrap=2000, seed=3) == d  # seeded


def test_paired_difference_ci_excludes_zero_only_for_a_consistent_gap():
    many = {f"p{i}": [True, True] for i in range(60)}
    worse = {f"p{i}": [i % 2 == 0, False] for i in range(60)}
    d = paired_difference(_samples(many), _samples(worse), bootstrap=1000)
    assert d["diff"] == pytest.approx(0.75) and d["ci95"][0] > 0.5
    same = paired_difference(_samples(worse), _samples(worse), bootstrap=1000)
    assert same["diff"] == 0 and same["ci95"] == [0.0, 0.0]
    assert paired_difference([], _samples(worse))["diff"] is None


def test_accuracy_by_backtracks_bins():
    rows = [*_samples({"a": [True, False]}, backtracks=0), *_samples({"b": [True, True]}, backtracks=1),
            *_samples({"c": [False]}, backtracks=2), *_samples({"d": [True, False, False]}, backtracks=5)]
    by = accuracy_by_backtracks(rows)
    assert by["0"] == {"outputs": 2, "accuracy": 0.5}
    assert by["1"] == {"outputs": 2, "accuracy": 1.0}
    assert by["2"] == {"outputs": 1, "accuracy": 0.0}
    assert by["3+"]["outputs"] == 3 and by["3+"]["accuracy"] == pytest.approx(1 / 3)
    assert by[">=1"]["outputs"] == 6 and by[">=1"]["accuracy"] == pytest.approx(3 / 6)


def test_rl_signal_reads_trl_zero_std_share(tmp_path):
    f = tmp_path / "metrics.jsonl"
    write_jsonl(f, [{"step": 1, "frac_reward_zero_std": 1.0, "grad_norm": 0.0},
                    {"step": 2, "frac_reward_zero_std": 0.5, "grad_norm": 0.4}])
    sig = rl_signal(f)
    assert sig == {"steps": 2, "frac_reward_zero_std": 0.75, "steps_without_signal": 0.5,
                   "grad_norm_mean": pytest.approx(0.2)}
    assert rl_signal(tmp_path / "missing.jsonl") is None


def test_results_table_has_the_comparisons(tmp_path):
    run = tmp_path / "run"
    arms = {"eval-sft-direct": {"p1": [True, False], "p2": [False, False]},
            "eval-sft-astro": {"p1": [True, True], "p2": [True, False]}}
    for stage, res in arms.items():
        (run / stage).mkdir(parents=True)
        bt = 1 if "astro" in stage else 0
        write_jsonl(run / stage / "samples.jsonl", _samples(res, backtracks=bt))
        write_json(run / stage / "summary.json", {"k": 2, "datasets": {"test": {"pass@1": 0.5}}, "overall": {
            "pass@1": 0.5, "behaviour": {"all": {"backtracks": bt, "backtrack_share": bt},
                                          "correct": {"backtracks": bt}, "wrong": {"backtracks": bt}}}})
    (run / "rl-astro" / "model").mkdir(parents=True)
    write_jsonl(run / "rl-astro" / "model" / "metrics.jsonl", [{"step": 1, "frac_reward_zero_std": 0.25,
                                                               "grad_norm": 1.0}])
    write_json(run / "rl-astro" / "_done.json", {"stats": {"checkpoint": str(run / "rl-astro" / "model")}})
    data = collect(run, [])
    json.dumps(data)  # results.json is plain JSON
    md = results_markdown(data)
    assert "| ASTRO-SFT − Direct-SFT | 2 | +50.0 |" in md
    assert "| ASTRO-SFT | 1.00 | 1.00 | 100.0 | – (0) | 75.0 (4) |" in md
    assert "| astro | 1 | 0.25 | 0.0 | 1 |" in md
