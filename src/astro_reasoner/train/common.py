"""What SFT and GRPO share: run identity, model resolution, resume, saving. (Device and precision: runtime.py.)

Run identity (``run_settings``): a stage config is a TRL ``TrainingArguments``, whose ``__post_init__`` turns
what the user wrote into derived, machine-dependent values (enums, ``bf16`` from "auto", accelerate's config,
``generation_batch_size``...), so neither ``dataclasses.asdict`` nor ``to_dict()`` as a whole identifies a run:
their values change with the machine and with TRL's defaults. What identifies it is what the user chose:
our own fields (model, data, LoRA, reward...) and ``output_dir``, plus each TRL option whose value differs
from that of the class defaults built on this same machine (``baseline``): equal inputs give equal values
however often, and in whichever copy (``dataclasses.replace`` included), the config is built.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import time
from pathlib import Path
from typing import Any

from ..config import ConfigError
from ..io import honour_umask, read_json, stable_hash, write_json
from ..outdir import as_json, claim_out_dir
from .allocator import tuned_malloc
from .runtime import Runtime, set_threads

log = logging.getLogger(__name__)

SUMMARY_FILE = "train_summary.json"
RUN_CONFIG_FILE = "run_config.json"  # written when a run starts: which config owns output_dir
# Fields that do not change what is trained (so changing them does not invalidate a finished run).
_NOT_HASHED = ("resume", "overwrite", "report_to", "threads", "logging_steps", "save_steps", "save_total_limit")
_LENGTH = ("max_steps", "num_train_epochs")  # may change between attempts: a longer run extends the checkpoint
_SECRET = ("hub_token",)  # never recorded (to_dict() masks every *_token, but SFT's eos_token is a setting)
# Placeholders of the required fields, for the class-default config ``baseline`` builds
_REQUIRED = {"model": "m", "output_dir": "out", "data": "d.jsonl", "prompts": "p.jsonl"}


def trl_base(cls: type) -> type:
    """The TRL config class ``cls`` extends (``trl.SFTConfig`` / ``trl.GRPOConfig``)."""
    return next(b for b in cls.__mro__[1:] if b.__module__.startswith("trl."))


def own_fields(cls: type) -> list[str]:
    """Our fields of a stage config class: those TRL's config does not have."""
    trl = {f.name for f in dataclasses.fields(trl_base(cls))}
    return [f.name for f in dataclasses.fields(cls) if f.name not in trl]


def plain(cfg: Any) -> dict[str, Any]:
    """Every option of ``cfg`` as JSON values: TRL's ``to_dict()`` (enums as values), except that a ``*_token``
    setting (SFT's eos_token) keeps its value and secrets are left out."""
    d = cfg.to_dict()
    for key in d:
        if key.endswith("_token"):
            d[key] = getattr(cfg, key)
    return as_json({k: v for k, v in d.items() if k not in _SECRET})


def baseline(cls: type) -> dict[str, Any]:
    """``plain`` of the class defaults built on this machine (cached per machine facts: building one resets
    accelerate's state, and tests simulate other machines)."""
    from .runtime import cpu_has_amx, cpu_has_bf16, cuda_available

    return _baseline(cls, cuda_available(), cpu_has_bf16() and cpu_has_amx(), os.environ.get("WORLD_SIZE", "1"))


@functools.lru_cache(maxsize=None)
def _baseline(cls: type, *host: Any) -> dict[str, Any]:
    fields = {f.name for f in dataclasses.fields(cls)}
    return plain(cls(**{k: v for k, v in _REQUIRED.items() if k in fields}))


def run_settings(cfg: Any) -> dict[str, Any]:
    """What identifies the run ``cfg`` trains (module doc): our fields and output_dir, then the TRL options the
    user changed. Recorded in ``run_config.json``, compared on resume, hashed by ``config_hash``."""
    mine, base = plain(cfg), baseline(type(cfg))
    ours = [*own_fields(type(cfg)), "output_dir"]
    return {**{k: mine[k] for k in ours}, **{k: v for k, v in mine.items() if k not in ours and v != base.get(k)}}


def resolve_model_path(name: str) -> str:
    """A local HF checkpoint dir (or hub id) for ``name``: aliases such as ``smollm2-135m`` (a GGUF) become a
    plain, trainable HF checkpoint via ``astro_reasoner.models.resolve_model`` (a GGUF-loaded
    model can be neither trained nor saved)."""
    from ..models import resolve_model

    return str(resolve_model(name))


