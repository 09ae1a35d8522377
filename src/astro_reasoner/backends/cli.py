"""``astro model prepare`` (resolve/convert a model once) and ``astro generate`` (sample steps from a
backend with the search's own prompt: the quickest way to see what a model and backend produce)."""

from __future__ import annotations

import json
from typing import Any, List, Optional

import typer

BACKEND_OPTION_HELP = "key=value passed to the backend (e.g. base_url=...)."

model_app = typer.Typer(help="Model aliases and the local model cache.", no_args_is_help=True)


def backend_option_flag(help: str = BACKEND_OPTION_HELP) -> Any:
    """The repeatable ``--backend-option``/``-b key=value`` option of every command that builds a backend."""
    return typer.Option([], "--backend-option", "-b", help=help)


def parse_backend_options(items: list[str] | None, flag: str = "--backend-option") -> dict[str, Any]:
    """``["base_url=http://h:8000/v1", "threads=2"]`` -> keyword options for ``make_backend`` (values read as
    YAML scalars/lists); a malformed item is a ConfigError naming ``flag``."""
    from ..config import ConfigError, parse_overrides

    try:
        return parse_overrides(items)
    except ConfigError as exc:
        raise ConfigError(f"{flag}: {exc}") from None


@model_app.command("prepare")
def prepare_command(name: str = typer.Argument(..., help="Alias (smollm2-135m), .gguf file, directory or hub id.")):
    """Resolve a model, converting a GGUF (alias) into a cached plain HF checkpoint once; print its path."""
    from ..models import resolve_model

    typer.echo(resolve_model(name))


@model_app.command("list")
def list_command():
    """List the model aliases and where their converted checkpoints are cached."""
    from ..models import ALIASES, cache_root

    for alias, spec in ALIASES.items():
        path = cache_root() / "models" / alias
        state = "converted" if path.is_dir() else "not converted yet"
        typer.echo(f"{alias}\t{spec.package}/{spec.filename}\t(original: {spec.hub_id})\t{path} [{state}]")


def generate_command(
    problem: str = typer.Option(..., "--problem", "-p", help="The problem text."),
    steps: List[str] = typer.Option([], "--step", help="Steps already taken (repeatable); generation continues after them."),
    backend: str = typer.Option("hf", "--backend", help="auto, hf, llamacpp, ct2 or openai."),
    model: str = typer.Option("smollm2-135m", "--model", "-m", help="Alias, path, .gguf file or hub id."),
    n: int = typer.Option(4, "--n", help="Samples."),
    max_tokens: int = typer.Option(128, "--max-tokens"),
    temperature: float = typer.Option(0.8, "--temperature"),
    top_p: float = typer.Option(1.0, "--top-p"),
    seed: Optional[int] = typer.Option(0, "--seed"),
    whole: bool = typer.Option(False, "--whole", help="Generate the whole solution instead of stopping at the next step."),
    # -b/--backend-option as on every command (--option is the older name); -o is --out elsewhere, unused here
    option: List[str] = typer.Option([], "--backend-option", "-b", "--option",
                                     help="Backend option key=value (repeatable), e.g. "
                                          "base_url=http://127.0.0.1:8000/v1."),
) -> None:
    """Sample the next step (or the whole solution) of a problem; print one JSON line per completion."""
    from ..prompts import STEP_DELIMITER, PromptBuilder
    from ..types import GenParams
    from . import make_backend

    policy = make_backend(backend, model, **parse_backend_options(option))
    try:
        prompt = PromptBuilder(policy).continuation(problem, steps)
        params = GenParams(n=n, max_tokens=max_tokens, stop=() if whole else (STEP_DELIMITER,),
                           temperature=temperature, top_p=top_p, seed=seed)
        for c in policy.generate([prompt], params)[0]:
            typer.echo(json.dumps(c.to_json(), ensure_ascii=False))
    finally:
        policy.close()


def register(app: typer.Typer) -> None:
    app.add_typer(model_app, name="model")
    app.command("generate")(generate_command)
