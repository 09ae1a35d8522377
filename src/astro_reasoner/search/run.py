"""`run_search`: the stage function (problems -> ``trees.jsonl`` + ``summary.json``), resumable.

The stage contract (astro_reasoner/__init__.py): ``run_search(problems, out, cfg, *, policy, checker, shard,
reporter, meta)`` -> the summary; policy and checker are required.

Used by ``astro search``, by the pipeline, and by each Ray worker's head-side writer.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import require_arguments
from ..io import write_json
from ..trees import append_tree, completed_ids, load_trees, trees_path
from ..types import Problem, SearchTree
from . import storage
from .accounting import run_summary
from .config import SearchConfig
from .driver import Counters, Driver

if TYPE_CHECKING:  # annotations only: the protocols every backend / checker (and test double) implements
    from ..backends.base import Policy
    from ..checking import AnswerChecker

SUMMARY_FILE = "summary.json"


class Reporter(Protocol):
    """Receives progress events (the CLI's rich progress bar implements it)."""

    def start(self, total: int, done: int, correct: int) -> None: ...
    def tree(self, tree: SearchTree) -> None: ...
    def wave(self, counters: Counters) -> None: ...


def pending_problems(problems: Sequence[Problem], out_dir: str | os.PathLike,
                     shard: tuple[int, int] | None = None) -> tuple[list[Problem], set[str]]:
    """(problems of this shard still to search, ids already done in ``out_dir``)."""
    storage.check_unique_ids(problems)
    mine = storage.select_shard(problems, shard)
    done = completed_ids(out_dir)
    return [p for p in mine if p.id not in done], {p.id for p in mine if p.id in done}


def summary_path(out_dir: str | os.PathLike, shard: tuple[int, int] | None = None):
    path = trees_path(out_dir, shard)
    return path.with_name(SUMMARY_FILE if shard is None else f"summary.shard-{shard[0]}-of-{shard[1]}.json")


def write_summary(out_dir, cfg: SearchConfig, counters: dict[str, Any], wall: float,
                  shard: tuple[int, int] | None = None, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    path = trees_path(out_dir, shard)
    trees = load_trees(path) if path.exists() else []
    summary = run_summary(trees, counters, wall, cfg, meta)
    write_json(summary_path(out_dir, shard), summary)
    return summary


def run_search(problems: Sequence[Problem], out: str | os.PathLike, cfg: SearchConfig, *,
               policy: Policy | None = None, checker: AnswerChecker | None = None,
               shard: tuple[int, int] | None = None, reporter: Reporter | None = None,
               meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Search every problem (of ``shard``) not yet in ``out`` and append each finished tree to its
    trees file; then write and return the run summary (``summary.json``).

    ``policy`` (a backends.Policy) and ``checker`` (a checking.AnswerChecker) are required; the caller opens
    and closes both. Re-running with the same arguments resumes: finished problem ids are skipped, a torn last
    line from a crash is dropped. Settings that change what a tree is must stay the same (else ConfigError).
    """
    require_arguments("run_search", policy=policy, checker=checker)
    os.makedirs(out, exist_ok=True)
    lock = storage.check_settings(out, cfg.search_settings(), shard)  # noqa: F841 - held for the run
    todo, done = pending_problems(problems, out, shard)
    path = trees_path(out, shard)
    if reporter:
        correct = sum(t.stats.get("terminals_correct", 0) > 0 for t in load_trees(path)) \
            if path.exists() else 0
        reporter.start(len(todo) + len(done), len(done), correct)
    t0, c0 = time.perf_counter(), time.process_time()
    driver = Driver(policy, checker, cfg, on_wave=reporter.wave if reporter else None)
    for tree in driver.run(todo):
        append_tree(path, tree)
        if reporter:
            reporter.tree(tree)
    meta = {"backend": getattr(policy, "name", type(policy).__name__), **(meta or {})}
    counters = {**driver.counters.to_json(), "cpu_seconds": round(time.process_time() - c0, 3)}
    return write_summary(out, cfg, counters, time.perf_counter() - t0, shard, meta)
