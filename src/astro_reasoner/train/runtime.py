"""Device and precision of a training run: our rule for TRL's ``use_cpu`` / ``bf16`` / ``activation_checkpointing``.

TRL's configs default to ``bf16=True``, which fails on a CPU-only machine unless ``use_cpu=True``. So
``resolve_device_fields`` (run by the stage configs' ``__post_init__`` BEFORE TRL's) fills the options the user
left unset, from the machine the config is built on:

- ``use_cpu``: true where no CUDA GPU is visible (else TRL's false).
- ``bf16`` unset (None, TRL's "auto"): bf16 where it is faster -- a GPU that supports it, or a CPU with AMX
  (autocast over fp32 weights; 1.33x per SFT step, BENCHMARKS.md) -- else fp32 (AVX512-BF16 without AMX runs
  autocast's bf16 slower than fp32: :func:`cpu_has_amx`). ``fp16=true`` turns it off.
- ``activation_checkpointing`` (or its deprecated alias ``gradient_checkpointing``) unset: on for a GPU
  (memory), off on CPU (speed); our choice.
- ``model_init_kwargs["dtype"]``: bf16 weights on a bf16 GPU; fp32 master weights otherwise (fp16: the grad
  scaler cannot unscale fp16 grads; CPU bf16 runs under autocast). A dtype the user gives wins.

Nothing here refuses a setting for lack of hardware: a config written for a GPU machine must still build on a
laptop (``astro pipeline --plan`` describes it there). ``check_runtime`` raises those errors when a run starts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..config import ConfigError


@dataclass(frozen=True)
class Runtime:
    device: str  # "cpu" | "cuda"
    dtype: str  # model weights when loaded: "float32" | "bfloat16"


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def cuda_has_bf16() -> bool:
    import torch

    return torch.cuda.is_bf16_supported()


def cpu_has_bf16() -> bool:
    """Native bfloat16 matmuls on this CPU (AVX512-BF16 or AMX): oneDNN runs autocast's bf16 on them."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cpu_has_amx() -> bool:
    """AMX tiles (Linux ``amx_bf16`` flag): the only CPUs where bf16 autocast beats fp32.

    Measured on this kind of machine: with AMX, a 1024x576x1536 matmul ran 975 vs 130 GFLOPS for one core
    (1.33x per SFT step, BENCHMARKS.md); on a CPU with AVX512-BF16 but no AMX the same matmul under autocast ran
    48 vs 94 GFLOPS in fp32, and a GSM8K warm-start step took ~43 s in bf16 against ~33 s in fp32. torch reports
    neither difference (``get_cpu_capability()`` says AVX512 on both), hence the flag.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return any(line.startswith("flags") and " amx_bf16" in line for line in f)
    except OSError:
        return False


def resolve_device_fields(cfg: Any) -> None:
    """Fill ``cfg``'s unset device/precision options in place (see module doc); idempotent, so a copy of a
    resolved config (``dataclasses.replace``) resolves to the same values."""
    on_cpu = cfg.use_cpu or not cuda_available()
    cfg.use_cpu = bool(on_cpu)
    if cfg.bf16 is None:
        cfg.bf16 = not cfg.fp16 and ((cpu_has_bf16() and cpu_has_amx()) if on_cpu else cuda_has_bf16())
    # transformers 5 names it activation_checkpointing (gradient_checkpointing only warns); 4.x has the old name
    name = "activation_checkpointing" if hasattr(cfg, "activation_checkpointing") else "gradient_checkpointing"
    if getattr(cfg, name, None) is None:
        old = getattr(cfg, "gradient_checkpointing", None)
        setattr(cfg, name, (not on_cpu) if old is None else bool(old))
    kwargs = cfg.model_init_kwargs
    if isinstance(kwargs, str) and kwargs.strip().startswith("{"):  # TRL's CLI form: a JSON object
        kwargs = json.loads(kwargs)
    if kwargs is None or isinstance(kwargs, dict):
        dtype = "bfloat16" if cfg.bf16 and not on_cpu else "float32"
        cfg.model_init_kwargs = {"dtype": dtype, **(kwargs or {})}
    if hasattr(cfg, "warmup_ratio") and 0 < cfg.warmup_steps < 1:  # transformers 4.x: a fraction is a ratio
        cfg.warmup_ratio, cfg.warmup_steps = cfg.warmup_steps, 0


def check_runtime(cfg: Any) -> Runtime:
    """The device a resolved config trains on; ConfigError for what this machine cannot run (called when a run
    starts, before anything is written)."""
    use_vllm = bool(getattr(cfg, "use_vllm", False))
    if cfg.use_cpu:
        if cfg.fp16:
            raise ConfigError("fp16=true needs a CUDA GPU; this run is on CPU, where training uses fp32 (or bf16 on "
                              "a CPU with native bfloat16): remove fp16 (bf16 unset picks bf16 where it is faster)")
        if cfg.bf16 and not cpu_has_bf16():
            raise ConfigError("bf16=true on CPU needs native bfloat16 (AVX512-BF16 or AMX, e.g. Intel Sapphire "
                              "Rapids); this CPU has neither, so bf16 would be emulated and slower: leave bf16 "
                              "unset (fp32 on this CPU) or set bf16=false")
        if use_vllm:
            raise ConfigError("use_vllm=true needs a CUDA GPU (vLLM generation, server or colocate); this run is "
                              "on CPU: set use_vllm=false (generation then uses transformers)")
    dtype = (cfg.model_init_kwargs or {}).get("dtype", "float32") if isinstance(cfg.model_init_kwargs, dict) \
        else "float32"
    return Runtime("cpu" if cfg.use_cpu else "cuda", str(dtype))


def set_threads(threads: int) -> int:
    """Set torch's intra-op threads (0 = keep OMP_NUM_THREADS / torch's default). Returns the count in use.

    Why it matters: on a 2-core machine shared with other work, 2 OpenMP threads made a tiny-model GRPO run
    ~25x slower than 1 thread (measured here: oversubscribed OpenMP threads); tests therefore run with OMP_NUM_THREADS=1.
    """
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def resolve_report_to(value: Any) -> list[str]:
    """``auto`` -> ["tensorboard"] when tensorboard is importable, else []; ``none`` -> []; a comma list or a
    list -> that list (TRL would take ``"a,b"`` as one integration's name)."""
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if str(v) != "none"]
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
