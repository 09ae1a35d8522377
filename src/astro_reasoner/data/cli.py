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
    output: Path = typer.Option(..., "--output", "-o", "--out", help="JSONL file to write."),
    task: str = typer.Option("math", "--task", help="math (word problems) or countdown (numbers to a target)."),
    steps: int = typer.Option(2, "--steps", help="math: operations per problem (1-6)."),
    n: int = typer.Option(200, "--n", "-n", help="Number of problems."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same problems."),
    ops: str = typer.Option("+-*/", "--ops", help="math: operations to draw from, e.g. '+-' or '+-*/'."),
    min_value: int = typer.Option(2, "--min-value", help="math: smallest start amount / amount added or taken."),
    max_value: int = typer.Option(50, "--max-value", help="math: largest start amount / amount added or taken."),
    max_factor: int = typer.Option(5, "--max-factor", help="math: largest factor (x) and divisor (/)."),
    split: str = typer.Option("train", "--split", help="countdown: train, validation, test (disjoint by "
                              "numbers and target) or all."),
    counts: str = typer.Option("3,4", "--counts", help="countdown: how many numbers per puzzle: 3, 4 or 3,4."),
    min_number: int = typer.Option(1, "--min-number", help="countdown: smallest given number."),
    max_number: int = typer.Option(12, "--max-number", help="countdown: largest given number."),
    min_target: int = typer.Option(5, "--min-target", help="countdown: smallest target."),
    max_target: int = typer.Option(40, "--max-target", help="countdown: largest target."),
    solutions: bool = typer.Option(True, "--solutions/--no-solutions", help="Store a reference solution in meta."),
    sft: Optional[Path] = typer.Option(None, "--sft", help="countdown: also write warm-start SFT rows (solver-written "
                                       "direct solutions, `astro sft --data FILE`)."),
    sft_per_problem: int = typer.Option(1, "--sft-per-problem", help="countdown: direct solutions per puzzle in --sft."),
) -> None:
    """Write synthetic problems with exact answers: arithmetic word problems (the embedded default data set) or
    Countdown puzzles (every one solvable; records carry task, numbers and target)."""
    from ..io import write_jsonl
    from .loaders import write_problems
    from ..tasks.math_synth import synthesize

    try:
        if task == "countdown":
            from ..tasks.countdown_solver import synthesize as countdown_synth, to_record

            try:
                count_list = [int(c) for c in counts.replace(" ", "").split(",") if c]
            except ValueError:
                raise ValueError(f"--counts {counts!r}: give 3, 4 or 3,4") from None
            problems = countdown_synth(n, seed, split=split, counts=count_list, min_number=min_number,
                                       max_number=max_number, min_target=min_target, max_target=max_target,
                                       solutions=solutions)
            write_jsonl(output, (to_record(p) for p in problems))
            typer.echo(f"wrote {len(problems)} countdown puzzles ({split} split, {counts} numbers in "
                       f"{min_number}..{max_number}, targets {min_target}..{max_target}, seed {seed}) to {output}")
            if sft is not None:
                from ..clone.export import direct_row
                from ..tasks.countdown_solver import direct_solutions

                rows = [direct_row(p, text, j) for p, j, text in direct_solutions(problems, sft_per_problem, seed)]
                write_jsonl(sft, rows)
                typer.echo(f"wrote {len(rows)} warm-start SFT rows (direct solutions) to {sft}")
            return
        if task != "math":
            raise ValueError(f"--task {task!r}: use math or countdown")
        if sft is not None:
            raise ValueError("--sft writes Countdown warm-start rows: use it with --task countdown")
        problems = synthesize(steps, n, seed, ops=ops, min_value=min_value, max_value=max_value,
                              max_factor=max_factor, solutions=solutions)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    write_problems(output, problems)
    typer.echo(f"wrote {len(problems)} problems ({steps} steps, ops {ops}, seed {seed}) to {output}")


def _answer_kind(answer: str) -> str:
    from ..answers import as_number, normalize

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
    tasks = Counter(p.task for p in problems)
    for label, counts in (("sources", Counter(p.source for p in problems)),
                          ("answers", Counter(_answer_kind(p.answer) for p in problems)),
                          *((("tasks", tasks),) if set(tasks) != {"math"} else ())):
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
    output: Path = typer.Option(..., "--output", "-o", "--out", help="JSONL file to write."),
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
