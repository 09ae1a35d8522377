"""JSONL files, atomic writes, resume bookkeeping and stable seeds.

Stage boundaries are JSONL files (one record per line). Writers either append-and-fsync one record at a
time (long jobs that must survive a crash) or write-then-rename a whole file (small outputs), so a reader
never sees half a file. A crash can still leave a torn *last* line in an appended file; readers used for
resume (``read_jsonl(..., tolerate_torn_tail=True)``) detect and drop it. Every JSONL file is read through
:func:`jsonl_rows`, so every reader has the same bad-line policy (see there). A last line that is a complete
record and lacks only its newline (an editor, ``head -c``, a copy) is a record, never a torn one: resume
adds the newline and keeps it.

One writer per output directory: every stage claims its directory with :func:`lock_dir` (an advisory
``fcntl.flock`` on ``<dir>/.astro.lock``, released when the process exits or is killed), so a second run
on the same directory stops at once instead of writing every record twice. Stages take it through
``outdir.claim_out_dir``, which also checks the settings of a resumed run.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import DataError, DirectoryBusy  # noqa: F401 (defined in errors.py; re-exported here)


LOCK_FILE = ".astro.lock"
# Values Python's json refuses to build (a 5,000-digit integer: ValueError; 100k nested brackets:
# RecursionError): they are bad data, reported like any other malformed line.
_JSON_ERRORS = (UnicodeDecodeError, ValueError, RecursionError)


def stable_hash(*parts: Any) -> str:
    """A hex digest of ``parts`` that is the same in every process and run (unlike Python's ``hash()``)."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def stable_seed(*parts: Any) -> int:
    """A 31-bit seed derived from (run seed, problem id, ...): reproducible and independent per part."""
    return int(stable_hash(*parts)[:8], 16) & 0x7FFFFFFF


def read_jsonl(path: str | os.PathLike, *, tolerate_torn_tail: bool = False) -> Iterator[dict[str, Any]]:
    """Yield one dict per non-blank line (see :func:`jsonl_rows` for the bad-line policy); a line that is
    valid JSON but not an object raises :class:`DataError` naming ``file:line``."""
    for _, obj in numbered_jsonl(path, tolerate_torn_tail=tolerate_torn_tail):
        yield obj


def numbered_jsonl(path: str | os.PathLike, *,
                   tolerate_torn_tail: bool = False) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) per non-blank line: :func:`read_jsonl` with the line each record came from (blank
    lines are skipped, so counting records would name the wrong line in a message)."""
    for lineno, obj in jsonl_rows(path, tolerate_torn_tail=tolerate_torn_tail):
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj


def jsonl_rows(path: str | os.PathLike, *, tolerate_torn_tail: bool = False) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON value) per non-blank line: the one JSONL reader, and its one bad-line policy.

    - a malformed line raises :class:`DataError` ``"file:line: not valid JSON (...)"`` -- wherever it is, a
      line in the middle of a file was not written by a crash, so skipping it would silently lose data;
    - with ``tolerate_torn_tail`` (readers used for resume), the one exception: a malformed *last* line
      without a trailing newline (a write cut by a crash) is dropped. A last line that parses is a record,
      newline or not.
    The file is streamed (problem sets and trees files can be large); a UTF-8 byte-order mark before the
    first line is allowed. Values are not type-checked here: callers that need objects say so in their error.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = parse_line(line, lineno == 1)
            except _JSON_ERRORS as exc:
                if tolerate_torn_tail and not line.endswith(b"\n"):  # only the last line can lack it
                    return
                raise DataError(f"{path}:{lineno}: not valid JSON ({_short(exc)}); fix or delete this line") from None
            yield lineno, obj


def parse_line(line: bytes, first: bool = False) -> Any:
    """One JSONL line; a UTF-8 byte-order mark before the first line is allowed (some editors write one)."""
    return json.loads(line.decode("utf-8-sig" if first else "utf-8"))


def _short(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc)[:200]


def _is_record(line: bytes, first: bool) -> bool:
    try:
        return isinstance(parse_line(line, first), dict)
    except _JSON_ERRORS:
        return False


def drop_torn_tail(path: str | os.PathLike) -> bool:
    """Repair the end of an appended JSONL file before more records go after it. Returns True if it cut.

    - a last line that is a complete record without its newline gets the newline (the record is kept);
    - a torn last line (a write cut by a crash: an object that does not parse) is cut off;
    - anything else -- a malformed line before the last, or a last line that is not the start of a record
      -- means the file is not one of our JSONL outputs: :class:`DataError` is raised and the file is left
      exactly as it was.
    """
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return False
    with path.open("rb+") as fh:
        data = fh.read()
        if data.endswith(b"\n"):
            return False
        cut = data.rfind(b"\n") + 1
        tail = data[cut:]
        complete = _is_record(tail, cut == 0)
        if complete:
            fh.write(b"\n")
        else:
            head = data[:cut].split(b"\n")
            for lineno, line in enumerate(head, start=1):
                if line.strip() and not _is_record(line, lineno == 1):
                    raise DataError(f"{path}:{lineno}: not a JSON object; this is not a JSONL file written "
                                    "by astro: fix that line, or use another output path") from None
            if not tail.lstrip().startswith(b"{"):
                raise DataError(f"{path}:{len(head)}: the last line is not a JSON object; this is not a JSONL "
                                "file written by astro: fix that line, or use another output path")
            fh.truncate(cut)
        fh.flush()
        os.fsync(fh.fileno())
    return not complete


def append_jsonl(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> None:
    """Append records, one line each, then flush and fsync so a finished record survives a crash. A write
    that fails (a full disk) is taken back: the file ends with its last complete record."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if _lacks_final_newline(path):  # never glue a record onto the end of another (or of a torn one)
        drop_torn_tail(path)
    blob = "".join(jsonl_lines(records)).encode("utf-8")  # encoded first: a bad record writes nothing
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            view = memoryview(blob)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError as exc:  # e.g. a full disk: take back the part written (no torn record is left),
            try:               # and say which file (a write on a descriptor names none)
                os.ftruncate(fd, start)
            except OSError:
                pass
            raise _named(exc, path) from None
    finally:
        os.close(fd)


