"""Compute accounting for search: per-tree statistics rolled up into a run summary, and the ``--dry-run``
estimate of a whole run from the config and a short measured probe.

No peer system reports tokens or calls per search tree; each tree here carries
its own prompt tokens, generated tokens, backend calls, wall seconds and rollouts in ``tree.stats``.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..types import Problem, SearchTree
from .config import SearchConfig

if TYPE_CHECKING:  # annotations only: the protocols every backend / checker (and test double) implements
    from ..backends.base import Policy
    from ..checking import AnswerChecker

TREE_SUMS = ("prompt_tokens", "generated_tokens", "backend_calls", "rollouts", "expansions", "iterations", "checks",
             "wall_seconds", "nodes")


def _mean(xs: Sequence[float]) -> float:
    return round(statistics.fmean(xs), 3) if xs else 0.0


def summarize_trees(trees: Sequence[SearchTree]) -> dict[str, Any]:
    """Totals and per-tree means over finished trees (what `astro trees stats` prints)."""
    n = len(trees)
    st = [t.stats for t in trees]
    correct = [s.get("terminals_correct", 0) for s in st]
    wrong = [s.get("terminals_wrong", 0) for s in st]
    out: dict[str, Any] = {
        "trees": n,
        "trees_with_correct": sum(c > 0 for c in correct),
        "trees_with_wrong": sum(w > 0 for w in wrong),
        "share_with_correct": round(sum(c > 0 for c in correct) / n, 4) if n else 0.0,
        "share_with_wrong": round(sum(w > 0 for w in wrong) / n, 4) if n else 0.0,
        "terminals_correct_per_tree": _mean(correct),
        "terminals_wrong_per_tree": _mean(wrong),
        "depth_per_tree": _mean([max(x.depth for x in t.nodes) for t in trees]),
        "expanded_depth_per_tree": _mean([max(x.depth for x in t.nodes if x.source == "expand")
                                          for t in trees]),
        "stop_reasons": dict(Counter(s.get("stop_reason", "?") for s in st)),
    }
    for key in TREE_SUMS:
        vals = [float(s.get(key, 0)) for s in st]
        out[f"{key}_total"] = round(sum(vals), 3)
        out[f"{key}_per_tree"] = _mean(vals)
    return out


def run_summary(trees: Sequence[SearchTree], counters: dict[str, Any], wall: float, cfg: SearchConfig,
                meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """``summary.json``: all trees in the output (earlier runs included) + this invocation's work."""
    gen, cpu = counters.get("generated_tokens", 0), counters.get("cpu_seconds", 0)
    return {
        **summarize_trees(trees),
        "this_run": {**counters, "wall_seconds": round(wall, 3),
                     "generated_tokens_per_second": round(gen / wall, 2) if wall > 0 else 0.0,
                     # per CPU-second of this process: comparable across runs on a shared machine
                     "generated_tokens_per_cpu_second": round(gen / cpu, 2) if cpu > 0 else None},
        "config": dataclasses.asdict(cfg),
        "config_hash": cfg.config_hash(),
        **(meta or {}),
    }


def _calls_per_wave(cfg: SearchConfig, problems: int) -> int:
    """Backend calls of one full wave (upper bound: every child non-terminal gets rollouts)."""
    expand = min(problems, cfg.max_active_trees) * cfg.leaves_per_tree
    calls = -(-expand // max(1, cfg.batch_size // cfg.k))
    if cfg.rollouts:
        calls += -(-expand * cfg.k // max(1, cfg.batch_size // cfg.rollouts))
    return calls


def estimate_run(problems: Sequence[Problem], policy: Policy, checker: AnswerChecker, cfg: SearchConfig,
                 probe_problems: int = 2) -> dict[str, Any]:
    """Measure one wave (one iteration) on a few problems, then scale to the whole run.

    Per tree, the estimate is an upper bound: ``iterations`` times the tokens of the first iteration, with
    no early stop (later iterations have longer prompts but usually shorter rollouts). Time uses the probe's
    generated tokens/s, measured at a batch of ``probe_problems`` trees, smaller than the real one, so
    the time is pessimistic on hardware where bigger batches are faster.
    """
    from .driver import Driver

    probe = list(problems[:max(1, probe_problems)])
    pcfg = dataclasses.replace(cfg, iterations=1, leaves_per_tree=1, early_stop_correct=0, early_stop_wrong=0)
    driver = Driver(policy, checker, pcfg)
    t0 = time.perf_counter()
    trees = list(driver.run(probe))
    wall = time.perf_counter() - t0
    c = driver.counters
    n = len(trees)
    gen_per_iter = c.generated_tokens / n
    prompt_per_iter = c.prompt_tokens / n
    tok_s = c.generated_tokens / wall if wall > 0 else 0.0
    total_gen = gen_per_iter * cfg.iterations * len(problems)
    return {
        "problems": len(problems), "probe_problems": n, "probe_seconds": round(wall, 2),
        "probe_generated_tokens": c.generated_tokens, "probe_tokens_per_second": round(tok_s, 1),
        "generated_tokens_per_iteration": round(gen_per_iter, 1),
        "prompt_tokens_per_iteration": round(prompt_per_iter, 1),
        "est_generated_tokens_per_tree": round(gen_per_iter * cfg.iterations),
        "est_generated_tokens": round(total_gen),
        "est_prompt_tokens": round(prompt_per_iter * cfg.iterations * len(problems)),
        "est_backend_calls_per_wave": _calls_per_wave(cfg, len(problems)),
        "est_seconds": round(total_gen / tok_s) if tok_s else None,
    }
