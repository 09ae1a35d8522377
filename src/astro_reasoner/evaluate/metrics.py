"""Scores over sampled answers: pass@1 (mean over n samples) with a bootstrap interval, maj@k, pass@k.

- pass@k uses the unbiased estimator of Chen et al. (2021), ``1 - C(n-c, k) / C(n, k)``, computed as the
  numerically stable product ``1 - prod(1 - k / arange(n-c+1, n+1))`` exactly as lighteval does.
  pass@1 is then the mean over problems of c/n.
- The 95 % interval of pass@1 is a percentile bootstrap over *problems* (the unit that was sampled from the
  benchmark), reproducible from its seed. Written with numpy: scipy.stats.bootstrap would do it too, but
  needs its own resampling of ragged per-problem samples; this is ten lines.
- maj@k votes among k answers, grouping answers by the checker's *equivalence* (``Checker.equivalent``:
  "1/2" and "0.5" are one vote), not by string equality. With n samples we average over the n // k disjoint
  blocks of k consecutive samples (our choice: it uses every sample once and lowers the variance; with
  n == k it is plain maj@k). Unparseable answers do not vote; ties go to the answer seen first.
- A task whose answers are not values (Countdown: an expression that must use the given numbers) gives
  each sample a *vote key* instead (``astro_reasoner.tasks.vote_keys``): answers vote together when their
  keys are equal, and a None key does not vote. Without keys (math) the equivalence above is used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

Equivalent = Callable[[str, str], bool]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with ``c`` correct among ``n`` samples."""
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: need 0 <= c <= n, got c={c}, n={n}")
    if k < 1 or n < k:
        raise ValueError(f"pass_at_k: need 1 <= k <= n, got k={k}, n={n} (sample at least k answers)")
    if n - c < k:  # every k-subset contains a correct sample
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def bootstrap_ci(values: Sequence[float], samples: int, seed: int, level: float = 0.95
                 ) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of ``values`` (None without values or resamples)."""
    vals = np.asarray(values, dtype=float)
    if samples <= 0 or vals.size == 0:
        return None
    rng = np.random.default_rng(seed)
    means = vals[rng.integers(0, vals.size, size=(samples, vals.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


def majority_vote(answers: Sequence[str | None], equivalent: Equivalent,
                  keys: Sequence[Any] | None = None) -> int | None:
    """Index of the first member of the largest group of equivalent answers (None if none parses).

    A new answer joins the first existing group whose first member it is equivalent to; identical strings
    never reach ``equivalent`` (it may cost a call into the checker's process pool). With ``keys`` (one
    per answer) answers group by equal keys instead, and an answer whose key is None does not vote.
    """
    if keys is not None:
        return _keyed_vote(keys, len(answers))
    groups: list[list[int]] = []  # each: indices of the answers in one group, first member first
    for i, ans in enumerate(answers):
        if ans is None:
            continue
        for g in groups:
            rep = answers[g[0]]
            if ans == rep or equivalent(rep, ans):  # type: ignore[arg-type]
                g.append(i)
                break
        else:
            groups.append([i])
    if not groups:
        return None
    best = max(groups, key=lambda g: (len(g), -g[0]))  # most votes, then the earliest first member
    return best[0]


def _keyed_vote(keys: Sequence[Any], n: int) -> int | None:
    """:func:`majority_vote` over vote keys: the same rule (most votes, then the earliest first member)."""
    if len(keys) != n:
        raise ValueError("majority_vote: answers and keys differ in length")
    groups: dict[Any, list[int]] = {}
    for i, key in enumerate(keys):
        if key is not None:
            groups.setdefault(key, []).append(i)
    if not groups:
        return None
    return max(groups.values(), key=lambda g: (len(g), -g[0]))[0]


def maj_at_k(answers: Sequence[str | None], correct: Sequence[bool], k: int, equivalent: Equivalent,
             keys: Sequence[Any] | None = None) -> float:
    """maj@k of one problem: the mean over the ``len(answers) // k`` blocks of k samples of whether the
    majority answer of the block is correct (the verdict of that answer's first sample). ``keys``: vote
    keys, one per answer, used instead of ``equivalent`` (see :func:`majority_vote`)."""
    if len(answers) != len(correct):
        raise ValueError("maj_at_k: answers and correct differ in length")
    blocks = len(answers) // k
    if k < 1 or blocks == 0:
        raise ValueError(f"maj_at_k: need 1 <= k <= number of samples, got k={k}, samples={len(answers)}")
    hits = 0
    for b in range(blocks):
        block = answers[b * k:(b + 1) * k]
        win = majority_vote(block, equivalent, None if keys is None else keys[b * k:(b + 1) * k])
        hits += bool(win is not None and correct[b * k + win])
    return hits / blocks


def score_problems(problems: Sequence[dict[str, Any]], k: int, equivalent: Equivalent, *,
                   bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Metrics over problems; each item has ``answers`` (list[str|None]) and ``correct`` (list[bool]),
    its samples in sample-index order, and optionally ``tokens`` (list[int]) and ``vote_keys`` (maj@k
    groups by these instead of ``equivalent``; see :func:`majority_vote`).

    Problems with fewer than k samples (an unfinished run) count in pass@1 but not in maj@k/pass@k;
    ``short`` says how many there were.
    """
    p1 = [sum(p["correct"]) / len(p["correct"]) for p in problems if p["correct"]]
    full = [p for p in problems if len(p["correct"]) >= k]
    tokens = [t for p in problems for t in p.get("tokens", ())]
    ci = bootstrap_ci(p1, bootstrap, seed)
    return {
        "problems": len(p1),
        "samples": sum(len(p["correct"]) for p in problems),
        "pass@1": float(np.mean(p1)) if p1 else None,
        "pass@1_ci95": list(ci) if ci else None,
        f"maj@{k}": (float(np.mean([maj_at_k(p["answers"], p["correct"], k, equivalent, p.get("vote_keys"))
                                  for p in full]))
                     if full else None),
        f"pass@{k}": (float(np.mean([pass_at_k(len(p["correct"]), sum(p["correct"]), k) for p in full]))
                      if full else None),
        "short": len(problems) - len(full),
        "mean_tokens": float(np.mean(tokens)) if tokens else None,
    }
