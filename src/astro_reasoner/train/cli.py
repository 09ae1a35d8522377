"""`astro sft`, `astro rl` (= `astro rl train`) and `astro rl filter`.

``rl`` is a group whose default command is ``train``: any arguments that do not start with a subcommand name
go to ``train``, so ``astro rl --prompts rl.jsonl --model CKPT --out DIR learning_rate=1e-6`` trains and
``astro rl filter --prompts ...`` filters. (A click group cannot take free ``key=value`` arguments itself
without swallowing the subcommand name, hence the default-command group.)

Every command takes ``--config FILE`` (YAML; its ``sft:`` / ``rl:`` / ``rl_filter:`` section when present,
else the whole file) and trailing ``key=value`` overrides of the stage config (train/trl_configs.py: every TRL
option of SFTConfig / GRPOConfig, plus ours; train/config.py for the filter), also written
TRL-style: ``--learning_rate 1e-5``, ``--learning-rate=1e-5``, ``--lora`` (= ``lora=true``).
Multi-GPU: ``accelerate launch --config_file configs/accelerate/<cfg>.yaml -m astro_reasoner.cli sft ...``
(configs/accelerate/README.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from typer.core import TyperGroup

from ..backends.cli import backend_option_flag, parse_backend_options

CONFIG_HELP = "YAML file: its `{section}:` section, or the whole file if it has none."
# Unknown --options reach the overrides argument, where flag_overrides reads them as TRL-style key value pairs.
FLAGS_AS_OVERRIDES = {"ignore_unknown_options": True}
OVERRIDES_TRL = " TRL-style --key value works too (--learning_rate 1e-5)."


class DefaultCommandGroup(TyperGroup):
    """A group that runs ``train`` when the first argument is not one of its subcommands."""

    default_command = "train"

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


rl_app = typer.Typer(cls=DefaultCommandGroup, no_args_is_help=True,
                     help="RL with verifiable rewards (GRPO). `astro rl ARGS` = `astro rl train ARGS`.")


def _stage_config(cls: type, section: str, config: Optional[Path], overrides: list[str] | None, **options: Any):
    """Set up logging, then build the stage config: defaults < YAML (its ``section`` if present) < the CLI
    options (None = not given; paths as text) < key=value overrides, validated."""
    from ..config import flag_overrides, load_config, parse_overrides, yaml_section

    _setup_logging()
    merged = {k: str(v) if isinstance(v, Path) else v for k, v in options.items() if v is not None}
    merged.update(parse_overrides(flag_overrides(overrides)))  # key=value, or TRL-style --key value
    return load_config(cls, config, merged, section=yaml_section(config, section))


def _config_option(section: str) -> Any:
    return typer.Option(None, "--config", "-c", help=CONFIG_HELP.format(section=section))


def _require_train(cfg: Any = None) -> None:
    """The ``train`` extra: TRL always, peft for LoRA (before the config is read: a missing TRL is the first
    thing to fix). ``astro`` turns the MissingExtra into one line and exit code 2."""
    from ..extras import require

    require("train", "trl")
    if cfg is not None and getattr(cfg, "lora", False):
        require("train", "peft")


def _setup_logging() -> None:
    import logging

    from rich.logging import RichHandler

    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[RichHandler(show_path=False)])
    for noisy in ("httpx", "urllib3", "datasets", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def sft_command(
    data: Optional[Path] = typer.Option(None, "--data", "-d", help="sft.jsonl (from `astro clone`)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="HF dir, hub id, or alias (smollm2-135m)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output dir (checkpoints + final model)."),
    config: Optional[Path] = _config_option("sft"),
    overrides: list[str] = typer.Argument(None, help="SFTStageConfig key=value overrides, e.g. max_length=8192 "
                                          "lora=true num_train_epochs=3 packing_strategy=wrapped (every TRL SFTConfig option)."
                                          + OVERRIDES_TRL),
) -> None:
    """ASTRO §3.3: fine-tune on the long CoTs with TRL's SFTTrainer (loss on all tokens as in the paper;
    completion_only_loss=true puts it on the CoT only)."""
    _require_train()
    from .sft import run_sft
    from .trl_configs import SFTStageConfig

    cfg = _stage_config(SFTStageConfig, "sft", config, overrides, data=data, model=model, output_dir=out)
    _require_train(cfg)
    typer.echo(f"SFT checkpoint: {run_sft(cfg.data, cfg.output_dir, cfg)['checkpoint']}")


@rl_app.command("train", context_settings=FLAGS_AS_OVERRIDES)
def rl_train_command(
    prompts: Optional[Path] = typer.Option(None, "--prompts", "-p", help="rl.jsonl (from `astro clone`)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Policy to train (usually the SFT output)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output dir (checkpoints, model, metrics.jsonl)."),
    config: Optional[Path] = _config_option("rl"),
    overrides: list[str] = typer.Argument(None, help="RLStageConfig key=value overrides, e.g. num_generations=8 "
                                          "max_completion_length=2048 use_vllm=true vllm_mode=server (every TRL GRPOConfig option)."
                                          + OVERRIDES_TRL),
) -> None:
    """ASTRO §3.4: GRPO with the +1/-1 answer-checker reward, no KL; logs reward and behaviour per step."""
    _require_train()
    from .grpo import METRICS_FILE, run_grpo
    from .trl_configs import RLStageConfig

    cfg = _stage_config(RLStageConfig, "rl", config, overrides, prompts=prompts, model=model, output_dir=out)
    _require_train(cfg)
    done = run_grpo(cfg.prompts, cfg.output_dir, cfg)["checkpoint"]
    typer.echo(f"RL checkpoint: {done}; per-step metrics: {Path(done) / METRICS_FILE}")


@rl_app.command("filter", context_settings=FLAGS_AS_OVERRIDES)
def rl_filter_command(
    prompts: Optional[Path] = typer.Option(None, "--prompts", "-p", help="rl.jsonl to filter."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="The policy RL will train (SFT output)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Kept prompts (JSONL); pass rates go beside."),
    n: Optional[int] = typer.Option(None, "--n", help="Samples per prompt (default 8)."),
    keep: Optional[str] = typer.Option(None, "--keep", help="Inclusive pass-rate band LO-HI (default 0.1-0.9)."),
    backend: Optional[str] = typer.Option(None, "--backend", help="auto, hf, llamacpp, ct2 or openai (default: the config's)."),
    config: Optional[Path] = _config_option("rl_filter"),
    backend_option: list[str] = backend_option_flag(),
    overrides: list[str] = typer.Argument(None, help="FilterConfig key=value overrides, e.g. max_tokens=1024 "
                                          "temperature=1.0 limit=100." + OVERRIDES_TRL),
) -> None:
    """Keep prompts of moderate difficulty: sample n solutions each, keep pass rates inside the band."""
    from .config import FilterConfig
    from .filter import run_filter

    # No -b given: None, so backend_options from the YAML file stay.
    options = parse_backend_options(backend_option) if backend_option else None
    cfg = _stage_config(FilterConfig, "rl_filter", config, overrides, prompts=prompts, model=model, out=out,
                        n=n, keep=keep, backend=backend, backend_options=options)
    res = run_filter(cfg.prompts, cfg.out, cfg)
    typer.echo(f"kept {res['kept']} of {res['total']} prompts ({res['too_easy']} too easy, {res['too_hard']} too "
               f"hard) -> {res['out']}; pass rates: {res['pass_rates']}")


def register(app: typer.Typer) -> None:
    app.command("sft", context_settings=FLAGS_AS_OVERRIDES)(sft_command)
    app.add_typer(rl_app, name="rl")
