"""``astro data synth|check|show|convert``: make, validate, inspect and normalize problem sets."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Optional

import typer

data_app = typer.Typer(help="Problem sets: synthetic problems, checking and converting data files.",
                       no_args_is_help=True)

SPEC_HELP = ("A file (.jsonl/.json/.parquet/.csv), a benchmark (math500, amc23, aime24, gsm8k, gsm8k:train) "
             "or a hub id (owner/name[@config][:split]).")
DATA_DIR_HELP = "Directory with the benchmark files (math500.jsonl, ...); default $ASTRO_DATA_DIR, else the hub."


@data_app.command("synth")
def synth_command(
    output: Path = typer.Option(..., "--output", "-o", help="JSONL file to write."),
    steps: int = typer.Option(2, "--steps", help="Operations per problem (1-6)."),
    n: int = typer.Option(200, "--n", "-n", help="Number of problems."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same problems."),
    ops: str = typer.Option("+-*/", "--ops", help="Operations to draw from, e.g. '+-' or '+-*/'."),
    min_value: int = typer.Option(2, "--min-value", help="Smallest start amount / amount added or taken."),
    max_value: int = typer.Option(50, "--max-value", help="Largest start amount / amount added or taken."),
    max_factor: int = typer.Option(5, "--max-factor", help="Largest factor (x) and divisor (/)."),
    solutions: bool = typer.Option(True, "--solutions/--no-solutions", help="Store a reference solution in meta."),
) -> None:
    """Write synthetic arithmetic word problems with exact integer answers (the embedded default data set)."""
    from .loaders import write_problems
    from .synth import synthesize

    try:
        problems = synthesize(steps, n, seed, ops=ops, min_value=min_value, max_value=max_value,
                              max_factor=max_factor, solutions=solutions)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    write_problems(output, problems)
    typer.echo(f"wrote {len(problems)} problems ({steps} steps, ops {ops}, seed {seed}) to {output}")


def _answer_kind(answer: str) -> str:
    from ..checking.extract import as_number, normalize

    value = as_number(normalize(answer))
    if value is None:
        return "expression/text"
    return "integer" if value.denominator == 1 else "number"


@data_app.command("check")
def check_command(
    spec: str = typer.Argument(..., help=SPEC_HELP),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
) -> None:
    """Validate a problem set (JSON, fields, types, duplicate ids) and print what it holds."""
    from .loaders import load_problems
    from .validate import LoadReport

    report = LoadReport()
    problems = load_problems(spec, data_dir, report=report)
    typer.echo(f"ok: {len(problems)} problems in {spec}")
    typer.echo("fields: " + ", ".join(f"{ours} <- {theirs}" for ours, theirs in report.mapped.items()))
    if report.synthesized_ids:
        typer.echo(f"ids: {report.synthesized_ids} made up from the position (no id field)")
    for label, counts in (("sources", Counter(p.source for p in problems)),
                          ("answers", Counter(_answer_kind(p.answer) for p in problems))):
        typer.echo(f"{label}: " + ", ".join(f"{k or '(none)'} {v}" for k, v in counts.most_common(8)))
    lengths = sorted(len(p.problem) for p in problems)
    typer.echo(f"problem length (chars): min {lengths[0]}, median {lengths[len(lengths) // 2]}, "
               f"max {lengths[-1]}")


@data_app.command("show")
def show_command(
    spec: str = typer.Argument(..., help=SPEC_HELP),
    n: int = typer.Option(3, "--n", "-n", help="How many problems to print."),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
) -> None:
    """Print the first problems of a set with their answers."""
    from .loaders import load_problems

    for p in load_problems(spec, data_dir, limit=n):
        typer.echo(f"[{p.id}] ({p.source})\n{p.problem}\nanswer: {p.answer}\n")


@data_app.command("convert")
def convert_command(
    spec: str = typer.Argument(..., help=SPEC_HELP),
    output: Path = typer.Option(..., "--output", "-o", help="JSONL file to write."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Keep the first N problems."),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
) -> None:
    """Normalize any supported source into our JSONL (id, problem, answer, source, meta)."""
    from .loaders import load_problems, write_problems

    problems = load_problems(spec, data_dir, limit=limit)
    write_problems(output, problems)
    typer.echo(f"wrote {len(problems)} problems to {output}")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