def _lacks_final_newline(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) != b"\n"
    except OSError:  # missing or empty
        return False


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
    write_files_atomic({path: text})


def write_files_atomic(files: dict[str | os.PathLike, str | Iterable[str]]) -> None:
    """Replace several files together: every temp file is written and fsynced first, then all are renamed,
    so a failure (a full disk) leaves every old file -- or no file -- in place, never a new one beside an old
    one or an empty one. The files get ``0666 & ~umask``, like any plain ``open()``."""
    temps: list[tuple[str, Path]] = []
    try:
        for path, text in files.items():
            path = Path(path)
            temps.append((_write_temp(path, text), path))
        for tmp, path in temps:
            os.replace(tmp, path)
    except OSError as exc:
        for tmp, _ in temps:
            Path(tmp).unlink(missing_ok=True)
        raise _named(exc, path) from None
    except BaseException:
        for tmp, _ in temps:
            Path(tmp).unlink(missing_ok=True)
        raise


def _write_temp(path: Path, text: str | Iterable[str]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, file_mode())  # mkstemp makes 0600; a plain open() (and our appends) honour the umask
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            if isinstance(text, str):
                fh.write(text)
            else:
                for chunk in text:
                    fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def jsonl_lines(records: Iterable[dict[str, Any]]) -> Iterator[str]:
    for rec in records:
        yield json.dumps(rec, ensure_ascii=False) + "\n"


def _named(exc: OSError, path: Path) -> OSError:
    return exc if exc.filename else type(exc)(exc.errno, exc.strerror, str(path))


