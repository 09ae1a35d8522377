"""Progress bars that also leave a trace in a log file.

rich draws its bars only on a terminal: with output redirected (``nohup astro pipeline ... > run.log``, a
cluster job) it prints nothing until the bar stops, so an hour-long search looks hung. ``Progress`` here is
rich's, plus, when the console is not a terminal, one plain line per task at most every ``interval`` seconds
(and when a task completes): done/total, the task's fields, elapsed time and rich's ETA. rich has no such
mode, so it is written here.
"""

from __future__ import annotations

import os
import time
from typing import Any

from rich import progress as rp

DEFAULT_INTERVAL = 60.0  # seconds between log lines; ASTRO_PROGRESS_INTERVAL overrides


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Progress(rp.Progress):
    """``rich.progress.Progress`` that logs a line per task every ``interval`` s when not on a terminal."""

    def __init__(self, *columns: Any, interval: float | None = None, **kwargs: Any):
        super().__init__(*columns, **kwargs)
        if interval is None:
            interval = float(os.environ.get("ASTRO_PROGRESS_INTERVAL", DEFAULT_INTERVAL))
        self.interval = interval
        self._logged: dict[rp.TaskID, float] = {}  # when each task's last line was printed
        self._finished: set[rp.TaskID] = set()  # tasks whose final line was printed
        self._log_lines = not self.console.is_terminal and not self.disable

    def update(self, task_id: rp.TaskID, **kwargs: Any) -> None:
        super().update(task_id, **kwargs)
        self._maybe_log(task_id)

    def advance(self, task_id: rp.TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._maybe_log(task_id)

    def _maybe_log(self, task_id: rp.TaskID) -> None:
        if not self._log_lines:
            return
        task = self._tasks[task_id]
        now = time.monotonic()
        last = self._logged.setdefault(task_id, now)  # the first line comes one interval after the start
        if task_id in self._finished or (not task.finished and now - last < self.interval):
            return
        self._logged[task_id] = now
        if task.finished:
            self._finished.add(task_id)
        done = f"{task.completed:g}" + (f"/{task.total:g}" if task.total else "")
        pct = f" ({100 * task.completed / task.total:.0f}%)" if task.total else ""
        fields = "".join(f" · {k} {v}" for k, v in task.fields.items())
        name = rp.Text.from_markup(task.description).plain or "progress"
        self.console.print(f"{name}: {done}{pct}{fields} · {_clock(task.elapsed)} elapsed · ETA "
                           f"{_clock(eta(task))}", markup=False, highlight=False)


def eta(task: rp.Task) -> float | None:
    """rich's ETA (from the last ~30 s of progress), or, when that window saw none, the average rate since the
    start: searches finish trees in bursts (a batch of trees shares the engine's slots), and a log line between
    bursts would otherwise say "ETA -" for most of an hour."""
    if task.time_remaining is not None or not (task.total and task.completed and task.elapsed):
        return task.time_remaining
    return task.elapsed * (task.total - task.completed) / task.completed
