"""The project's error types, and turning them into one line for the CLI (tracebacks only for real bugs).

The types are defined here, in a module that imports nothing of the project, so that any module may raise
them without importing the package that owns the failure (``models`` raising ``BackendError`` used to
import ``backends``, which imports ``models``). The owning modules re-export them under their old names.
"""

from __future__ import annotations

import errno


class ConfigError(ValueError):
    """An invalid setting. The message says which key, why, and what to do instead."""


class DataError(ValueError):
    """Bad input data. The message names the file, the line and the field, and how to fix it."""


class DirectoryBusy(DataError):
    """Another process is writing into the same output directory."""


class BackendError(RuntimeError):
    """A backend failed in a way the caller should report (bad model path, server down, OOM...)."""


class CheckerError(RuntimeError):
    """The checker's worker processes cannot run (e.g. math-verify is not installed)."""


class LaunchError(RuntimeError):
    """A launched training job failed; the message names its log and shows the log's tail."""


# How to make what a stage function needs (its keyword arguments ``policy`` and ``checker``).
_HOW_TO_MAKE = {"policy": "policy=make_backend(kind, model) (astro_reasoner.backends; close it when done)",
                "checker": "checker=Checker() (astro_reasoner.checking; close it when done)"}


def require_arguments(stage: str, **given: object) -> None:
    """TypeError naming each of ``given`` that is None and how to make it: every stage function takes
    ``policy`` and ``checker`` as keyword arguments defaulting to None, and the stages that cannot make their
    own call this first (e.g. ``require_arguments("run_search", policy=policy, checker=checker)``)."""
    missing = [name for name, value in given.items() if value is None]
    if missing:
        raise TypeError(f"{stage} needs {' and '.join(missing)}: pass "
                        + "; ".join(_HOW_TO_MAKE.get(name, f"{name}=...") for name in missing))


# Errors of the machine rather than of our code: the file system is full, read-only or forbids the access.
_FIXES = {
    errno.ENOSPC: "free some disk space (or use an output directory on another disk), then re-run the same "
                  "command: finished records are kept and the run resumes",
    errno.EDQUOT: "the disk quota is used up: free some space, then re-run the same command (it resumes)",
    errno.EACCES: "check the permissions of that path (or use another output directory)",
    errno.EPERM: "check the permissions of that path (or use another output directory)",
    errno.EROFS: "the file system is read-only: use an output directory on a writable disk",
    errno.EISDIR: "that path is a directory; give a file",
    errno.ENOTDIR: "a part of that path is a file, not a directory",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n) or use fewer workers",
}


def format_error(exc: BaseException) -> str | None:
    """The message to print for a known error type, or None for a bug (let the traceback show)."""
    if isinstance(exc, (ConfigError, DataError, BackendError, CheckerError, LaunchError, FileNotFoundError)):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in _FIXES:
        where = exc.filename or "writing output"
        return f"{where}: {exc.strerror or errno.errorcode.get(exc.errno, exc.errno)}; {_FIXES[exc.errno]}"
    if isinstance(exc, RecursionError):  # a structure nested too deeply (e.g. 100k brackets) in some input
        return "an input is nested too deeply to read (recursion limit); check the files and settings given"
    return None