def lora_config(cfg: Any):
    """A peft LoraConfig for ``cfg.lora`` (None for full fine-tuning)."""
    if not cfg.lora:
        return None
    from peft import LoraConfig

    targets: Any = cfg.lora_target_modules
    if targets != "all-linear":
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM")


def config_hash(cfg: Any, *, with_length: bool = True) -> str:
    """Hash of what ``cfg`` trains (``run_settings``); ``with_length=False`` leaves out how long (max_steps,
    epochs), so a finished run can be extended by re-running with more steps (it resumes from its last
    checkpoint)."""
    d = run_settings(cfg)
    for key in _NOT_HASHED + (() if with_length else _LENGTH):
        d.pop(key, None)
    return stable_hash(d)[:16]


def is_main_rank() -> bool:
    """Rank 0 of a launched job (torchrun/accelerate set RANK), before any TRL state exists."""
    return int(os.environ.get("RANK", "0")) == 0


def start_run(cfg: Any) -> tuple[bool, str | None, Any]:
    """Claim ``output_dir`` for ``cfg``: returns (already finished, checkpoint to resume from or None, the
    directory lock to hold while training: ``outdir.claim_out_dir``, taken by the main rank only).

    - A finished run of this same config (``train_summary.json``) -> (True, None): the stage is skipped.
    - ``output_dir`` used by a run of a *different* config (``run_config.json``) -> ConfigError naming the changed
      keys unless ``overwrite=true``: silently mixing two runs would make the checkpoint lie about how it was
      trained. Only the length (max_steps, epochs) and the keys in ``_NOT_HASHED`` may change: a longer run
      extends the run from its latest checkpoint.
    - ``overwrite=true`` always starts over. Otherwise ``resume=auto`` resumes from the latest
      ``checkpoint-N``; ``never`` starts over; a path resumes from that checkpoint.
    """
    out = Path(cfg.output_dir)
    settings = run_settings(cfg)
    # A recorded key this config leaves at its default is compared with that default (not shown as missing).
    recorded = _recorded_settings(out)
    full = plain(cfg)
    settings = {**{k: full[k] for k in recorded if k in full and k not in settings}, **settings}
    # Runs from before run_config.json recorded their config only in the summary (same layout).
    lock = claim_out_dir(out, settings, settings_file=RUN_CONFIG_FILE, holds="a training run",
                         record={"run_hash": config_hash(cfg, with_length=False), "config": settings},
                         under="config", ignore=_NOT_HASHED + _LENGTH, overwrite=cfg.overwrite,
                         overwrite_flag="overwrite=true", fallback_file=SUMMARY_FILE, leader=is_main_rank())
    summary_path = out / SUMMARY_FILE
    summary = read_json(summary_path) if summary_path.exists() else {}
    if not cfg.overwrite and summary.get("config_hash") == config_hash(cfg):
        return True, None, lock
    if is_main_rank():
        summary_path.unlink(missing_ok=True)
    if cfg.overwrite:
        return False, None, lock
    return False, resume_checkpoint(cfg), lock


def _recorded_settings(out: Path) -> dict[str, Any]:
    for name in (RUN_CONFIG_FILE, SUMMARY_FILE):
        try:
            stored = read_json(out / name) if (out / name).is_file() else None
        except Exception:  # noqa: BLE001 - claim_out_dir reports an unreadable file with its fix
            return {}
        if isinstance(stored, dict) and isinstance(stored.get("config"), dict):
            return stored["config"]
    return {}


def resume_checkpoint(cfg: Any) -> str | None:
    """The checkpoint to resume from: ``resume=auto`` -> latest ``checkpoint-N`` in output_dir (if any)."""
    if cfg.resume == "never":
        return None
    if cfg.resume != "auto":
        if not Path(cfg.resume).is_dir():
            raise ConfigError(f"resume={cfg.resume!r}: not a checkpoint directory; use auto, never, or a path "
                              "to a checkpoint-N directory")
        return cfg.resume
    if not Path(cfg.output_dir).is_dir():
        return None
    return last_complete_checkpoint(cfg.output_dir)


