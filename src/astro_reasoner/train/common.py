"""What SFT and GRPO share: device/precision choice, TRL config building, model resolution, resume, saving.

Device rules: TRL configs default to ``bf16=True``, which fails on a CPU-only machine unless
``use_cpu=True``; we pick ``use_cpu=True`` on CPU and, under ``precision=auto``, bf16 where the device has it
natively (a GPU that supports it; a CPU with AVX512-BF16/AMX, as autocast) and fp32 elsewhere, and refuse
GPU-only requests on CPU with a message saying what to change. ``gradient_checkpointing`` is passed under its
transformers-5 name ``activation_checkpointing`` (the old name only warns).
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ConfigError
from ..io import honour_umask, read_json, stable_hash, write_json
from ..outdir import claim_out_dir
from .allocator import tune_glibc_malloc
from .config import TrainCommon

log = logging.getLogger(__name__)

SUMMARY_FILE = "train_summary.json"
RUN_CONFIG_FILE = "run_config.json"  # written when a run starts: which config owns out_dir
# Fields that do not change what is trained (so changing them does not invalidate a finished run).
_NOT_HASHED = ("resume", "overwrite", "report_to", "threads", "logging_steps", "save_steps", "save_total_limit")
_LENGTH = ("max_steps", "num_train_epochs")  # may change between attempts: a longer run extends the checkpoint


@dataclass(frozen=True)
class Runtime:
    device: str  # "cpu" | "cuda"
    use_cpu: bool
    bf16: bool
    fp16: bool
    dtype: str  # model weights when loaded: "float32" | "bfloat16"
    activation_checkpointing: bool


def set_threads(threads: int) -> int:
    """Set torch's intra-op threads (0 = keep OMP_NUM_THREADS / torch's default). Returns the count in use.

    Why it matters: on a 2-core machine shared with other work, 2 OpenMP threads made a tiny-model GRPO run
    ~25x slower than 1 thread (measured here: oversubscribed OpenMP threads); tests therefore run with OMP_NUM_THREADS=1.
    """
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def _cpu_has_bf16() -> bool:
    """Native bfloat16 (AVX512-BF16 or AMX): explicit ``precision=bf16`` is allowed."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _cpu_has_amx() -> bool:
    """AMX tiles (Linux ``amx_bf16`` flag): the only CPUs where bf16 autocast beats fp32.

    Measured on this kind of machine: with AMX, a 1024x576x1536 matmul ran 975 vs 130 GFLOPS for one core
    (1.33x per SFT step, BENCHMARKS.md); on a CPU with AVX512-BF16 but no AMX the same matmul under autocast ran
    48 vs 94 GFLOPS in fp32, and a GSM8K warm-start step took ~43 s instead of ~15 s. torch reports neither
    difference (``get_cpu_capability()`` says AVX512 on both), hence the flag.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return any(line.startswith("flags") and " amx_bf16" in line for line in f)
    except OSError:
        return False


def resolve_runtime(cfg: TrainCommon, *, use_vllm: bool = False) -> Runtime:
    """Pick device and precision for ``cfg``; raise ConfigError for GPU-only options on a machine without one."""
    import torch

    has_cuda = torch.cuda.is_available()
    device = cfg.device if cfg.device != "auto" else ("cuda" if has_cuda else "cpu")
    if device == "cuda" and not has_cuda:
        raise ConfigError("device=cuda but no CUDA GPU is visible (torch.cuda.is_available() is False); "
                          "use device=auto or device=cpu")
    gpu_only = {k for k in ("bf16", "fp16", "tf32") if cfg.trl_args.get(k)}
    if device == "cpu":
        if cfg.precision == "fp16":
            raise ConfigError("precision=fp16 needs a CUDA GPU; this run is on CPU, where training uses fp32 (or "
                              "bf16 on a CPU with native bfloat16): set precision=auto, fp32 or bf16")
        # auto: bf16 autocast where the CPU has AMX (1.33x per SFT step, BENCHMARKS.md), else fp32 (without AMX,
        # native AVX512-BF16 included, bf16 autocast is slower than fp32: _cpu_has_amx)
        cpu_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and _cpu_has_bf16() and _cpu_has_amx())
        if cfg.precision == "bf16" and not _cpu_has_bf16():
            raise ConfigError("precision=bf16 on CPU needs native bfloat16 (AVX512-BF16 or AMX, e.g. Intel Sapphire "
                              "Rapids); this CPU has neither, so bf16 would be emulated and slower: use "
                              "precision=auto (fp32 on this CPU)")
        if gpu_only:
            raise ConfigError(f"trl_args sets {', '.join(sorted(gpu_only))}, which needs a CUDA GPU; this run is on "
                              "CPU: remove it (precision=auto picks bf16 on a CPU with native bfloat16, else fp32)")
        if use_vllm:
            raise ConfigError("use_vllm=true needs a CUDA GPU (vLLM generation, server or colocate); this run is "
                              "on CPU: set use_vllm=false (generation then uses transformers)")
        # bf16 on CPU: fp32 master weights under torch.autocast (the Trainer's bf16 + use_cpu); oneDNN runs the
        # matmuls on AMX/AVX512-BF16 (measured here: 975 vs 130 GFLOPS for one core on a 1024x576x1536 matmul)
        return Runtime("cpu", use_cpu=True, bf16=cpu_bf16, fp16=False, dtype="float32",
                       activation_checkpointing=bool(cfg.gradient_checkpointing))
    precision = cfg.precision
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise ConfigError("precision=bf16 but this GPU does not support bfloat16; use precision=fp16 or fp32")
    ckpt = True if cfg.gradient_checkpointing is None else cfg.gradient_checkpointing
    # fp16 keeps fp32 master weights (the grad scaler cannot unscale fp16 grads); bf16 loads bf16 weights.
    return Runtime("cuda", use_cpu=False, bf16=precision == "bf16", fp16=precision == "fp16",
                   dtype="bfloat16" if precision == "bf16" else "float32", activation_checkpointing=ckpt)


def resolve_report_to(value: str) -> list[str]:
    """``auto`` -> ["tensorboard"] when tensorboard is importable, else []; ``none`` -> []; else a list."""
    value = (value or "none").strip()
    if value == "auto":
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            return []
        return ["tensorboard"]
    if value == "none":
        return []
    return [v.strip() for v in value.split(",") if v.strip()]


def resolve_model_path(name: str) -> str:
    """A local HF checkpoint dir (or hub id) for ``name``: aliases such as ``smollm2-135m`` (a GGUF) become a
    plain, trainable HF checkpoint via ``astro_reasoner.models.resolve_model`` (a GGUF-loaded
    model can be neither trained nor saved)."""
    from ..models import resolve_model

    return str(resolve_model(name))


def common_trl_kwargs(cfg: TrainCommon, rt: Runtime) -> dict[str, Any]:
    """TRL/transformers TrainingArguments from our shared fields."""
    return dict(
        output_dir=cfg.out_dir, use_cpu=rt.use_cpu, bf16=rt.bf16, fp16=rt.fp16,
        activation_checkpointing=rt.activation_checkpointing,
        learning_rate=cfg.learning_rate, num_train_epochs=cfg.num_train_epochs, max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps, lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm,
        seed=cfg.seed, logging_steps=cfg.logging_steps, save_strategy="steps", save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit, report_to=resolve_report_to(cfg.report_to),
        model_init_kwargs={"dtype": rt.dtype},
    )


def build_trl_config(cls: type, ours: dict[str, Any], trl_args: dict[str, Any]):
    """Instantiate the TRL config ``cls`` from our mapped options plus the pass-through ``trl_args``.

    A ``trl_args`` key must be a field of ``cls`` and must not shadow one of our own options (say it once).
    TRL's own ValueErrors (bad combinations) become ConfigErrors.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    ours = _for_transformers_4(ours, names)
    trl_args = dict(trl_args)
    if isinstance(trl_args.get("model_init_kwargs"), dict):  # e.g. attn_implementation: merged with ours
        trl_args["model_init_kwargs"] = {**ours.get("model_init_kwargs", {}), **trl_args["model_init_kwargs"]}
        ours = {k: v for k, v in ours.items() if k != "model_init_kwargs"}
    for key in trl_args:
        if key not in names:
            close = difflib.get_close_matches(key, sorted(names), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"trl_args: {key!r} is not an option of {cls.__name__}{hint}")
        if key in ours:
            raise ConfigError(f"trl_args: {key!r} is set from our own config; set it there (e.g. {key}=...) "
                              "instead of in trl_args")
    try:
        return cls(**{**ours, **trl_args})
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{cls.__name__}: {exc}") from None


