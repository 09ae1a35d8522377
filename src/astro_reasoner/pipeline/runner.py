"""A small stage-graph runner: hash-keyed outputs, skip finished work, resume interrupted work, ``--force``.

Each stage writes into its own directory ``<run_dir>/<stage>/``. Its *key* is a stable hash of the stage's
name, its settings and the keys of the stages it reads from, so changing a setting re-runs that stage and
everything downstream, while an unchanged stage is skipped in milliseconds.

- ``_started.json`` is written when a stage starts (with its key). If a run is interrupted, the next run
  finds it with the same key and calls the stage again *in the same directory*: each stage resumes its own
  work there (search and eval append records and skip finished ids; training resumes from its last
  checkpoint). A started directory whose key differs is moved aside (``<stage>.stale-N``), never mixed.
- ``_done.json`` is written last, with the key, wall seconds and the stage's own accounting (tokens...).

Written by hand: DVC/Snakemake would do this but bring a heavy dependency and file-based rules; our stages
are Python functions over records, and this file is the whole mechanism.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ConfigError
from ..io import lock_dir, read_json, stable_hash, write_json

DONE = "_done.json"


def stage_stats(stage_dir: Path) -> dict[str, Any]:
    """The accounting a finished stage wrote (``_done.json`` ``stats``): the one reader of it."""
    return read_json(stage_dir / DONE).get("stats", {})
STARTED = "_started.json"


@dataclass
class Stage:
    """One node of the graph. ``run(out_dir, inputs)`` does the work; ``inputs`` maps each dependency's
    name to its output directory. It returns a dict of accounting (``tokens``, ``prompt_tokens``, ...)."""

    name: str
    run: Callable[[Path, dict[str, Path]], dict[str, Any] | None]
    deps: tuple[str, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)
    title: str = ""


@dataclass
class StageResult:
    name: str
    key: str
    skipped: bool
    seconds: float
    stats: dict[str, Any]


class StageGraph:
    def __init__(self, run_dir: str | Path, stages: Iterable[Stage]):
        self.run_dir = Path(run_dir)
        self.stages: dict[str, Stage] = {}
        for st in stages:
            if st.name in self.stages:
                raise ValueError(f"duplicate stage {st.name!r}")
            missing = [d for d in st.deps if d not in self.stages]
            if missing:  # declaring stages in dependency order keeps the graph acyclic by construction
                raise ValueError(f"stage {st.name!r} depends on {missing}, which must be declared before it")
            self.stages[st.name] = st
        self._keys: dict[str, str] = {}
        for st in self.stages.values():
            self._keys[st.name] = stable_hash("stage", st.name, st.settings, [self._keys[d] for d in st.deps])

    def key(self, name: str) -> str:
        return self._keys[name]

    def out_dir(self, name: str) -> Path:
        return self.run_dir / name

    def dependents(self, names: Iterable[str]) -> list[str]:
        """``names`` plus every stage downstream of them, in graph order."""
        marked = set(names)
        unknown = marked - set(self.stages)
        if unknown:
            raise ConfigError(f"unknown stage(s) {sorted(unknown)}; stages are: {', '.join(self.stages)}")
        for st in self.stages.values():
            if any(d in marked for d in st.deps):
                marked.add(st.name)
        return [n for n in self.stages if n in marked]

    def lock(self):
        """Claim the run directory: one pipeline writes into it at a time (see ``io.lock_dir``)."""
        return lock_dir(self.run_dir)

    def status(self, name: str) -> str:
        """``done`` (finished with the current key), ``partial`` (started, same key), ``stale`` or ``todo``."""
        d = self.out_dir(name)
        for marker, state in ((DONE, "done"), (STARTED, "partial")):
            p = d / marker
            if p.exists():
                try:
                    ok = read_json(p).get("key") == self._keys[name]
                except Exception:  # noqa: BLE001 - a torn marker means "not finished"
                    ok = False
                return state if ok else "stale"
        return "stale" if d.exists() and any(d.iterdir()) else "todo"

    def _move_aside(self, name: str) -> None:
        d = self.out_dir(name)
        if not d.exists():
            return
        i = 1
        while (d.parent / f"{name}.stale-{i}").exists():
            i += 1
        shutil.move(str(d), str(d.parent / f"{name}.stale-{i}"))

    def invalidate(self, names: Iterable[str]) -> list[str]:
        """Move the outputs of ``names`` and their dependents aside so they run again (``--force``)."""
        redo = self.dependents(names)
        for n in redo:
            self._move_aside(n)
        return redo

    def run(self, *, until: str | None = None,
            on_start: Callable[[Stage, int, int, str], None] | None = None,
            on_end: Callable[[Stage, StageResult], None] | None = None) -> list[StageResult]:
        """Run every stage (up to and including ``until``) that is not done. Returns one result per stage."""
        names = list(self.stages)
        lock = self.lock()  # held until this returns
        if until is not None:
            if until not in self.stages:
                raise ConfigError(f"unknown stage {until!r}; stages are: {', '.join(names)}")
            needed = {until}
            for n in reversed(names):
                if n in needed:
                    needed.update(self.stages[n].deps)
            names = [n for n in names if n in needed]
        results = []
        for i, name in enumerate(names, start=1):
            st = self.stages[name]
            key = self._keys[name]
            out = self.out_dir(name)
            state = self.status(name)
            if on_start:
                on_start(st, i, len(names), state)
            if state == "done":
                done = read_json(out / DONE)
                res = StageResult(name, key, True, 0.0, done.get("stats", {}))
            else:
                if state == "stale":
                    self._move_aside(name)
                out.mkdir(parents=True, exist_ok=True)
                started = out / STARTED
                if not started.exists():
                    write_json(started, {"key": key, "stage": name, "settings": st.settings,
                                         "started": time.time()})
                t0 = time.time()
                stats = st.run(out, {d: self.out_dir(d) for d in st.deps}) or {}
                seconds = time.time() - t0
                stats.setdefault("seconds", seconds)  # this attempt's wall time (a resumed stage's own
                # accounting, e.g. search's per-tree seconds, covers earlier attempts too)
                write_json(out / DONE, {"key": key, "stage": name, "finished": time.time(), "stats": stats})
                res = StageResult(name, key, False, seconds, stats)
            results.append(res)
            if on_end:
                on_end(st, res)
        return results
