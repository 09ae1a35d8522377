"""Problem specs of a pipeline config (``data.train``, ``data.test``, ``warm_start.data``, its ``select.data``).

A spec is one of

- a string for :func:`load_problems` -- a file, a named benchmark (``gsm8k:train``) or a hub id;
- ``{path: <such a string>, offset: N, limit: M}`` -- problems ``N .. N+M-1`` of it, in file order, so one
  file can give disjoint slices (warm-start solutions, search problems, validation problems). ``offset``
  defaults to 0, ``limit`` to the rest of the file;
- ``{synth: {...}}`` -- the synthetic generator (``task: countdown`` for Countdown).

:func:`check_spec` validates a spec without reading anything (it runs whenever a config is loaded);
:func:`load_spec` loads it; :func:`slices_overlap` says whether two slices of the same source can share a
problem, so a config that would train on its validation problems fails before any work.
"""

from __future__ import annotations

from typing import Any

from ..config import ConfigError
from ..types import Problem

SLICE_KEYS = ("path", "offset", "limit")
SPEC_HELP = ("a problem source (file / benchmark name such as gsm8k:train / hub id), {path: SOURCE, offset: N, "
             "limit: M} (a slice of it), or {synth: {...}}")


def check_spec(spec: Any, where: str) -> None:
    """Raise one ConfigError naming ``where`` and the fix when ``spec`` is not a valid problem spec."""
    if isinstance(spec, str):
        if not spec.strip():
            raise ConfigError(f"{where}: empty; give {SPEC_HELP}")
        return
    if isinstance(spec, dict) and "synth" in spec:
        from .validate import check_synth_options

        if set(spec) != {"synth"}:
            raise ConfigError(f"{where}: {{synth: ...}} takes no other keys, got {sorted(set(spec) - {'synth'})}")
        check_synth_options(spec["synth"], f"{where}.synth")
        return
    if not isinstance(spec, dict) or "path" not in spec:
        raise ConfigError(f"{where}: {spec!r} is not {SPEC_HELP}")
    unknown = sorted(set(spec) - set(SLICE_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown} in a slice; use path, offset, limit")
    if not isinstance(spec["path"], str) or not spec["path"].strip():
        raise ConfigError(f"{where}.path: {spec['path']!r}; give a file, a benchmark name (gsm8k:train) or a hub id")
    for key, low in (("offset", 0), ("limit", 1)):
        value = spec.get(key)
        if value is None and key == "limit":
            continue
        value = 0 if value is None else value
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{where}.{key}: {value!r}; must be an integer >= {low}"
                              + (" (or leave it out for the rest of the file)" if key == "limit" else ""))


def load_spec(spec: Any, data_dir: str | None = None, limit: int | None = None, where: str = "data") -> list[Problem]:
    """The problems of ``spec`` (see the module docstring), at most ``limit`` of them (after slicing)."""
    from ..tasks import synthesize  # the task's generator (math: tasks/math_synth.py)
    from . import load_problems

    check_spec(spec, where)
    if isinstance(spec, dict) and "synth" in spec:
        problems = synthesize(**(spec["synth"] or {}))
    elif isinstance(spec, str):
        return load_problems(spec, data_dir=data_dir, limit=limit)
    else:
        offset, count = int(spec.get("offset") or 0), spec.get("limit")
        problems = load_problems(spec["path"], data_dir=data_dir)
        if offset >= len(problems):
            raise ConfigError(f"{where}.offset: {offset} is past the end of {spec['path']} ({len(problems)} "
                              "problems); lower the offset")
        problems = problems[offset:offset + count] if count else problems[offset:]
    return problems[:limit] if limit else problems


def _slice(spec: Any, limit: int | None = None) -> tuple[str, int, float] | None:
    """(source, first, end) of the problems a string or path spec selects; None for synth specs."""
    if isinstance(spec, str):
        source, start, count = spec, 0, None
    elif isinstance(spec, dict) and isinstance(spec.get("path"), str):
        source, start, count = spec["path"], int(spec.get("offset") or 0), spec.get("limit")
    else:
        return None
    ends = [start + n for n in (count, limit) if n]
    return source.strip(), start, min(ends) if ends else float("inf")


def slices_overlap(a: Any, b: Any, limit_a: int | None = None, limit_b: int | None = None) -> bool:
    """True when two specs name the same source (spelled the same) and their slices share a position.

    A static check for configs only: the same file spelled two ways is not caught here; the stages also drop
    overlapping problems by text at run time."""
    sa, sb = _slice(a, limit_a), _slice(b, limit_b)
    return bool(sa and sb and sa[0] == sb[0] and sa[1] < sb[2] and sb[1] < sa[2])
