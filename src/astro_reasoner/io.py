"""JSONL files, atomic writes, resume bookkeeping and stable seeds.

Stage boundaries are JSONL files (one record per line). Writers either append-and-fsync one record at a
time (long jobs that must survive a crash) or write-then-rename a whole file (small outputs), so a reader
never sees half a file. A crash can still leave a torn *last* line in an appended file; readers used for
resume (``read_jsonl(..., tolerate_torn_tail=True)``) detect and drop it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


class DataError(ValueError):
    """Bad input data. The message names the file, the line and the field, and how to fix it."""


def stable_hash(*parts: Any) -> str:
    """A hex digest of ``parts`` that is the same in every process and run (unlike Python's ``hash()``)."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def stable_seed(*parts: Any) -> int:
    """A 31-bit seed derived from (run seed, problem id, ...): reproducible and independent per part."""
    return int(stable_hash(*parts)[:8], 16) & 0x7FFFFFFF


def read_jsonl(path: str | os.PathLike, *, tolerate_torn_tail: bool = False) -> Iterator[dict[str, Any]]:
    """Yield one dict per non-blank line.

    Raises :class:`DataError` naming ``file:line`` for malformed JSON or a non-object line. With
    ``tolerate_torn_tail`` a malformed *last* line without a trailing newline (a write cut by a crash) is
    skipped silently instead.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    with path.open("rb") as fh:
        raw = fh.read()
    lines = raw.split(b"\n")
    ends_with_newline = raw.endswith(b"\n")
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        is_last = lineno == len(lines)
        try:
            obj = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            if tolerate_torn_tail and is_last and not ends_with_newline:
                return
            raise DataError(f"{path}:{lineno}: not valid JSON ({exc}); fix or delete this line") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        yield obj


def drop_torn_tail(path: str | os.PathLike) -> bool:
    """Truncate a torn last line (no trailing newline) left by a crash. Returns True if it cut anything."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return False
    with path.open("rb+") as fh:
        data = fh.read()
        if data.endswith(b"\n"):
            return False
        cut = data.rfind(b"\n") + 1
        fh.truncate(cut)
        fh.flush()
        os.fsync(fh.fileno())
    return True


def append_jsonl(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> None:
    """Append records, one line each, then flush and fsync so a finished record survives a crash."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def write_jsonl(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> int:
    """Write a whole JSONL file atomically (temp file + rename). Returns the number of records."""
    n = 0

    def lines() -> Iterator[str]:
        nonlocal n
        for rec in records:
            n += 1
            yield json.dumps(rec, ensure_ascii=False) + "\n"

    write_text_atomic(path, lines())
    return n


def write_text_atomic(path: str | os.PathLike, text: str | Iterable[str]) -> None:
    """Write text to ``path`` via a temp file in the same directory and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            if isinstance(text, str):
                fh.write(text)
            else:
                for chunk in text:
                    fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None


def done_ids(path: str | os.PathLike, key: str = "problem_id") -> set[str]:
    """Ids already present in an appended JSONL output (for resume). Drops a torn tail first."""
    path = Path(path)
    if not path.exists():
        return set()
    drop_torn_tail(path)
    return {str(rec[key]) for rec in read_jsonl(path) if key in rec}
