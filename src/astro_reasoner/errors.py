"""Turning known error types into one line for the CLI (tracebacks only for real bugs)."""

from __future__ import annotations


def format_error(exc: BaseException) -> str | None:
    """The message to print for a known error type, or None for a bug (let the traceback show)."""
    from .backends.base import BackendError
    from .config import ConfigError
    from .io import DataError

    if isinstance(exc, (ConfigError, DataError, BackendError, FileNotFoundError)):
        return str(exc)
    return None
