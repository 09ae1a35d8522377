"""`astro pipeline CONFIG --plan`: per stage, what it runs, its processes, GPUs and a memory estimate, and a
refusal (cause + fix) for settings that cannot fit. Nothing is run: no model is loaded, nothing downloaded, no
server started; the plan reads the config, config.json files already on disk and the run directory's markers.

By default the pipeline trains in its own process, so a training stage must fit one GPU; with ``launcher: {kind:
accelerate}`` (pipeline/launch.py) it runs under ``accelerate launch`` on ``num_processes`` processes, whose state
is sharded when the config file is DeepSpeed ZeRO-3 or FSDP (its name says ``zero3``/``fsdp``):
``astro sft/rl`` on a GPU load bf16 weights and AdamW keeps its moments in the weights' dtype (no fp32 master):
8 B/param; fp32/fp16 and CPU runs keep fp32 weights: 16 B/param. The fixes quote DeepSpeed ZeRO-3 (bf16 weights +
grads, fp32 master + moments: 16 B/param divided by the processes). Shapes, activations and inference memory:
``sizing``. ``ASSUMPTIONS`` is printed with every plan.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ConfigError, build_config
from .config import PipelineConfig
from .sizing import (GB, PROMPT_TOKENS, RESERVED_GB, VLLM_UTILIZATION, Arch, activations, architecture, gb,
                     min_tp, vllm_need)

DEFAULT_GPU_GB = 80.0
ASSUMPTIONS = ("Assumptions: {gpu:g} GiB GPUs (--gpu-memory), {reserved:g} GiB/GPU reserved; training in the "
               "pipeline's process, unsharded (bf16 on GPU: 8 B/param; fp32 or CPU: 16 B/param; ZeRO-3 would be "
               "16 B/param / processes) + activations of one micro-batch at full length ({prompt} prompt tokens + "
               "max new tokens); inference: 2 B/param / tensor parallel + KV cache of one full-length sequence; vLLM "
               "reserves {util:.0%} of a GPU.")


@dataclass
class StagePlan:
    name: str
    status: str  # the runner's: done / partial / stale / todo
    runs: str
    processes: int
    gpus: int
    memory: str
    peak_gb: float | None = None  # per GPU (RAM on CPU); None when unknown
    problems: list[str] = field(default_factory=list)  # each "cause. Fix: ..."


def _server_args(cfg: PipelineConfig) -> list[str]:
    cmd = (cfg.server or {}).get("command", "")
    return shlex.split(cmd) if isinstance(cmd, str) else [str(a) for a in cmd]


def _train_sections(cfg: PipelineConfig) -> list[dict[str, Any]]:
    return [cfg.section("sft"), cfg.section("rl"), (cfg.warm_start or {}).get("sft") or {}]


def _uses_gpus(cfg: PipelineConfig) -> bool:
    """A training config runs on a GPU when one is visible; the plan describes the run the config is written for,
    not this host: GPUs when the config asks for one (vLLM, SGLang, CUDA_VISIBLE_DEVICES, fp16, a cuda backend
    device), else CPU. Read from the YAML as written: a built config holds what THIS host resolved."""
    text = " ".join(_server_args(cfg)) + json.dumps((cfg.server or {}).get("env", {}))
    return (bool(cfg.section("rl").get("use_vllm")) or any(w in text for w in ("vllm", "sglang", "CUDA_VISIBLE"))
            or any(bool(s.get("fp16")) for s in _train_sections(cfg))
            or str(cfg.backend_options.get("device", "")).startswith("cuda"))


def _flag(args: list[str], names: tuple[str, ...], default: float) -> float:
    """The value of ``--name N`` or ``--name=N`` in a command line."""
    for i, arg in enumerate(args):
        key, eq, val = arg.partition("=")
        if key in names and (eq or i + 1 < len(args)):
            try:
                return float(val if eq else args[i + 1])
            except ValueError:  # e.g. a placeholder: the plan cannot know the value
                return default
    return default


def _served(cfg: PipelineConfig, model: str, arch: Arch | None, max_new: int, gpu_gb: float) -> StagePlan:
    """A generating stage with ``server:``: the command template filled in, replicas x tensor parallel GPUs."""
    spec = cfg.server_spec()
    args = _server_args(cfg)
    values = {"model": model, "gguf": f"<GGUF of {model}>", "port": "<port>", "host": spec.host,
              "replica": "<replica>", "python": "python"}
    command = spec.command if isinstance(spec.command, str) else shlex.join(map(str, spec.command))
    env = "".join(f"{k}={str(v).format(**values)} " for k, v in spec.env.items())
    plan = StagePlan("", "", f"{spec.replicas} x `{env}{command.format(**values)}` (started and stopped by the "
                     "pipeline)", 1 + spec.replicas, 0, "unknown model size")
    if not any(e in " ".join(args) for e in ("vllm", "sglang")) and "CUDA_VISIBLE_DEVICES" not in spec.env:
        if arch:  # a CPU server (llama.cpp): the GGUF's weights (Q8_0: 8.5 bits/param) and one sequence's KV
            plan.peak_gb = (1.0625 * arch.params + arch.kv_bytes(PROMPT_TOKENS + max_new)) / GB
            plan.memory = f"~{plan.peak_gb:.1f} GiB RAM per server for a Q8_0 GGUF (f32: ~4x the weights)"
        return plan
    tp = int(_flag(args, ("--tensor-parallel-size", "--tensor_parallel_size", "-tp"), 1))
    plan.gpus = spec.replicas * tp
    if arch is None:
        return plan
    util = _flag(args, ("--gpu-memory-utilization", "--gpu_memory_utilization"), VLLM_UTILIZATION)
    context = int(_flag(args, ("--max-model-len", "--max_model_len"), arch.context))
    need = vllm_need(arch, tp, context)
    plan.peak_gb = util * gpu_gb
    plan.memory = (f"tensor parallel {tp}: {gb(2 * arch.params / tp)}/GPU weights + "
                   f"{gb(arch.kv_bytes(context) / tp)} KV of one {context:,}-token sequence; vLLM reserves "
                   f"{util * gpu_gb:.0f} GiB/GPU")
    if need > util * gpu_gb * GB:
        tp_ok = min_tp(arch, util * gpu_gb, context)
        fix = f"--tensor-parallel-size {tp_ok} (or more) in server.command" if tp_ok else "a smaller model"
        plan.problems.append(f"the inference server needs {gb(need)}/GPU for the {arch.params / 1e9:.1f}B-parameter "
                             f"model at tensor parallel {tp}, more than the {util * gpu_gb:.0f} GiB vLLM may use. "
                             f"Fix: {fix}, or --max-model-len to shorten its sequences")
    return plan


def _generation(cfg: PipelineConfig, model: str, arch: Arch | None, max_new: int, gpu_gb: float) -> StagePlan:
    """How a generating stage runs ``model``: servers it starts, an external server, or an in-process engine."""
    from ..backends import resolve_kind

    if cfg.server is not None:
        return _served(cfg, model, arch, max_new, gpu_gb)
    kind, opts = resolve_kind(cfg.backend), cfg.backend_options
    if kind == "openai":
        from ..backends.openai_http import default_endpoint

        url = default_endpoint(opts.get("base_url"), "")[0]
        return StagePlan("", "", f"OpenAI-compatible server at {url} (not started by the pipeline; "
                         f"it must serve {model})", 1, 0, "client only")
    if kind == "llamacpp":
        slots, ctx = int(opts.get("parallel", 32)), int(opts.get("ctx_per_slot", 2048))
        plan = StagePlan("", "", f"llama-server ({opts.get('outtype', 'q8_0')} GGUF of {model}, {slots} slots)",
                         2, 0, "unknown model size")
        weights, kv_tokens, elem = 1.0625, slots * ctx, 2
    else:  # hf / ct2, in the pipeline's process
        gpu = str(opts.get("device", "auto")).startswith("cuda") or (opts.get("device", "auto") == "auto"
                                                                     and _uses_gpus(cfg))
        plan = StagePlan("", "", f"{kind} backend in-process on {'a GPU' if gpu else 'CPU'} ({model})", 1, int(gpu),
                         "unknown model size")
        elem = 1 if kind == "ct2" else 2 if gpu else 4
        weights, kv_tokens = elem, int(opts.get("batch_size", 16)) * (PROMPT_TOKENS + max_new)
    if arch:
        plan.peak_gb = (weights * arch.params + arch.kv_bytes(kv_tokens, elem)) / GB
        plan.memory = f"~{plan.peak_gb:.1f} GiB {'per GPU' if plan.gpus else 'RAM'}"
    return plan


def _generation_note(cfg: PipelineConfig, tc: Any) -> str:
    if not tc.use_vllm:
        return "transformers generate (use_vllm: false)"
    if tc.vllm_mode == "colocate":
        return (f"vLLM colocated on the training GPU (gpu_memory_utilization {tc.vllm_gpu_memory_utilization:g}, "
                f"tensor parallel {tc.vllm_tensor_parallel_size})")
    return (f"vLLM server mode at {tc.vllm_server_base_url or '0.0.0.0:8000 (TRL default)'}, NOT started by the "
            f"pipeline: start it first on {tc.vllm_tensor_parallel_size} other GPU(s) with `trl vllm-serve --model "
            f"{cfg.model} --tensor-parallel-size {tc.vllm_tensor_parallel_size}` (TRL pushes the policy's weights)")


def _training(cfg: PipelineConfig, kind: str, tc: Any, raw: dict[str, Any], base: str, arch: Arch | None,
              gpu_gb: float) -> StagePlan:
    """A TRL run (in-process or launched), and whether it fits its GPUs. ``tc``: the built stage config; ``raw``:
    its YAML section, for what the built config resolved on this host (use_cpu, bf16, activation checkpointing)."""
    gpu = not raw.get("use_cpu") and _uses_gpus(cfg)
    rl, server = kind == "GRPO", kind == "GRPO" and tc.use_vllm and tc.vllm_mode == "server"
    colocate = rl and tc.use_vllm and tc.vllm_mode == "colocate"
    spec = cfg.launcher_spec()
    procs = spec.num_processes if spec.kind == "accelerate" else 1
    sharded = procs > 1 and any(w in Path(spec.config_file or "").name for w in ("zero3", "fsdp"))
    where = (f"in-process on {'one GPU' if gpu else 'CPU'} (1 process, no sharding)" if spec.kind == "inprocess" else
             f"under accelerate launch on {procs} process(es){' (GPUs)' if gpu else ' on CPU'}, "
             f"{'sharded (' + Path(spec.config_file or '').name + ')' if sharded else 'data-parallel, unsharded'}")
    runs = (f"{kind} of {base} via TRL {'GRPOTrainer' if rl else 'SFTTrainer'} {where}"
            + (f"; generation: {_generation_note(cfg, tc)}" if rl else ""))
    plan = StagePlan("", "", runs, procs + int(server),
                     int(gpu) * procs + (tc.vllm_tensor_parallel_size if server else 0), "unknown model size")
    if arch is None:
        return plan
    bf16 = gpu and raw.get("bf16") is not False and not raw.get("fp16")  # unset bf16 = auto: bf16 on a GPU
    elem = 2 if bf16 else 4
    state = arch.params * (elem + 0.16 if tc.lora else 4 * elem)  # LoRA: frozen weights + ~1% trained at 16 B
    state = state / procs if sharded else state
    ref = arch.params * elem if rl and tc.beta > 0 else 0.0  # beta > 0 loads a reference model
    seq = PROMPT_TOKENS + tc.max_completion_length if rl else tc.max_length or 4096
    ckpt = raw.get("activation_checkpointing", raw.get("gradient_checkpointing"))
    ckpt = gpu if ckpt is None else bool(ckpt)
    act = activations(arch, tc.per_device_train_batch_size * seq, elem, ckpt, sft=not rl)
    share = tc.vllm_gpu_memory_utilization * gpu_gb * GB if colocate else 0.0
    total = state + ref + act + share
    plan.peak_gb = total / GB
    plan.memory = (f"~{gb(total)}{'/GPU' if gpu else ' RAM'}: weights+grads+optimizer {gb(state)}"
                   + (f" + reference model {gb(ref)}" if ref else "")
                   + f" + activations {gb(act)} ({tc.per_device_train_batch_size} x {seq:,} tokens)"
                   + (f" + vLLM share {gb(share)}" if share else ""))
    context = int(getattr(tc, "vllm_max_model_length", None) or arch.context)
    if server:
        need = vllm_need(arch, tc.vllm_tensor_parallel_size, context)
        plan.memory += f"; vLLM server {gb(need)}/GPU at tensor parallel {tc.vllm_tensor_parallel_size}"
        if need > VLLM_UTILIZATION * gpu_gb * GB:
            tp = min_tp(arch, VLLM_UTILIZATION * gpu_gb, context) or "N"
            plan.problems.append(f"a vLLM server at tensor parallel {tc.vllm_tensor_parallel_size} needs "
                                 f"{gb(need)}/GPU for this model. Fix: start it with --tensor-parallel-size {tp} "
                                 f"and set rl.vllm_tensor_parallel_size: {tp}")
    if colocate:
        plan.problems += _colocate_problems(arch, tc, gpu_gb, context, seq, procs)
    usable = (gpu_gb - RESERVED_GB) * GB
    if gpu and total > usable:
        now = (f"sharded over {procs} processes" if sharded else f"data-parallel on {procs} processes, unsharded"
               if spec.kind == "accelerate" else "in the pipeline's own process, unsharded")
        plan.problems.append(_shard_fix(kind, arch, ref, act, share, gpu_gb, total, now))
    return plan


def _colocate_problems(arch: Arch, tc: Any, gpu_gb: float, context: int, seq: int, procs: int = 1) -> list[str]:
    tp, util = tc.vllm_tensor_parallel_size, tc.vllm_gpu_memory_utilization
    if tp > 1 and procs % tp:  # TRL groups the training processes into vLLM instances of tp ranks each
        return [f"vllm_mode: colocate at vllm_tensor_parallel_size: {tp} needs a multiple of {tp} training processes "
                f"(one vLLM instance per {tp} ranks); this stage trains on {procs}. Fix: launcher: {{kind: "
                f"accelerate, num_processes: {tp}}} (or a multiple), or vllm_mode: server with a vLLM server of tensor "
                f"parallel {tp} (`trl vllm-serve --model ... --tensor-parallel-size {tp}`), or "
                "vllm_tensor_parallel_size: 1"]
    need = vllm_need(arch, tp, context)
    if need <= util * gpu_gb * GB:
        return []
    cause = (f"vLLM colocated on the training GPU gets {util:g} x {gpu_gb:g} GiB = {util * gpu_gb:.0f} GiB, but the "
             f"{arch.params / 1e9:.1f}B-parameter model needs {gb(need)} there at tensor parallel {tp} (bf16 weights "
             f"{gb(2 * arch.params)} + KV cache of one {context:,}-token sequence), next to the policy being trained")
    if vllm_need(arch, 1, seq) <= util * gpu_gb * GB:
        fix = f"set rl.vllm_max_model_length: {seq} (prompt + max_completion_length)"
    elif 2 * arch.params + GB <= (VLLM_UTILIZATION * gpu_gb - 1) * GB:
        fix = (f"raise rl.vllm_gpu_memory_utilization to {vllm_need(arch, 1, seq) / (gpu_gb * GB):.2f} with "
               f"rl.vllm_max_model_length: {seq}, or use vllm_mode: server")
    else:
        tp_ok = min_tp(arch, VLLM_UTILIZATION * gpu_gb, context)
        fix = (f"set rl.vllm_mode: server and generate on a separate vLLM server of tensor parallel >= {tp_ok} (`trl "
               f"vllm-serve --model ... --tensor-parallel-size {tp_ok}`, rl.vllm_tensor_parallel_size: {tp_ok}), or "
               "use a smaller model" if tp_ok else "use a smaller model")
    return [f"{cause}. Fix: {fix}"]


def _shard_fix(kind: str, arch: Arch, ref: float, act: float, share: float, gpu_gb: float, total: float,
               now: str = "in the pipeline's own process, unsharded") -> str:
    """Refusal of a run larger than one GPU, with the ZeRO-3 process counts that would fit it."""
    usable = (gpu_gb - RESERVED_GB) * GB

    def processes(bytes_per_param: float) -> int | None:  # smallest power of two whose shard fits beside the rest
        return next((n for n in (2 ** i for i in range(1, 10))
                     if (bytes_per_param * arch.params + ref) / n + act + share <= usable), None)

    n, n_offload = processes(16), processes(4)  # offload_optimizer_device: cpu keeps only bf16 weights + grads
    how = (f"on >= {n} GPUs" if n else "") + (" or " if n and n_offload else "") + (
        f"on >= {n_offload} GPUs with offload_optimizer_device: cpu" if n_offload else "")
    how = how or "(activations alone nearly fill a GPU: shorten the micro-batch)"
    lora = arch.params * 2.16 + act + share <= usable
    return (f"{kind} runs {now}: one GPU would hold ~{gb(total)} for the "
            f"{arch.params / 1e9:.1f}B-parameter model, more than the {gpu_gb - RESERVED_GB:g} GiB usable of one "
            f"{gpu_gb:g} GiB GPU. Fix: train it under accelerate with DeepSpeed ZeRO-3 {how}: in the pipeline YAML "
            f"`launcher: {{kind: accelerate, num_processes: {n or 8}, config_file: "
            f"configs/accelerate/deepspeed_zero3.yaml}}` (see configs/accelerate/README.md)"
            + (", or set lora: true" if lora else ""))


def _stage_plan(cfg: PipelineConfig, name: str, title: str, arch: Arch | None, gpu_gb: float) -> StagePlan:
    """What stage ``name`` runs; its models are named as the stages will pass them (checkpoint directories)."""
    from ..clone import CloneConfig
    from ..evaluate import EvalConfig
    from ..search import SearchConfig
    from ..train.trl_configs import RLStageConfig, SFTStageConfig

    base = "<warm-start checkpoint>" if cfg.warm_start is not None else cfg.model
    parts = name.split("-")  # e.g. sft-astro, eval-rl-astro-checkpoints
    ckpt = str(cfg.run_dir_path / "-".join(parts[1:3]) / "model")  # the model of stage parts[1]-parts[2]
    paths = {"model": cfg.model, "output_dir": "x"}  # placeholders: the plan needs the other settings
    if name == "warm-start":
        raw = cfg.warm_start.get("sft") or {}
        sft = build_config(SFTStageConfig, {**raw, **paths, "data": "x"}, where="warm_start.sft")
        plan = _training(cfg, "SFT", sft, raw, cfg.model, arch, gpu_gb)
        plan.runs += "; then evaluates its checkpoints on validation problems" if cfg.warm_start.get("select") else ""
        return plan
    if parts[0] in ("sft", "rl"):
        section = cfg.section(parts[0])
        tc = (build_config(SFTStageConfig, {**section, **paths, "data": "x"}, where="sft") if parts[0] == "sft" else
              build_config(RLStageConfig, {**section, **paths, "prompts": "x"}, where="rl"))
        start = base if parts[0] == "sft" else str(cfg.run_dir_path / f"sft-{parts[1]}" / "model")
        return _training(cfg, "SFT" if parts[0] == "sft" else "GRPO", tc, section, start, arch, gpu_gb)
    if name == "search":
        max_new = build_config(SearchConfig, cfg.section("search"), where="search").max_rollout_tokens
        model = base
    elif parts[0] == "clone":
        clone = build_config(CloneConfig, {**cfg.section("clone"), "mode": parts[1]}, where="clone")
        if not clone.uses_lm:
            return StagePlan(name, "", f"{title}: from the search trees, no model", 1, 0, "negligible")
        max_new, model = clone.rewrite_max_tokens or 2048, base
    elif parts[0] == "filter":
        max_new = int(cfg.section("rl_filter").get("max_tokens", 2048))
        model = str(cfg.run_dir_path / f"sft-{parts[1]}" / "model")
    elif parts[0] == "eval":
        max_new = build_config(EvalConfig, {**cfg.section("eval"), "datasets": ["x"]}, where="eval").max_tokens
        model = base if parts[1] == "base" else ckpt + ("/checkpoint-<N>" if name.endswith("-checkpoints") else "")
    else:  # data, analysis, report: files in, files out
        return StagePlan(name, "", title, 1, 0, "negligible")
    plan = _generation(cfg, model, arch, max_new, gpu_gb)
    plan.runs = f"{title}: {plan.runs}"
    return plan


def plan_stages(cfg: PipelineConfig, gpu_gb: float = DEFAULT_GPU_GB) -> list[StagePlan]:
    """One StagePlan per stage of the graph, in order; what cannot fit is in ``problems``, not raised."""
    from .stages import build_graph

    graph = build_graph(cfg)  # validates every section; writes nothing
    arch = architecture(cfg.model)
    plans = []
    for name, stage in graph.stages.items():
        plan = _stage_plan(cfg, name, stage.title, arch, gpu_gb)
        plan.name, plan.status = name, graph.status(name)
        if plan.status == "done":  # skipped when the pipeline runs: nothing of it has to fit
            plan.problems = []
        plans.append(plan)
    return plans


def refusals(plans: list[StagePlan]) -> list[str]:
    """Each distinct problem once, prefixed with the stages it concerns."""
    stages: dict[str, list[str]] = {}
    for p in plans:
        for text in p.problems:
            stages.setdefault(text, []).append(p.name)
    return [f"{', '.join(names)}: {text}" for text, names in stages.items()]


def refuse(plans: list[StagePlan]) -> None:
    """Raise ConfigError listing every problem (cause and fix) of ``plans``, if there is any."""
    problems = refusals(plans)
    if problems:
        raise ConfigError("this pipeline cannot fit:\n" + "\n".join(f"- {p}" for p in problems))


def plan(cfg: PipelineConfig, gpu_gb: float = DEFAULT_GPU_GB) -> list[StagePlan]:
    """The plan of ``cfg``; raises ConfigError (cause and fix of each problem) when a setting cannot fit."""
    plans = plan_stages(cfg, gpu_gb)
    refuse(plans)
    return plans


def format_plan(cfg: PipelineConfig, plans: list[StagePlan], gpu_gb: float = DEFAULT_GPU_GB) -> str:
    arch = architecture(cfg.model)
    size = f"{arch.params / 1e9:.2f}B parameters ({arch.source})" if arch else "size unknown (no config.json on disk)"
    lines = [f"Plan for {cfg.model}, {size}; run directory {cfg.run_dir}",
             ASSUMPTIONS.format(gpu=gpu_gb, reserved=RESERVED_GB, prompt=PROMPT_TOKENS, util=VLLM_UTILIZATION), ""]
    for p in plans:
        lines += [f"{p.name} [{p.status}]{'  REFUSED' if p.problems else ''}", f"    runs: {p.runs}",
                  f"    uses: {p.processes} process(es), {p.gpus} GPU(s); memory {p.memory}"]
    lines.append(f"\nAt most {max(p.gpus for p in plans)} GPU(s) in one stage.")
    return "\n".join(lines)
