"""Behaviour analytics of model outputs: steps, self-reflections, backtracks and tokens (ASTRO §4.3).

Counting is the shared counter ``astro_reasoner.behaviour.analyze_behaviour`` (the same one procedure
cloning and RL logging use), so eval numbers and training curves count the same phrases. This module only
aggregates: per run, the mean of each count and the share of outputs with at least one backtrack, over all
outputs and split by correct / wrong (unparseable answers count as wrong: they earn no reward).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

COUNT_KEYS = ("steps", "reflections", "backtracks")


def behaviour_counts(text: str) -> dict[str, int]:
    """``{"steps", "reflections", "backtracks"}`` of one output, from the shared counter."""
    from ..behaviour import analyze_behaviour

    counts = analyze_behaviour(text).counts()
    return {key: int(counts[key]) for key in COUNT_KEYS}


def _summary(rows: list[Mapping[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"outputs": len(rows)}
    for key in (*COUNT_KEYS, "tokens"):
        out[key] = sum(float(r[key]) for r in rows) / len(rows) if rows else None
    out["backtrack_share"] = sum(r["backtracks"] >= 1 for r in rows) / len(rows) if rows else None
    return out


def aggregate_behaviour(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Means per output (steps, reflections, backtracks, tokens) and the ≥1-backtrack share, for ``all``,
    ``correct`` and ``wrong`` outputs. Each row has those four keys plus ``correct`` (bool)."""
    rows = list(rows)
    return {
        "all": _summary(rows),
        "correct": _summary([r for r in rows if r["correct"]]),
        "wrong": _summary([r for r in rows if not r["correct"]]),
    }
