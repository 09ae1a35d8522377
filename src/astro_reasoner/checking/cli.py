"""``astro check``: show what the answer checker extracts from a completion and its verdict."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer


def check_command(
    gold: str = typer.Option(..., "--gold", "-g", help="The gold answer, e.g. '\\frac{1}{2}' or 72 (countdown: the "
                             "target)."),
    completion: Optional[str] = typer.Option(None, "--completion", "-c", help="The completion text."),
    file: Optional[Path] = typer.Option(None, "--file", "-f", help="Read the completion from a file ('-': stdin)."),
    deadline: float = typer.Option(5.0, "--deadline", help="Hard time limit in seconds for math-verify."),
    task: str = typer.Option("math", "--task", help="math, or countdown (then give --numbers)."),
    numbers: Optional[str] = typer.Option(None, "--numbers", help="countdown: the given numbers, e.g. 8,2,3,4."),
) -> None:
    """Extract the final answer (last \\boxed{}, else "the answer is ...") and check it against the gold.

    Exit code: 0 correct; 1 wrong or unparseable (no answer found); 2 usage error. The verdict prints either way."""
    if (completion is None) == (file is None):
        raise typer.BadParameter("give exactly one of --completion TEXT or --file FILE")
    if file is not None:
        text = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8", errors="surrogateescape")
    else:
        text = completion
    from ..config import ConfigError
    from ..io import DataError
    from ..tasks import TASK_NAMES, gold_of
    from ..types import Verdict
    from .checker import Checker

    if task not in TASK_NAMES:
        raise typer.BadParameter(f"--task {task!r}: use one of {', '.join(TASK_NAMES)}")
    if (numbers is not None) != (task == "countdown"):
        raise typer.BadParameter("--numbers goes with --task countdown (and countdown needs it)")
    if not gold.strip():
        raise ConfigError("--gold is empty: give the gold answer, e.g. --gold 72 or --gold '\\frac{1}{2}'")
    if not deadline > 0:
        raise ConfigError(f"--deadline {deadline}: must be > 0 seconds (e.g. 5)")
    record = {"answer": gold, **({"task": task, "numbers": numbers, "target": gold} if task != "math" else {})}
    try:
        target = gold_of(record)
    except DataError as exc:
        raise typer.BadParameter(str(exc)) from None
    try:
        with Checker(workers=1, deadline=deadline, warmup=False) as checker:
            result = checker.check(target, text)
    except ValueError as exc:  # e.g. a gold that is empty once cleaned
        raise ConfigError(f"--gold {gold[:40]!r}: {exc}") from None
    typer.echo(f"extracted: {result.answer if result.answer is not None else '(none)'}")
    typer.echo(f"verdict:   {result.verdict.value}")
    typer.echo(f"decided by: {result.reason}")
    raise typer.Exit(0 if result.verdict is Verdict.CORRECT else 1)


def register(app: typer.Typer) -> None:
    app.command("check")(check_command)
