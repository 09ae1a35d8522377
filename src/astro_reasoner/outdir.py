"""Claiming an output directory: one writer, and resume only with the settings its outputs were made with.

Every stage that writes into an output directory (search, clone, best-of-N, eval, SFT/GRPO) starts with
:func:`claim_out_dir`: it takes the one-writer lock (``io.lock_dir``), records the run's settings in the
stage's settings file on first use, and on a later run compares the recorded settings with the new ones.
Appending samples or trees made with other settings to the same files would silently mix two
distributions, so a changed setting is refused, with one message for every stage: the directory, each
changed key as ``old -> new``, and the fixes. Keys that do not change what is written (batch size,
threads, ...) are passed as ``ignore`` and never compared.

Settings are compared as JSON values (what the file holds after a round trip), so a tuple in a config
compares equal to the list read back from disk.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import ConfigError, DataError
from .io import LOCK_FILE, DirLock, lock_dir, read_json, write_json

_MISSING = object()


def as_json(value: Any) -> Any:
    """``value`` as it reads back from a settings file (tuples become lists, paths strings, ...)."""
    return json.loads(json.dumps(value, default=str))


def changed_settings(old: dict, new: dict, *, ignore: Iterable[str] = (), only_common: bool = False
                     ) -> list[tuple[str, Any, Any]]:
    """``(key, old value, new value)`` for each key whose value differs, sorted by key; a key missing on one
    side shows as None. ``only_common``: keys only one side has are not compared."""
    old, new, skip = as_json(old), as_json(new), set(ignore)
    keys = set(old) & set(new) if only_common else set(old) | set(new)
    return [(k, old.get(k), new.get(k)) for k in sorted(keys - skip) if old.get(k, _MISSING) != new.get(k, _MISSING)]


def refuse_changed(out: str | os.PathLike, changes: list[tuple[str, Any, Any]], *, holds: str,
                   settings_file: str | os.PathLike, overwrite_flag: str | None = None) -> None:
    """Raise the one ConfigError for resuming ``out`` with other settings (nothing when ``changes`` is empty)."""
    if not changes:
        return
    shown = ", ".join(f"{k}: {old!r} -> {new!r}" for k, old, new in changes)
    fixes = "use a new output directory, or restore those settings"
    if overwrite_flag:
        fixes = f"use a new output directory, restore those settings, or pass {overwrite_flag} to start over there"
    raise ConfigError(f"{out} holds {holds} made with other settings ({shown}; recorded in {settings_file}); "
                      f"a resumed run must use the same settings: {fixes}")


def claim_out_dir(out: str | os.PathLike, settings: dict, *, settings_file: str, holds: str = "outputs",
                  record: dict | None = None, under: str | None = None, ignore: Iterable[str] = (),
                  only_common: bool = False, overwrite: bool = False, overwrite_flag: str | None = None,
                  lock_name: str = LOCK_FILE, outputs: Iterable[str] = (), fallback_file: str | None = None,
                  leader: bool = True) -> DirLock:
    """Claim ``out`` for a run with ``settings``; keep the returned lock for as long as the run writes.

    - The lock: ``io.lock_dir(out, lock_name)``; a second writer gets :class:`DirectoryBusy` at once.
    - ``settings_file`` (in ``out``) holds ``record`` (default: ``settings``); with ``under``, the settings
      are ``record[under]`` and the other keys of ``record`` are bookkeeping beside them (a hash, say).
      The file is written when it is missing, and rewritten when it differs from ``record`` in what is not
      compared (ignored keys, bookkeeping), so it always describes the latest run.
    - On resume the stored settings are compared with ``settings``, minus ``ignore``; any other difference
      raises ConfigError naming ``out``, each changed key ``old -> new`` and the fixes (``overwrite_flag``,
      e.g. ``--overwrite``, is offered when the command has one). ``only_common``: keys the stored file does
      not have (written by a version that did not record them) are not compared.
    - ``overwrite``: nothing is compared and the file is replaced; clearing old outputs is the caller's job.
    - ``outputs``: files of the stage that must not exist without the settings file (their settings would
      be unknown): refused. ``fallback_file``: where an older version recorded the settings (same layout),
      read when ``settings_file`` is missing.
    - ``leader=False``: a helper process of a run whose leader holds the claim (a non-main rank of a
      distributed job): it compares only -- no lock (the leader has it), nothing written.
    """
    d = Path(out)
    lock = lock_dir(d, lock_name) if leader else DirLock(d / lock_name, None)
    record = settings if record is None else record
    path = d / settings_file
    stored_path = path if path.exists() else d / fallback_file if fallback_file else path
    stored = read_json(stored_path) if stored_path.exists() and not overwrite else None
    if stored is not None and not isinstance(stored, dict):
        raise DataError(f"{stored_path}: expected a JSON object of settings; restore it or use a new output "
                        "directory")
    if stored is None and not overwrite:
        for name in outputs:
            if (d / name).exists():
                raise ConfigError(f"{d / name} exists but {path} does not, so its settings are unknown; use a "
                                  "new output directory or delete that file")
    if stored is not None:
        old = stored.get(under) if under else stored
        if isinstance(old, dict):
            changes = changed_settings(old, settings, ignore=ignore, only_common=only_common)
        else:  # a file that holds only the bookkeeping (a hash of the settings): compare that
            changes = changed_settings({k: v for k, v in stored.items() if k != under},
                                       {k: v for k, v in record.items() if k != under}, only_common=True)
        refuse_changed(d, changes, holds=holds, settings_file=stored_path.name, overwrite_flag=overwrite_flag)
    if leader and (stored_path != path or stored is None or as_json(stored) != as_json(record)):
        write_json(path, record)
    return lock
