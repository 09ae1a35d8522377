"""progress.Progress: rich's bar, plus plain lines in a log when the output is not a terminal."""

from __future__ import annotations

import io

from rich.console import Console

from astro_reasoner.progress import Progress


def _run(interval: float, *, terminal: bool = False, disable: bool = False) -> list[str]:
    out = io.StringIO()
    console = Console(file=out, force_terminal=terminal, width=200)
    with Progress(console=console, interval=interval, disable=disable) as bar:
        task = bar.add_task("[bold]search", total=4, correct=0)
        for i in range(4):
            bar.update(task, advance=1, correct=i)
    return [line for line in out.getvalue().splitlines() if line.strip()]


def test_log_lines_when_not_a_terminal():
    lines = [line for line in _run(0.0) if line.startswith("search: ")]
    assert len(lines) == 4  # interval 0: a line per update, the last one when the task completes
    assert lines[0].startswith("search: 1/4 (25%) · correct 0 · ")
    assert lines[-1].startswith("search: 4/4 (100%) · correct 3 · ") and "elapsed · ETA" in lines[-1]


def test_one_line_at_completion_within_the_interval():
    lines = [line for line in _run(3600.0) if line.startswith("search: ")]
    assert len(lines) == 1 and lines[0].startswith("search: 4/4 (100%)")


def test_no_log_lines_on_a_terminal_or_when_disabled():
    assert not [line for line in _run(0.0, terminal=True) if line.startswith("search: ")]
    assert _run(0.0, disable=True) == []


def test_eta_falls_back_to_the_average_rate_between_bursts():
    from astro_reasoner.progress import eta

    class Burst:  # 32 of 120 trees done after 600 s, none in rich's last ~30 s window
        time_remaining, total, completed, elapsed = None, 120, 32, 600.0
    assert eta(Burst()) == 600.0 * 88 / 32
    Burst.completed = 0  # nothing done yet: no estimate
    assert eta(Burst()) is None
    Burst.time_remaining = 12.0  # rich has one: it wins
    assert eta(Burst()) == 12.0
