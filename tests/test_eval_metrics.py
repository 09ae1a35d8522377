"""Metrics against hand-computed values: pass@k, maj@k with equivalent answers, bootstrap, Pearson."""

from __future__ import annotations

import json
import math

import pytest

from astro_reasoner.evaluate.analyze import correlation_report, pearson, read_training_metrics, training_report
from astro_reasoner.evaluate.behaviour_stats import aggregate_behaviour
from astro_reasoner.evaluate.metrics import bootstrap_ci, maj_at_k, majority_vote, pass_at_k, score_problems
from astro_reasoner.io import DataError


def string_equal(a: str, b: str) -> bool:
    return a == b


def numeric_equal(a: str, b: str) -> bool:
    """A stand-in equivalence for pure tests: '1/2' == '0.5' == '\\frac{1}{2}'."""
    def val(s):
        s = s.replace("\\frac{", "").replace("}{", "/").replace("}", "")
        num, _, den = s.partition("/")
        return float(num) / float(den or 1)
    return math.isclose(val(a), val(b))


# ------------------------------------------------------------------------------------------------ pass@k
def test_pass_at_k_hand_values():
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)
    assert pass_at_k(16, 3, 8) == pytest.approx(1 - math.comb(13, 8) / math.comb(16, 8))


def test_pass_at_k_edge_cases():
    assert pass_at_k(4, 0, 2) == 0.0  # c = 0
    assert pass_at_k(4, 4, 2) == 1.0  # c = n
    assert pass_at_k(3, 2, 2) == 1.0  # n - c < k: every pair holds a correct sample
    assert pass_at_k(1, 1, 1) == 1.0 and pass_at_k(1, 0, 1) == 0.0
    with pytest.raises(ValueError, match="1 <= k <= n"):
        pass_at_k(3, 1, 4)  # n < k
    with pytest.raises(ValueError, match="0 <= c <= n"):
        pass_at_k(3, 4, 1)


def test_pass_at_k_matches_the_combinatorial_formula():
    for n in range(1, 12):
        for c in range(n + 1):
            for k in range(1, n + 1):
                exact = 1 - math.comb(n - c, k) / math.comb(n, k)
                assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12)


# ------------------------------------------------------------------------------------------------ maj@k
def test_maj_groups_equivalent_strings_not_equal_strings():
    answers = ["1/2", "0.5", "3", "3", "\\frac{1}{2}"]
    correct = [True, True, False, False, True]
    assert maj_at_k(answers, correct, 5, numeric_equal) == 1.0  # three votes for one half
    assert maj_at_k(answers, correct, 5, string_equal) == 0.0  # string voting would pick "3"


def test_maj_with_the_real_checker():
    from astro_reasoner.checking import Checker

    answers = ["1/2", "0.5", "3", "3", "\\frac{1}{2}", "7", "7", "\\dfrac{14}{2}"]
    correct = [True, True, False, False, True, False, False, False]
    with Checker(workers=1) as checker:
        assert checker.equivalent("1/2", "0.5")
        assert majority_vote(answers[:5], checker.equivalent) == 0
        # blocks of 4: [1/2, 0.5, 3, 3] tie 2-2 -> first seen (1/2, correct); [1/2, 7, 7, 14/2] -> 7 (wrong)
        assert maj_at_k(answers, correct, 4, checker.equivalent) == pytest.approx(0.5)


def test_maj_blocks_ties_and_unparseable():
    assert maj_at_k(["1", "1", "2", "3"], [True, True, False, False], 2, string_equal) == 0.5
    assert majority_vote([None, "2", "3", "3"], string_equal) == 2
    assert majority_vote(["2", "3"], string_equal) == 0  # tie -> seen first
    assert majority_vote([None, None], string_equal) is None
    assert maj_at_k([None, None, "4"], [False, False, True], 3, string_equal) == 1.0
    assert maj_at_k([None, None], [False, False], 2, string_equal) == 0.0
    with pytest.raises(ValueError):
        maj_at_k(["1"], [True], 2, string_equal)


# ---------------------------------------------------------------------------------------- aggregation
def test_score_problems_hand_values():
    problems = [
        {"answers": ["1"] * 4, "correct": [True] * 4, "tokens": [10, 20, 30, 40]},
        {"answers": ["1", "2", "1", "2"], "correct": [True, False, True, False], "tokens": [5] * 4},
        {"answers": ["9", None, "9", "8"], "correct": [False] * 4, "tokens": [1] * 4},
    ]
    s = score_problems(problems, 2, string_equal, bootstrap=200, seed=3)
    assert s["problems"] == 3 and s["samples"] == 12 and s["short"] == 0
    assert s["pass@1"] == pytest.approx(0.5)  # (1 + 0.5 + 0) / 3
    assert s["pass@2"] == pytest.approx((1 + (1 - 1 / 6) + 0) / 3)  # 1 - C(2,2)/C(4,2) for the middle one
    assert s["maj@2"] == pytest.approx((1 + 1 + 0) / 3)  # middle: blocks [1,2] and [1,2] -> "1" both times
    assert s["mean_tokens"] == pytest.approx((100 + 20 + 4) / 12)
    lo, hi = s["pass@1_ci95"]
    assert 0 <= lo <= 0.5 <= hi <= 1


