"""`astro clone` (procedure cloning: trees -> long CoT SFT/RL data) and `astro baseline best-of-n`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..backends.cli import backend_option_flag, parse_backend_options

baseline_app = typer.Typer(help="Baselines built from the same search trees (Direct is `astro clone --mode "
                                "direct`).", no_args_is_help=True)


def _overrides(items: list[str] | None) -> dict:
    """key=value overrides; ``max_backtracks`` keeps its raw text (YAML would read "1:0.4" as 60.4)."""
    from ..config import parse_overrides

    items = list(items or [])
    raw = {i.partition("=")[0].strip(): i.partition("=")[2] for i in items if "=" in i}
    values = parse_overrides([i for i in items if not i.startswith("max_backtracks=")])
    if "max_backtracks" in raw:
        values["max_backtracks"] = raw["max_backtracks"]
    return values


def _print_messages(messages: list[str]) -> None:
    from rich.console import Console

    err = Console(stderr=True)
    for m in messages:
        err.print(f"[yellow]warning:[/yellow] {m}", highlight=False, markup=True)


def clone_command(
    trees: Path = typer.Option(..., "--trees", "-t", help="Search output directory (or a trees.jsonl file)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory (re-run the same command to resume)."),
    mode: Optional[str] = typer.Option(None, "--mode", help="astro (backtracking traces) or direct (baseline)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c",
                                          help="YAML file (its `clone:` section, or the whole file)."),
    no_phrases: bool = typer.Option(False, "--no-phrases", help="Bare backtrack markers instead of phrases."),
    push_to_hub: Optional[str] = typer.Option(None, "--push-to-hub", help="Also upload to this Hub dataset id."),
    private: bool = typer.Option(False, "--private", help="With --push-to-hub: make the dataset private."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Discard earlier outputs in --out."),
    backend_option: list[str] = backend_option_flag("key=value for the rewrite/self-eval backend (e.g. base_url=...)."),
    overrides: list[str] = typer.Argument(None, help="CloneConfig key=value, e.g. max_backtracks=0:0.2,1:0.4,2:0.4 "
                                          "search_traces=3 merge=root rewrite=true model=smollm2-135m."),
) -> None:
    """Procedure cloning: linearize search trees into traces with backtracks and write SFT/RL data."""
    from ..checking import Checker
    from ..config import load_config, yaml_section
    from .config import CloneConfig
    from .export import push_to_hub as push
    from .run import make_policy, run_clone

    section = yaml_section(config, "clone")
    values = _overrides(overrides)
    if mode is not None:
        values["mode"] = mode
    if no_phrases:
        values["phrases"] = False
    cfg = load_config(CloneConfig, config, values, section=section)
    policy = make_policy(cfg, **parse_backend_options(backend_option)) if cfg.uses_lm else None
    try:
        with Checker() as checker:
            stats = run_clone(trees, out, cfg, policy=policy, checker=checker, overwrite=overwrite, progress=True)
    finally:
        if policy is not None:
            policy.close()
    _print_messages(stats["messages"])
    dist = ", ".join(f"{k}: {v}" for k, v in stats["backtrack_distribution"].items()) or "-"
    typer.echo(f"{stats['examples']} SFT examples from {stats['valid_trees']} trees ({stats['traces']} traces; "
               f"backtracks {{{dist}}}; round trip {stats['roundtrip_rate']}), {stats['rl_prompts']} RL prompts; "
               f"wrote {out}/sft.jsonl, rl.jsonl, README.md")
    if stats["examples"] == 0:
        raise typer.Exit(1)
    if push_to_hub:
        typer.echo(f"pushed to {push(out, push_to_hub, private=private)}")


def search_model(trees: Path) -> str | None:
    """The ``model`` named by the summary.json of the search that wrote ``trees`` (a directory or a trees file
    in it; a sharded run's summary.shard-*.json too), or None."""
    from ..io import DataError, read_json

    folder = trees if trees.is_dir() else trees.parent
    for path in [folder / "summary.json", *sorted(folder.glob("summary.shard-*.json"))]:
        try:
            model = read_json(path).get("model") if path.is_file() else None
        except (DataError, AttributeError):
            continue
        if isinstance(model, str) and model:
            return model
    return None


def _yaml_model(config: Optional[Path], section: Optional[str]) -> bool:
    from ..config import read_yaml_mapping

    if config is None or not config.exists():
        return False
    data = read_yaml_mapping(config)
    data = data.get(section) or {} if section else data
    return isinstance(data, dict) and bool(data.get("model"))


def best_of_n_command(
    trees: Path = typer.Option(..., "--trees", "-t", help="Search output directory (or a trees.jsonl file)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory (re-run the same command to resume)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="The policy the search used (default: the "
                                        "model the trees' summary.json names)."),
    backend: Optional[str] = typer.Option(None, "--backend", help="auto, hf, llamacpp, ct2 or openai."),
    config: Optional[Path] = typer.Option(None, "--config", "-c",
                                          help="YAML file (its `best_of_n:` section, or the whole file)."),
    backend_option: list[str] = backend_option_flag(),
    overrides: list[str] = typer.Argument(None, help="BestOfNConfig key=value, e.g. max_tokens=256 batch=8."),
) -> None:
    """Best-of-N: N full solutions per problem at the search's token budget; keep a correct one."""
    from ..backends import make_backend
    from ..checking import Checker
    from ..config import load_config, parse_overrides, yaml_section
    from .bestofn import run_best_of_n
    from .config import BestOfNConfig

    section = yaml_section(config, "best_of_n")
    values = parse_overrides(overrides)
    values.update({k: v for k, v in (("model", model), ("backend", backend)) if v is not None})
    if "model" not in values and not _yaml_model(config, section):
        found = search_model(trees)  # the policy the search used, as its summary.json names it
        if found:
            values["model"] = found
            typer.echo(f"model: {found} (from the search's summary.json; --model to use another)", err=True)
    cfg = load_config(BestOfNConfig, config, values, section=section)
    policy = make_backend(cfg.backend, cfg.model, **parse_backend_options(backend_option))
    try:
        with Checker() as checker:
            stats = run_best_of_n(trees, out, cfg, policy=policy, checker=checker, progress=True)
    finally:
        policy.close()
    _print_messages(stats["messages"])
    typer.echo(f"solved {stats['solved']}/{stats['problems']} within budget ({stats['samples']} samples, "
               f"{stats['tokens']} of {stats['budget']} budget tokens); wrote {out}/sft.jsonl, bestofn.jsonl")


def register(app: typer.Typer) -> None:
    app.command("clone")(clone_command)
    baseline_app.command("best-of-n")(best_of_n_command)
    app.add_typer(baseline_app, name="baseline")
