"""`astro viz cot`, `astro viz tree` and `astro report`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

viz_app = typer.Typer(help="Draw a model output as a graph, or open a search tree in a browser.",
                      no_args_is_help=True)


@viz_app.command("cot")
def cot_command(
    samples: Path = typer.Argument(..., help="samples.jsonl of `astro eval` (or any JSONL with problem_id + text)."),
    problem_id: str = typer.Option(..., "--id", help="Problem id of the output to draw."),
    out: Path = typer.Option(..., "--out", "-o", help="out.svg, or out.html (graph plus the full text)."),
    sample: Optional[int] = typer.Option(None, "--sample", help="Sample index (default: the first one that "
                                         "backtracks, else the first)."),
    check: bool = typer.Option(True, "--check/--no-check", help="Colour abandoned answers by the checker's "
                               "verdict against the record's gold answer."),
) -> None:
    """Draw one output as a directed graph: steps, transitions and (dashed red) backtracks."""
    from .cot_graph import write_cot

    if check:
        from ..checking import Checker

        with Checker(workers=1) as checker:
            write_cot(samples, problem_id, out, sample=sample, checker=checker)
    else:
        write_cot(samples, problem_id, out, sample=sample)
    typer.echo(f"wrote {out}")


@viz_app.command("tree")
def tree_command(
    trees: Path = typer.Argument(..., help="trees.jsonl written by `astro search`."),
    problem_id: Optional[str] = typer.Option(None, "--id", help="Problem id of the tree (default: the first)."),
    out: Path = typer.Option(..., "--out", "-o", help="HTML file to write (works offline)."),
    depth: Optional[int] = typer.Option(None, "--depth", help="Levels open at first (default 3; 2 for big trees)."),
) -> None:
    """Write an interactive, self-contained HTML viewer of one search tree."""
    from .tree_view import write_tree_html

    write_tree_html(trees, problem_id, out, open_depth=depth)
    typer.echo(f"wrote {out}")


def report_command(
    run_dir: Path = typer.Argument(..., help="An eval dir, a pipeline run dir, or any dir holding them."),
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="HTML file to write."),
) -> None:
    """One self-contained page: metric tables, plots, correlations, training curves, a CoT graph, a tree."""
    from .report import build_report

    build_report(run_dir, out)
    typer.echo(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.add_typer(viz_app, name="viz")
    app.command("report")(report_command)
