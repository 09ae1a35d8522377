"""`astro pipeline CONFIG.yaml` and `astro demo`: the whole recipe, resumable, one stage after another."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from .recipes import recipes_help, resolve_recipe


def run_pipeline(config: str | Path | None, overrides: list[str], force: list[str] | None = None,
                 until: str | None = None, status_only: bool = False, plan_only: bool = False,
                 gpu_memory: float = 80.0) -> int:
    from rich.console import Console

    from .config import load_pipeline_config
    from .stages import build_graph

    console = Console()
    if config is not None:
        config = resolve_recipe(config)  # a file, else a packaged recipe's name (pipeline/recipes.py)
    cfg = load_pipeline_config(config, overrides)
    graph = build_graph(cfg)
    if plan_only:  # before anything touches the run directory: a plan writes nothing
        from .plan import format_plan, plan_stages, refuse

        plans = plan_stages(cfg, gpu_memory)
        console.print(format_plan(cfg, plans, gpu_memory), markup=False, highlight=False, soft_wrap=True)
        refuse(plans)  # after the table, so a refused plan still shows every stage
        return 0
    if status_only:
        for name, st in graph.stages.items():
            console.print(f"{graph.status(name):>8}  {name:<28} {st.title}")
        return 0
    graph.dependents([*(force or []), *([until] if until else [])])  # unknown names fail before any write
    require_extras(cfg, graph, until, force)  # a missing extra fails now, not after an hour of search
    lock = graph.lock()  # one writer per run directory, from --force's moves to the last stage
    if force:
        redo = graph.invalidate(force)
        console.print(f"[yellow]forcing[/] {', '.join(redo)}")
    cfg.run_dir_path.mkdir(parents=True, exist_ok=True)
    from ..io import write_json

    write_json(cfg.run_dir_path / "pipeline.json", {"config": str(config) if config else None,
                                                     "overrides": overrides})
    t0 = time.time()

    def on_start(st, i, n, state):
        if state == "done":
            console.print(f"[dim][{i}/{n}] {st.name}: done, skipped[/]")
        else:
            what = "resuming" if state == "partial" else "running"
            console.rule(f"[bold][{i}/{n}] {st.name}[/] — {st.title} ({what}; {time.time() - t0:.0f}s elapsed)")

    def on_end(st, res):
        if not res.skipped:
            console.print(f"[green]✓[/] {st.name} in {res.seconds:.1f}s")

    graph.run(until=until, on_start=on_start, on_end=on_end)
    report = cfg.run_dir_path / "report"
    console.print(f"\n[bold green]Pipeline finished[/] in {time.time() - t0:.0f}s. Run directory: {cfg.run_dir_path}")
    if (report / "results.md").exists():
        console.print((report / "results.md").read_text())
        console.print(f"Report: {report / 'report.html'}")
    return 0


def require_extras(cfg, graph, until: str | None, force: list[str] | None) -> None:
    """Raise MissingExtra when a stage this run would execute needs an optional extra that is not installed:
    training stages TRL (``train``), ``backend: ct2`` CTranslate2, a ``server:`` running llama_cpp.server
    llama-cpp-python (``server``)."""
    from ..extras import require

    names = list(graph.stages)
    if until is not None:
        needed = {until}
        for n in reversed(names):
            if n in needed:
                needed.update(graph.stages[n].deps)
        names = [n for n in names if n in needed]
    redo = set(graph.dependents(force)) if force else set()
    pending = [n for n in names if n in redo or graph.status(n) != "done"]
    if any(n.startswith(("warm-start", "sft-", "rl-")) for n in pending):
        require("train", "trl")
        if any(bool((cfg.section(sec) or {}).get("lora")) for sec in ("sft", "rl")):
            require("train", "peft")
    if pending and cfg.backend == "ct2":
        require("ct2")
    if pending and cfg.server is not None and "llama_cpp" in str(cfg.server.get("command", "")):
        require("server")


PIPELINE_HELP = ("Run the whole ASTRO recipe: search -> clone -> SFT -> filter -> RL -> eval -> analysis -> report."
                 "\n\nFinished stages are skipped (keyed by a hash of their settings and inputs); an interrupted run "
                 "resumes where it stopped when the same command is run again.\n\n{recipes}")


def register(app: typer.Typer) -> None:
    @app.command("pipeline", help=PIPELINE_HELP.format(recipes=recipes_help()))
    def pipeline(
        config: str = typer.Argument(..., help="Pipeline YAML file, or the name of a packaged recipe (below)."),
        overrides: Optional[list[str]] = typer.Argument(None, help="section.key=value overrides, e.g. search.iterations=8"),
        force: Optional[list[str]] = typer.Option(None, "--force", help="Redo this stage and what depends on it (repeatable)."),
        until: Optional[str] = typer.Option(None, help="Stop after this stage."),
        status: bool = typer.Option(False, "--status", help="Print each stage's state (done/partial/stale/todo) and exit."),
        plan: bool = typer.Option(False, "--plan", help="Print what each stage runs, its processes, GPUs and memory, "
                                  "refuse settings that cannot fit, and exit (runs, loads and downloads nothing)."),
        gpu_memory: float = typer.Option(80.0, "--gpu-memory",
                                         help="GiB of memory per GPU assumed by --plan (80 for A100/H100 80GB)."),
    ) -> None:
        raise typer.Exit(run_pipeline(config, list(overrides or []), force, until, status, plan, gpu_memory))

    @app.command("demo")
    def demo(
        overrides: Optional[list[str]] = typer.Argument(None, help="section.key=value overrides"),
        config: str = typer.Option("demo", help="Demo config: a YAML file or a packaged recipe name (the default, "
                                   "`demo`, ships with the package: CPU, SmolLM2-135M)."),
        force: Optional[list[str]] = typer.Option(None, "--force", help="Redo this stage and its dependents."),
    ) -> None:
        """The CPU demo: Countdown puzzles + SmolLM2-135M-Instruct through every stage, ASTRO vs Direct
        (`astro pipeline demo`)."""
        raise typer.Exit(run_pipeline(config, list(overrides or []), force))
