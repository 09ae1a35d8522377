"""``astro search`` (stage 1) and ``astro trees stats``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

import typer

from ..backends.cli import backend_option_flag, parse_backend_options

trees_app = typer.Typer(help="Inspect search trees (trees.jsonl).", no_args_is_help=True)


def _search_config(config: Optional[Path], overrides: list[str]):
    from ..config import load_config, read_yaml_mapping
    from .config import SearchConfig

    section = None
    if config and config.exists():
        data = read_yaml_mapping(config)
        section = "search" if isinstance(data, dict) and isinstance(data.get("search"), dict) else None
    return load_config(SearchConfig, config, overrides, section=section)


class RichReporter:
    """The progress bar: trees done, trees with a correct terminal, generated tokens/s, ETA."""

    def __init__(self, console=None):
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        from ..progress import Progress

        self.progress = Progress(TextColumn("[bold]search"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("trees · [green]{task.fields[correct]} with a correct terminal"),
                                 TextColumn("· {task.fields[tps]} tok/s"), TimeElapsedColumn(),
                                 TextColumn("ETA"), TimeRemainingColumn(), console=console)
        self.task = None
        self.t0 = time.perf_counter()

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def start(self, total: int, done: int, correct: int) -> None:
        self.t0 = time.perf_counter()
        self.task = self.progress.add_task("search", total=total, completed=done, correct=correct, tps="-")

    def tree(self, tree) -> None:
        correct = self.progress.tasks[0].fields["correct"] + (tree.stats.get("terminals_correct", 0) > 0)
        self.progress.update(self.task, advance=1, correct=correct)

    def wave(self, counters) -> None:
        dt = time.perf_counter() - self.t0
        self.progress.update(self.task, tps=f"{counters.generated_tokens / dt:.0f}" if dt > 0 else "-")


def search(
    problems: str = typer.Option(..., "--problems", help="Problem file (jsonl/json/parquet/csv), benchmark name "
                                 "(math500, amc23, aime24, gsm8k) or hub id."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory (trees.jsonl, summary.json); re-run to resume."),
    model: str = typer.Option("smollm2-135m", "--model", help="Model alias, checkpoint dir, .gguf or hub id "
                              "(hf); the served model name (openai)."),
    backend: str = typer.Option("hf", "--backend", help="auto (llamacpp if installed, else hf), hf "
                                "(transformers in-process), llamacpp (llama-server started here), ct2 (CTranslate2 "
                                "int8) or openai (any OpenAI-compatible server)."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML with SearchConfig keys (or a `search:` "
                                          "section)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Directory of the named benchmarks."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N problems."),
    shard: Optional[str] = typer.Option(None, "--shard", help="i/n: search only shard i of n (0-based); writes "
                                        "trees.shard-i-of-n.jsonl."),
    workers: int = typer.Option(0, "--workers", help="Run N Ray workers (each loads its own backend)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Existing Ray cluster (e.g. auto); "
                                              "default: start a local one."),
    cpus_per_worker: int = typer.Option(1, "--cpus-per-worker", help="CPUs (and torch threads) per Ray worker."),
    backend_option: list[str] = backend_option_flag("key=value passed to the backend (e.g. "
                                                    "base_url=http://localhost:8000/v1, device=cpu, threads=2)."),
    checker_workers: Optional[int] = typer.Option(None, "--checker-workers", help="math-verify processes."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Measure one iteration on 2 problems and print the "
                                 "estimated tokens and time of the whole run; write nothing."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    overrides: Optional[list[str]] = typer.Argument(None, help="SearchConfig overrides key=value, e.g. k=4 "
                                                    "rollouts=4 iterations=8."),
) -> None:
    """Stage 1: MCTS over step-by-step solutions (ASTRO §2.2); one tree per problem in OUT/trees.jsonl."""
    from rich.console import Console

    from ..config import ConfigError
    from ..data import load_problems
    from .storage import parse_shard

    if workers and not dry_run:
        from ..extras import require

        require("ray", what="--workers")  # before the problems load and the trees are claimed
    cfg = _search_config(config, list(overrides or []))
    from ..backends import BACKEND_KINDS, resolve_kind

    if backend not in BACKEND_KINDS:
        raise ConfigError(f"--backend {backend!r}: use one of {', '.join(BACKEND_KINDS)}")
    backend = resolve_kind(backend)
    if shard and workers:
        raise ConfigError("--shard and --workers together: --workers already splits the run; drop one")
    shard_t = parse_shard(shard)
    options = parse_backend_options(backend_option)
    if backend in ("hf", "ct2"):
        options.setdefault("batch_size", cfg.batch_size)  # the backend's forward chunk = the driver's call size
    probs = load_problems(problems, data_dir=str(data_dir) if data_dir else None, limit=limit)
    console = Console(stderr=True)
    meta = {"model": model, "problems": problems}
    if workers and not dry_run:
        _run_distributed(probs, backend, model, options, cfg, out, workers, ray_address, cpus_per_worker,
                         checker_workers or 1, quiet, console, meta)
        return
    from ..backends import make_backend
    from ..checking import Checker

    policy = make_backend(backend, model, **options)
    try:
        with Checker(workers=checker_workers) as checker:
            if dry_run:
                from .accounting import estimate_run
                from .storage import select_shard

                est = estimate_run(select_shard(probs, shard_t), policy, checker, cfg)
                _print_estimate(console, est)
                return
            from .run import run_search

            if quiet:
                summary = run_search(probs, out, cfg, policy=policy, checker=checker, shard=shard_t, meta=meta)
            else:
                with RichReporter(console) as rep:
                    summary = run_search(probs, out, cfg, policy=policy, checker=checker, shard=shard_t, reporter=rep,
                                         meta=meta)
    finally:
        policy.close()
    _print_done(console, summary, out)


def _run_distributed(probs, backend, model, options, cfg, out, workers, address, cpus, checker_workers, quiet,
                     console, meta) -> None:
    from .distributed import BackendSpec, run_search_distributed

    if backend == "hf":
        from ..models import resolve_model

        model = resolve_model(model)  # convert once here, not in every worker
        options.setdefault("threads", cpus)
    spec = BackendSpec(backend, model, options)
    kwargs = dict(workers=workers, address=address, cpus_per_worker=cpus, checker_workers=checker_workers,
                  meta=meta)
    if quiet:
        summary = run_search_distributed(probs, spec, cfg, out, **kwargs)
    else:
        with RichReporter(console) as rep:
            summary = run_search_distributed(probs, spec, cfg, out, reporter=rep, **kwargs)
    _print_done(console, summary, out)


def _print_estimate(console, est: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="search --dry-run (upper bound: no early stop)", show_header=False)
    for k, v in est.items():
        table.add_row(k.replace("_", " "), str(v))
    console.print(table)


def _print_done(console, summary: dict[str, Any], out: Path) -> None:
    run = summary.get("this_run", {})
    console.print(f"[bold]{summary['trees']}[/] trees in {out}; {summary['share_with_correct']:.0%} with a correct "
                  f"terminal, {summary['share_with_wrong']:.0%} with a wrong one; this run: "
                  f"{run.get('generated_tokens', 0)} generated tokens in {run.get('wall_seconds', 0):.0f} s "
                  f"({run.get('generated_tokens_per_second', 0)} tok/s). Summary: {out}/summary.json")


@trees_app.command("stats")
def trees_stats(
    path: Path = typer.Argument(..., help="A search output directory or a trees.jsonl file."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Trees, share with a correct terminal, terminals per tree (correct/wrong), depth, tokens per tree."""
    from rich.console import Console
    from rich.table import Table

    from .accounting import summarize_trees
    from ..trees import load_trees

    stats = summarize_trees(load_trees(path))
    if as_json:
        print(json.dumps(stats, indent=2))
        return
    rows = [("trees", stats["trees"]),
            ("with >= 1 correct terminal", f"{stats['trees_with_correct']} ({stats['share_with_correct']:.0%})"),
            ("with >= 1 wrong terminal", f"{stats['trees_with_wrong']} ({stats['share_with_wrong']:.0%})"),
            ("terminals per tree: correct / wrong",
             f"{stats['terminals_correct_per_tree']} / {stats['terminals_wrong_per_tree']}"),
            ("depth per tree (all / expanded)", f"{stats['depth_per_tree']} / {stats['expanded_depth_per_tree']}"),
            ("iterations per tree", stats["iterations_per_tree"]),
            ("nodes per tree", stats["nodes_per_tree"]),
            ("generated tokens per tree", stats["generated_tokens_per_tree"]),
            ("prompt tokens per tree", stats["prompt_tokens_per_tree"]),
            ("backend calls per tree", stats["backend_calls_per_tree"]),
            ("rollouts per tree", stats["rollouts_per_tree"]),
            ("wall seconds per tree", stats["wall_seconds_per_tree"]),
            ("stop reasons", ", ".join(f"{k}: {v}" for k, v in stats["stop_reasons"].items()))]
    table = Table(title=f"search trees: {path}", show_header=False)
    for k, v in rows:
        table.add_row(k, str(v))
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("search")(search)
    app.add_typer(trees_app, name="trees")