def _umask() -> int:
    """The process umask, read without changing it (Linux >= 4.7); else via the classic set-and-restore."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode(directory: bool = False) -> int:
    """The mode a plain ``open()`` (``0666 & ~umask``) or ``mkdir`` (``0777 & ~umask``) gives: for files made
    with mkstemp/mkdtemp (always private) that are kept as outputs."""
    return (0o777 if directory else 0o666) & ~_umask()


def honour_umask(root: str | os.PathLike) -> None:
    """Give files and directories under ``root`` (and ``root``) the mode a plain ``open()``/``mkdir`` would have,
    where a library made them more private than that: safetensors (0.8) writes every ``model.safetensors``
    0600 whatever the umask, so a checkpoint saved by transformers/TRL could not be read by the group. Only
    modes that are a subset of the umask's are widened (an executable bit, say, is left alone)."""
    want_file, want_dir = file_mode(), file_mode(directory=True)
    top = Path(root)
    if not top.exists():
        return
    for path in [top, *top.rglob("*")]:
        try:
            st = path.lstat()
        except OSError:
            continue
        if stat.S_ISLNK(st.st_mode) or st.st_uid != os.getuid():
            continue
        want = want_dir if stat.S_ISDIR(st.st_mode) else want_file if stat.S_ISREG(st.st_mode) else None
        mode = stat.S_IMODE(st.st_mode)
        if want is not None and mode != want and mode | want == want:
            try:
                os.chmod(path, want)
            except OSError:
                pass


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({_short(exc)})") from None
    return parse_json(text, path)


def parse_json(text: str, path: str | os.PathLike) -> Any:
    """A whole JSON document read from ``path``; a DataError names the file (and the line, when json knows)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    except _JSON_ERRORS as exc:
        raise DataError(f"{path}: not valid JSON ({_short(exc)})") from None


def done_ids(path: str | os.PathLike, key: str = "problem_id") -> set[str]:
    """Ids already present in an appended JSONL output (for resume). Repairs its end first (see
    :func:`drop_torn_tail`)."""
    path = Path(path)
    if not path.exists():
        return set()
    drop_torn_tail(path)
    return {str(rec[key]) for rec in read_jsonl(path) if key in rec}


class DirLock:
    """An advisory lock on an output directory (see :func:`lock_dir`). Keep it for as long as the run writes:
    closing it, dropping the last reference to it, or the process ending (even by SIGKILL) releases it."""

    def __init__(self, path: Path, fd: int | None):
        self.path, self._fd = path, fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the descriptor drops the flock

    def __enter__(self) -> "DirLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:  # noqa: BLE001 - at interpreter exit; the kernel drops the lock anyway
            pass


def lock_dir(out_dir: str | os.PathLike, name: str = LOCK_FILE) -> DirLock:
    """Claim ``out_dir`` for this process (creating it), or raise :class:`DirectoryBusy` naming the holder.

    ``fcntl.flock`` on ``out_dir/name``, non-blocking: a second writer fails at once. The kernel drops the
    lock when the holder's descriptor closes, so a killed run never leaves a stale lock behind (no pid files
    to clean up). The file holds the holder's pid, for the message. A claim by a process that already holds
    the lock (a stage run inside the pipeline, a test calling two stages) succeeds without a second lock.
    Shards of one search share a directory but not a file: they lock ``name`` per shard.
    """
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    path = d / name
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        holder = _lock_holder(path)
        if holder == os.getpid():
            return DirLock(path, None)
        who = f"pid {holder}" if holder else "another process"
        raise DirectoryBusy(f"{d} is being written by another astro run ({who}, lock {path}); two writers would "
                            f"write every record twice: wait for it to finish, stop it (kill {holder or 'PID'}), "
                            "or use another output directory") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return DirLock(path, fd)


def _lock_holder(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="ascii").strip() or 0) or None
    except (OSError, ValueError):
        return None