def _for_transformers_4(ours: dict[str, Any], names: set[str]) -> dict[str, Any]:
    """Our transformers-5 argument names, renamed where an older transformers (>= 4.56, allowed by TRL 1.16)
    has only the old ones: ``gradient_checkpointing``, and ``warmup_ratio`` for a fractional warmup."""
    ours = dict(ours)
    if "activation_checkpointing" not in names and "activation_checkpointing" in ours:
        ours["gradient_checkpointing"] = ours.pop("activation_checkpointing")
    if "warmup_ratio" in names and 0 < ours.get("warmup_steps", 0) < 1:
        ours["warmup_ratio"], ours["warmup_steps"] = ours["warmup_steps"], 0
    return ours


def lora_config(cfg: TrainCommon):
    """A peft LoraConfig for ``cfg.lora`` (None for full fine-tuning)."""
    if not cfg.lora:
        return None
    from peft import LoraConfig

    targets: Any = cfg.lora_target_modules
    if targets != "all-linear":
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM")


def config_hash(cfg: TrainCommon, *, with_length: bool = True) -> str:
    """Hash of what ``cfg`` trains; ``with_length=False`` leaves out how long (max_steps, epochs), so a
    finished run can be extended by re-running with more steps (it resumes from its last checkpoint)."""
    d = dataclasses.asdict(cfg)
    for key in _NOT_HASHED + (() if with_length else _LENGTH):
        d.pop(key, None)
    return stable_hash(d)[:16]