def last_complete_checkpoint(out_dir: str | Path) -> str | None:
    """The latest ``checkpoint-N`` whose ``trainer_state.json`` (the Trainer writes it last) reads back.

    A run killed while saving leaves a partial ``checkpoint-N``; transformers' ``get_last_checkpoint`` picks
    it and the resume fails ("Can't find a valid checkpoint"); found by the kill -9 tests (issue 14).
    """
    import json

    found = sorted(((int(p.name.split("-", 1)[1]), p) for p in Path(out_dir).glob("checkpoint-*")
                    if p.is_dir() and p.name.split("-", 1)[1].isdigit()), reverse=True)
    for _, path in found:
        try:
            if "global_step" in json.loads((path / "trainer_state.json").read_text(encoding="utf-8")):
                return str(path)
        except (OSError, ValueError):
            continue
    return None


def save_final(trainer, cfg: Any, base_model: str) -> None:
    """Save the trained model + tokenizer (+ chat template) to ``cfg.output_dir`` as an HF checkpoint.

    Full fine-tuning: ``trainer.save_model`` (collective under DeepSpeed/FSDP; writes on the main process).
    LoRA with ``merge_lora``: the adapter goes to ``output_dir/adapter``; then the main process reloads the base
    weights, merges the adapter into them and saves a plain checkpoint in ``output_dir`` (so the hf backend and
    vLLM load it without peft). Without ``merge_lora`` ``output_dir`` holds the adapter only.
    """
    out = Path(cfg.output_dir)
    if not (cfg.lora and cfg.merge_lora):
        trainer.save_model(str(out))
        trainer.create_model_card(model_name=out.name)  # TRL writes it at checkpoint saves only (train/card.py)
        if trainer.is_world_process_zero():
            honour_umask(out)  # safetensors writes model.safetensors 0600 whatever the umask
        return
    adapter_dir = out / "adapter"
    trainer.save_model(str(adapter_dir))
    if trainer.is_world_process_zero():
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        dtype = getattr(torch, trainer.args.model_init_kwargs.get("dtype", "float32"))
        base = AutoModelForCausalLM.from_pretrained(base_model, dtype=dtype)
        merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
        merged.save_pretrained(str(out))
        trainer.processing_class.save_pretrained(str(out))
    trainer.create_model_card(model_name=out.name)
    if trainer.is_world_process_zero():
        honour_umask(out)
    trainer.accelerator.wait_for_everyone()


def add_umask_callback(trainer) -> None:
    """Each saved ``checkpoint-N`` gets the umask's modes (safetensors writes its weights 0600; io.honour_umask),
    so the checkpoints of a run that never finishes are readable like its other files too."""
    from transformers import TrainerCallback

    class HonourUmask(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                honour_umask(Path(args.output_dir) / f"checkpoint-{state.global_step}")

    trainer.add_callback(HonourUmask())


def write_summary(trainer, cfg: Any, extra: dict[str, Any], started: float) -> None:
    """``output_dir/train_summary.json`` (main process only): the full config (every TRL option as TRL got it),
    its hash, losses, timings, counts."""
    if not trainer.is_world_process_zero():
        return
    history = trainer.state.log_history
    write_json(Path(cfg.output_dir) / SUMMARY_FILE, {
        "config": plain(cfg), "config_hash": config_hash(cfg),
        "run_hash": config_hash(cfg, with_length=False),
        "global_step": trainer.state.global_step, "wall_seconds": round(time.time() - started, 2),
        "world_size": trainer.args.world_size,
        "loss_history": [{"step": h["step"], "loss": h["loss"]} for h in history if "loss" in h],
        "final_metrics": next((h for h in reversed(history) if "train_runtime" in h), {}),
        # tokens trained on by all processes (TRL's SFTTrainer sums them across ranks; this attempt only, a
        # resumed run counts from its checkpoint); the final_metrics row carries no num_tokens
        "trained_tokens": int(getattr(trainer, "_total_train_tokens", 0) or 0),
        **extra,
    })


def prepare_environment(cfg: Any) -> None:
    """Process-level settings that must precede the model's and tokenizer's first use."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    set_threads(cfg.threads)


def train_loop(trainer, cfg: Any, rt: Runtime, resume_from: str | None) -> None:
    """``trainer.train``, on CPU inside the opt-in allocator tuning (``tune_malloc``; allocator.py)."""
    with tuned_malloc(cfg.tune_malloc and rt.device == "cpu"):
        trainer.train(resume_from_checkpoint=resume_from)