def test_bootstrap_is_reproducible_by_seed():
    vals = [0, 1, 0.5, 0.25, 1, 0, 0.75, 1, 0, 0]
    a, b = bootstrap_ci(vals, 1000, seed=7), bootstrap_ci(vals, 1000, seed=7)
    assert a == b
    assert bootstrap_ci(vals, 1000, seed=8) != a
    assert a[0] < sum(vals) / len(vals) < a[1]
    assert bootstrap_ci([0.3] * 5, 100, seed=0) == pytest.approx((0.3, 0.3))
    assert bootstrap_ci([], 100, seed=0) is None and bootstrap_ci(vals, 0, seed=0) is None


def test_behaviour_aggregates_split_by_outcome():
    rows = [{"steps": 4, "reflections": 1, "backtracks": 1, "tokens": 100, "correct": True},
            {"steps": 2, "reflections": 0, "backtracks": 0, "tokens": 50, "correct": True},
            {"steps": 6, "reflections": 3, "backtracks": 2, "tokens": 300, "correct": False}]
    agg = aggregate_behaviour(rows)
    assert agg["all"]["outputs"] == 3 and agg["all"]["backtracks"] == pytest.approx(1.0)
    assert agg["all"]["backtrack_share"] == pytest.approx(2 / 3)
    assert agg["correct"]["tokens"] == pytest.approx(75) and agg["correct"]["backtrack_share"] == 0.5
    assert agg["wrong"]["reflections"] == 3 and agg["wrong"]["backtrack_share"] == 1.0
    assert aggregate_behaviour([])["wrong"]["steps"] is None


# ------------------------------------------------------------------------------------------- Pearson
def test_pearson_known_value():
    st = pearson([1, 2, 3, 4, 5], [2, 4, 5, 4, 5])
    assert st["r"] == pytest.approx(6 / math.sqrt(60))  # sum dx*dy / sqrt(sum dx^2 * sum dy^2) = 0.7746
    assert st["p"] == pytest.approx(0.12403, abs=1e-4)  # t = 2.1213 with 3 degrees of freedom
    assert pearson([1, 2], [3, 5]) == {"n": 2, "r": pytest.approx(1.0), "p": None}
    assert pearson([1, 1, 1], [1, 2, 3])["r"] is None  # constant series


def _fake_eval(dir_, backtracks, accs, tokens):
    dir_.mkdir(parents=True)
    ds = {}
    for name, bt, acc, tok in zip(("math500", "aime24"), backtracks, accs, tokens):
        ds[name] = {"pass@1": acc, "mean_tokens": tok, "problems": 3, "samples": 6,
                    "behaviour": {"all": {"backtracks": bt, "reflections": bt}}}
    (dir_ / "summary.json").write_text(json.dumps({"k": 2, "datasets": ds, "overall": {}}))


def test_correlation_report_across_runs(tmp_path):
    # math500: backtracks 1..5 vs accuracy .2,.4,.5,.4,.5 (r = 0.7746); aime24: perfectly linear (r = 1)
    for i, (b, a) in enumerate(zip([1, 2, 3, 4, 5], [0.2, 0.4, 0.5, 0.4, 0.5])):
        _fake_eval(tmp_path / "runs" / f"ckpt-{i}", [b, b], [a, 0.1 * b], [100 * b, 50])
    res = correlation_report([tmp_path / "runs"], tmp_path / "out")
    bt = res["correlations"]["backtracks"]
    assert bt["math500"]["r"] == pytest.approx(6 / math.sqrt(60))
    assert bt["aime24"]["r"] == pytest.approx(1.0)
    assert bt["pooled"]["n"] == 10
    assert res["correlations"]["tokens"]["aime24"]["r"] is None  # constant length
    for name in ("correlation.json", "correlation.md", "correlation_backtracks.png", "correlation_length.png"):
        assert (tmp_path / "out" / name).stat().st_size > 100
    assert (tmp_path / "out" / "correlation_backtracks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(DataError, match="no eval summary.json"):
        correlation_report([tmp_path / "out"], tmp_path / "out2")


def test_training_curves_tolerate_missing_fields(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [{"step": 1, "reward_mean": -0.5, "length_mean": 100},
            {"step": 2, "reward_mean": 0.0, "behaviour/backtracks_mean": 0.4},
            {"step": 3, "reward": 0.5, "length_mean": 140, "backtracks_mean": 0.9}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 4, "rew')  # torn tail
    got, series = read_training_metrics(path)
    assert [k for k, _ in series] == ["reward_mean", "length_mean", "backtracks_mean"]
    assert [r.get("reward_mean") for r in got] == [-0.5, 0.0, 0.5]
    assert [r.get("backtracks_mean") for r in got] == [None, 0.4, 0.9]
    res = training_report(path, tmp_path / "training.png")
    assert res["series"]["reward_mean"]["last"] == (3, 0.5)
    assert (tmp_path / "training.png").stat().st_size > 1000
    training_report(path, tmp_path / "train-dir")  # a directory gets training.png + training.json
    assert json.loads((tmp_path / "train-dir" / "training.json").read_text())["rows"] == 3
    assert (tmp_path / "train-dir" / "training.png").exists()
    (tmp_path / "bad.jsonl").write_text('{"step": 1, "loss": 2}\n')
    with pytest.raises(DataError, match="no row has any of the fields"):
        read_training_metrics(tmp_path / "bad.jsonl")
