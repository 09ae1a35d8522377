"""The search's output directory: shards, unique ids, and the claim of the directory for one set of settings.

The ``trees.jsonl`` format itself (write, read, resume ids) is ``astro_reasoner.trees``, below every stage that
reads trees (procedure cloning reads them too).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..config import ConfigError
from ..io import DataError, DirLock
from ..outdir import claim_out_dir
from ..trees import trees_path
from ..types import Problem

SETTINGS_FILE = "search_config.json"


def parse_shard(spec: str | None) -> tuple[int, int] | None:
    """``"i/n"`` (0 <= i < n) -> (i, n); None stays None."""
    if spec is None or spec == "":
        return None
    try:
        i_s, n_s = spec.split("/")
        i, n = int(i_s), int(n_s)
    except ValueError:
        raise ConfigError(f"--shard {spec!r}: expected i/n with integers, e.g. 0/4 for the first of 4") from None
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"--shard {spec!r}: need 0 <= i < n (shards are numbered from 0)")
    return i, n


def select_shard(problems: Sequence[Problem], shard: tuple[int, int] | None) -> list[Problem]:
    """Shard i of n takes the problems at positions i, i+n, i+2n, ... of the input order."""
    if shard is None:
        return list(problems)
    i, n = shard
    return list(problems[i::n])


def check_unique_ids(problems: Sequence[Problem]) -> None:
    seen: set[str] = set()
    for p in problems:
        if p.id in seen:
            raise DataError(f"problem id {p.id!r} appears twice in the problem set; ids must be unique "
                            "(trees are keyed by problem id for resume)")
        seen.add(p.id)


def check_settings(out_dir: str | os.PathLike, settings: dict, shard: tuple[int, int] | None = None) -> DirLock:
    """Claim ``out_dir`` (shard) for this run and refuse to resume into a directory whose trees were built
    with different search settings (``outdir.claim_out_dir``). Keep the returned lock while the search writes.
    Shards share the settings file but each locks its own trees file."""
    return claim_out_dir(out_dir, settings, settings_file=SETTINGS_FILE, holds="trees",
                         lock_name=f".{trees_path(out_dir, shard).name}.lock")
