"""The ``trees.jsonl`` format: finished search trees, one ``SearchTree.to_json()`` per line, in an output dir.

Each finished tree is appended and fsynced as one line, so a crash loses at most the trees still in flight;
a torn last line is dropped on the next start, and problem ids already in the file are skipped (resume).
``--shard i/n`` writes ``trees.shard-i-of-n.jsonl`` in the same directory, so shards of one run can share
a directory without two processes appending to one file; ``load_trees(dir)`` reads them all.

Below the stages on purpose: the search writes trees and procedure cloning (and the viewers) read them, so the
one reader lives where all of them can import it without a stage importing another stage.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from .io import DataError, append_jsonl, done_ids, numbered_jsonl
from .types import SearchTree

TREES_FILE = "trees.jsonl"


def trees_path(out_dir: str | os.PathLike, shard: tuple[int, int] | None = None) -> Path:
    name = TREES_FILE if shard is None else f"trees.shard-{shard[0]}-of-{shard[1]}.jsonl"
    return Path(out_dir) / name


def completed_ids(out_dir: str | os.PathLike) -> set[str]:
    """Problem ids with a finished tree in any trees file of ``out_dir`` (torn tails dropped first)."""
    ids: set[str] = set()
    for path in tree_files(out_dir):
        ids |= done_ids(path)
    return ids


# Tree stats that measure how the run went (timing; how many backend calls the tree's prompts were spread
# over, which depends on what else was in the batch), not what the tree is.
RUN_STATS = ("wall_seconds", "backend_calls")


def tree_content(tree: SearchTree) -> str:
    """Canonical JSON of a tree without :data:`RUN_STATS`: with a policy that is deterministic per seed, an
    interrupted-and-resumed search, a Ray run and a one-process run give the same string for every tree."""
    rec = tree.to_json()
    rec["stats"] = {k: v for k, v in (rec.get("stats") or {}).items() if k not in RUN_STATS}
    return json.dumps(rec, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def append_tree(path: Path, tree: SearchTree) -> None:
    append_jsonl(path, [tree.to_json()])


def tree_files(path: str | os.PathLike) -> list[Path]:
    path = Path(path)
    if path.is_dir():
        return sorted(path.glob("trees*.jsonl"))
    return [path] if path.exists() else []


def load_trees(path: str | os.PathLike) -> list[SearchTree]:
    """Trees from a ``trees.jsonl`` file, or from every ``trees*.jsonl`` in a directory (shards)."""
    return [tree for _, tree in iter_trees(path)]


def iter_trees(path: str | os.PathLike) -> Iterator[tuple[str, SearchTree]]:
    """(``file:line``, tree) for every tree under ``path``: the one reader of search trees.

    A torn last line (a run still writing, or killed) is skipped; a malformed line, a line that is not a tree
    record and a problem id found twice are each a :class:`DataError` naming ``file:line`` (see
    ``io.jsonl_rows``: anything but a torn tail is data that skipping would silently lose).
    """
    files = tree_files(path)
    if not files:
        raise DataError(f"{path}: no trees.jsonl found; run `astro search ... --out {path}` first")
    where: dict[str, str] = {}
    for f in files:
        for lineno, rec in numbered_jsonl(f, tolerate_torn_tail=True):
            try:
                tree = SearchTree.from_json(rec)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise DataError(f"{f}:{lineno}: not a search tree record ({type(exc).__name__}: {exc}); was this "
                                "file written by `astro search`?") from None
            if tree.problem_id in where:
                raise DataError(f"{f}:{lineno}: problem id {tree.problem_id!r} already read from "
                                f"{where[tree.problem_id]}; two runs wrote the same problem, keep one line")
            where[tree.problem_id] = f"{f}:{lineno}"
            yield where[tree.problem_id], tree
