"""Comparisons between two evaluated models on the same problems, and accuracy by behaviour.

- ``paired_difference``: ASTRO − Direct as a *paired* difference over problems. Both arms answer the same
  held-out problems, so the per-problem difference of pass rates removes the between-problem variance that two
  independent CIs would double-count; the 95 % CI is a percentile bootstrap over problems (Efron &
  Tibshirani 1993, ch. 13). Written here because the eval samples are our own records; numpy does the work.
- ``accuracy_by_backtracks``: outputs grouped by how often they backtracked (0, 1, 2, 3+), each with its
  accuracy: "is a model right more often after going back than on a single attempt?" (issue 16; ASTRO §4.3
  reads the same relation across checkpoints).
- ``rl_signal``: from the RL metrics file, the share of GRPO groups whose rewards were all equal (TRL logs it
  as ``frac_reward_zero_std``): such groups have zero advantage and give no gradient.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..io import read_jsonl, stable_seed
from ..types import Verdict

BACKTRACK_BINS = ("0", "1", "2", "3+")


def _correct(sample: Mapping[str, Any]) -> float:
    return 1.0 if sample.get("verdict") == Verdict.CORRECT else 0.0  # a str enum: equals the JSON value


def per_problem_pass(samples: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], float]:
    """Mean correctness per (dataset, problem id): each problem's pass@1 over its n samples."""
    sums: dict[tuple[str, str], list[float]] = {}
    for s in samples:
        key = (str(s.get("dataset", "")), str(s["problem_id"]))
        sums.setdefault(key, []).append(_correct(s))
    return {k: sum(v) / len(v) for k, v in sums.items()}


def paired_difference(a: Iterable[Mapping[str, Any]], b: Iterable[Mapping[str, Any]], *,
                      bootstrap: int = 2000, seed: int = 0) -> dict[str, Any]:
    """pass@1(a) − pass@1(b) over the problems both answered, with a percentile-bootstrap 95 % CI.

    Returns ``{"problems", "a", "b", "diff", "ci95", "a_better", "b_better"}`` (``ci95`` is None when fewer
    than two shared problems or ``bootstrap`` is 0)."""
    import numpy as np

    pa, pb = per_problem_pass(a), per_problem_pass(b)
    keys = sorted(set(pa) & set(pb))
    out: dict[str, Any] = {"problems": len(keys), "a": None, "b": None, "diff": None, "ci95": None,
                           "a_better": 0, "b_better": 0}
    if not keys:
        return out
    xa = np.array([pa[k] for k in keys])
    xb = np.array([pb[k] for k in keys])
    d = xa - xb
    out.update(a=float(xa.mean()), b=float(xb.mean()), diff=float(d.mean()),
               a_better=int((d > 0).sum()), b_better=int((d < 0).sum()))
    if bootstrap > 0 and len(keys) > 1:
        rng = np.random.default_rng(stable_seed(seed, "paired-bootstrap", len(keys)))
        idx = rng.integers(0, len(keys), size=(bootstrap, len(keys)))
        means = d[idx].mean(axis=1)
        lo, hi = np.percentile(means, [2.5, 97.5])
        out["ci95"] = [float(lo), float(hi)]
    return out


def _bin(backtracks: int) -> str:
    return BACKTRACK_BINS[min(int(backtracks), 3)]


def accuracy_by_backtracks(samples: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{"0": {"outputs", "accuracy"}, "1": ..., "2": ..., "3+": ..., ">=1": ...}`` (accuracy None if empty)."""
    groups: dict[str, list[float]] = {b: [] for b in (*BACKTRACK_BINS, ">=1")}
    for s in samples:
        n = int(s.get("backtracks", 0) or 0)
        groups[_bin(n)].append(_correct(s))
        if n >= 1:
            groups[">=1"].append(_correct(s))
    return {b: {"outputs": len(v), "accuracy": (sum(v) / len(v)) if v else None} for b, v in groups.items()}


def rl_signal(metrics_file: str | Path) -> dict[str, Any] | None:
    """Over the RL steps logged in ``metrics.jsonl``: mean share of zero-reward-variance groups, the share of
    steps where every group had zero variance (no gradient at all), and the mean gradient norm."""
    path = Path(metrics_file)
    if not path.exists():
        return None
    rows = [r for r in read_jsonl(path) if "frac_reward_zero_std" in r or "grad_norm" in r]
    if not rows:
        return None
    zero = [float(r["frac_reward_zero_std"]) for r in rows if r.get("frac_reward_zero_std") is not None]
    grads = [float(r["grad_norm"]) for r in rows if r.get("grad_norm") is not None]
    return {"steps": len(rows),
            "frac_reward_zero_std": sum(zero) / len(zero) if zero else None,
            "steps_without_signal": sum(z >= 1.0 for z in zero) / len(zero) if zero else None,
            "grad_norm_mean": sum(grads) / len(grads) if grads else None}