def is_main_rank() -> bool:
    """Rank 0 of a launched job (torchrun/accelerate set RANK), before any TRL state exists."""
    return int(os.environ.get("RANK", "0")) == 0


def start_run(cfg: TrainCommon) -> tuple[bool, str | None, Any]:
    """Claim ``out_dir`` for ``cfg``: returns (already finished, checkpoint to resume from or None, the
    directory lock to hold while training: ``outdir.claim_out_dir``, taken by the main rank only).

    - A finished run of this same config (``train_summary.json``) -> (True, None): the stage is skipped.
    - ``out_dir`` used by a run of a *different* config (``run_config.json``) -> ConfigError naming the changed
      keys unless ``overwrite=true``: silently mixing two runs would make the checkpoint lie about how it was
      trained. Only the length (max_steps, epochs) and the keys in ``_NOT_HASHED`` may change: a longer run
      extends the run from its latest checkpoint.
    - ``overwrite=true`` always starts over. Otherwise ``resume=auto`` resumes from the latest
      ``checkpoint-N``; ``never`` starts over; a path resumes from that checkpoint.
    """
    out = Path(cfg.out_dir)
    settings = dataclasses.asdict(cfg)
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


def resume_checkpoint(cfg: TrainCommon) -> str | None:
    """The checkpoint to resume from: ``resume=auto`` -> latest ``checkpoint-N`` in out_dir (if any)."""
    if cfg.resume == "never":
        return None
    if cfg.resume != "auto":
        if not Path(cfg.resume).is_dir():
            raise ConfigError(f"resume={cfg.resume!r}: not a checkpoint directory; use auto, never, or a path "
                              "to a checkpoint-N directory")
        return cfg.resume
    if not Path(cfg.out_dir).is_dir():
        return None
    return last_complete_checkpoint(cfg.out_dir)


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


def save_final(trainer, cfg: TrainCommon, base_model: str) -> None:
    """Save the trained model + tokenizer (+ chat template) to ``cfg.out_dir`` as an HF checkpoint.

    Full fine-tuning: ``trainer.save_model`` (collective under DeepSpeed/FSDP; writes on the main process).
    LoRA with ``merge_lora``: the adapter goes to ``out_dir/adapter``; then the main process reloads the base
    weights, merges the adapter into them and saves a plain checkpoint in ``out_dir`` (so the hf backend and
    vLLM load it without peft). Without ``merge_lora`` ``out_dir`` holds the adapter only.
    """
    out = Path(cfg.out_dir)
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


def write_summary(trainer, cfg: TrainCommon, extra: dict[str, Any], started: float) -> None:
    """``out_dir/train_summary.json`` (main process only): config, its hash, losses, timings, counts."""
    if not trainer.is_world_process_zero():
        return
    history = trainer.state.log_history
    write_json(Path(cfg.out_dir) / SUMMARY_FILE, {
        "config": dataclasses.asdict(cfg), "config_hash": config_hash(cfg),
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


def prepare_environment(cfg: TrainCommon, rt: Runtime) -> None:
    """Process-level settings that must precede the model's and tokenizer's first use."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    set_threads(cfg.threads)
    if rt.device == "cpu":
        tune_glibc_malloc()  # opt-in (ASTRO_TUNE_MALLOC=1): faster steps, but the heap only grows (allocator.py)
