"""`astro eval` and `astro analyze correlation|training`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..backends.cli import backend_option_flag, parse_backend_options

analyze_app = typer.Typer(help="Across-run analytics: behaviour vs accuracy, RL training curves.",
                          no_args_is_help=True)


def _print_markdown(text: str) -> None:
    # Plain Markdown, not rich-rendered: an 11-column table squeezed into a terminal is unreadable, and
    # the plain table pastes straight into notes and issues.
    typer.echo(text.rstrip())


def eval_command(
    model: str = typer.Option(..., "--model", "-m", help="HF dir/hub id, alias (smollm2-135m), or served name."),
    out: Path = typer.Option(..., "--out", "-o", help="Eval directory (re-run the same command to resume)."),
    backend: str = typer.Option("hf", "--backend", help="auto (llamacpp if installed, else hf), hf, llamacpp (llama-server started here), ct2 or openai (your server)."),
    datasets: Optional[str] = typer.Option(None, "--datasets", "-d",
                                           help="Comma list of benchmark names and/or problem files "
                                                "(default math500,amc23,aime24)."),
    n: Optional[int] = typer.Option(None, "--n", help="Samples per problem (default 16)."),
    k: Optional[int] = typer.Option(None, "--k", help="maj@k / pass@k (default 8)."),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="Directory of the benchmark files."),
    limit: Optional[int] = typer.Option(None, "--limit", help="First N problems of each dataset."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML file (its `eval:` section, or "
                                          "the whole file if it has none)."),
    backend_option: list[str] = backend_option_flag(),
    overrides: list[str] = typer.Argument(None, help="EvalConfig key=value overrides, e.g. temperature=0.8 "
                                          "max_tokens=512 few_shot=1."),
) -> None:
    """Sample n answers per problem, check them and report pass@1 (±95% CI), maj@k, pass@k and behaviour."""
    from ..config import load_config, parse_overrides, yaml_section
    from .config import EvalConfig
    from .run import evaluate_model

    values = {key: val for key, val in (("datasets", datasets), ("n", n), ("k", k), ("data_dir", data_dir),
                                        ("limit", limit)) if val is not None}
    values.update(parse_overrides(overrides))
    cfg = load_config(EvalConfig, config, values, section=yaml_section(config, "eval"))
    summary = evaluate_model(model, cfg, out, backend=backend, backend_options=parse_backend_options(backend_option))
    from .run import SUMMARY_MD

    _print_markdown((out / SUMMARY_MD).read_text(encoding="utf-8"))
    run = summary["run"]
    typer.echo(f"{run['new_samples']} new samples, {run['generated_tokens']} tokens, "
               f"{run['wall_seconds']:.1f} s; wrote {out}/summary.json, summary.md, samples.jsonl")


@analyze_app.command("correlation")
def correlation_command(
    run_dirs: list[Path] = typer.Argument(..., help="Eval directories (or directories holding several)."),
    out: Path = typer.Option(Path("analysis"), "--out", "-o", help="Where to write the JSON, table and PNGs."),
) -> None:
    """Pearson r between mean backtracks per output (and output length) and pass@1 across runs."""
    from .analyze import correlation_report

    correlation_report(run_dirs, out)
    _print_markdown((out / "correlation.md").read_text(encoding="utf-8"))
    typer.echo(f"wrote {out}/correlation.json, correlation.md, correlation_backtracks.png, "
               "correlation_length.png")


@analyze_app.command("attempts")
def attempts_command(
    run_dirs: list[Path] = typer.Argument(..., help="Eval directories (or directories holding several)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Also write the reports to this JSON file."),
) -> None:
    """Each output cut at its backtracks into attempts: how often a correct / not-correct first attempt was
    followed by a backtrack, and first -> last answer transitions (does the check discriminate?)."""
    from ..checking import Checker
    from ..io import write_json
    from .analyze import find_eval_dirs
    from .attempts import attempts_markdown, eval_dir_attempts

    runs = find_eval_dirs(run_dirs)
    with Checker() as checker:
        reports = {str(run): eval_dir_attempts(run, checker) for run in runs}
    lines = attempts_markdown(reports)
    typer.echo("\n".join(lines) if lines else f"no backtracks in the outputs of {len(runs)} eval run(s)")
    if out is not None:
        write_json(out, reports)
        typer.echo(f"wrote {out}")


@analyze_app.command("training")
def training_command(
    metrics: Path = typer.Argument(..., help="The RL stage's metrics JSONL."),
    out: Path = typer.Option(Path("training.png"), "--out", "-o", help="PNG to write."),
) -> None:
    """Curves of reward, output length, reflections and backtracks over RL steps."""
    from .analyze import training_report

    res = training_report(metrics, out)
    for key, s in res["series"].items():
        typer.echo(f"{s['label']}: step {s['first'][0]} {s['first'][1]:.3g} -> step {s['last'][0]} "
                   f"{s['last'][1]:.3g} ({s['points']} point{'' if s['points'] == 1 else 's'})")
    typer.echo(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
    app.add_typer(analyze_app, name="analyze")
