"""The ``astro`` command: one subcommand (group) per stage.

Each stage module exposes ``register(app)``, which adds its commands to the root app. Heavy libraries
(torch, transformers, trl, ray) are imported inside the commands, so ``astro --help`` stays fast.
"""

from __future__ import annotations

import sys

import typer

from .backends import cli as backends_cli
from .checking import cli as checking_cli
from .clone import cli as clone_cli
from .data import cli as data_cli
from .evaluate import cli as evaluate_cli
from .search import cli as search_cli
from .train import cli as train_cli
from .viz import cli as viz_cli
from .pipeline import cli as pipeline_cli

app = typer.Typer(
    name="astro",
    help="ASTRO: teach a language model to search inside its own chain of thought.\n\n"
    "Stages: data -> search -> clone -> sft -> rl -> eval -> analyze/viz/report; "
    "`astro pipeline` runs them all, `astro demo` runs the CPU demo.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """ASTRO: teach a language model to search inside its own chain of thought."""



@app.command("version")
def version() -> None:
    """Print the astro-reasoner version."""
    from . import __version__

    print(__version__)


for _module in (data_cli, checking_cli, backends_cli, search_cli, clone_cli, train_cli, evaluate_cli, viz_cli, pipeline_cli):
    _module.register(app)


def command_name(argv: list[str]) -> str:
    """``astro rl train`` for ``["rl", "train", "--prompts", ...]``: the subcommand words at the start of argv."""
    cmd = typer.main.get_command(app)
    words = ["astro"]
    for token in argv:
        commands = getattr(cmd, "commands", None) or {}  # a group (typer vendors its own click classes)
        if token not in commands:
            break
        words.append(token)
        cmd = commands[token]
    return " ".join(words)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 1 error, 2 usage or a missing optional extra, 130 interrupted).

    Usage errors are reported by typer itself; our own known errors (bad config, bad data, backend
    failures) become one ``error: ...`` line instead of a traceback.
    """
    args = list(argv if argv is not None else sys.argv[1:])
    try:
        app(args=args, prog_name="astro")
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except KeyboardInterrupt:
        print("Interrupted; re-run the same command to resume.", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001
        return report_error(exc, args)
    return 0


def report_error(exc: Exception, args: list[str]) -> int:
    """One ``error: ...`` line on stderr for a known error, and its exit code (2: an optional extra is not
    installed, 1: our own errors); anything else is re-raised, since its traceback is what a bug report needs."""
    from .errors import format_error
    from .extras import missing_extra_of

    missing = missing_extra_of(exc)
    if missing is not None:
        print(f"error: {missing.line(command_name(args))}", file=sys.stderr)
        return 2
    msg = format_error(exc)
    if msg is None:
        raise exc
    print(f"error: {msg}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
