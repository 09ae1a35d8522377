"""Write ``trl_configs.json``: the TRL config (``to_dict()``) that the training code builds for each packaged recipe.

Made ONCE, at commit e2d60b7 (before issue 13 made SFTStageConfig / RLStageConfig subclasses of TRL's configs), by
the code path of that commit: ``resolve_runtime`` -> ``common_trl_kwargs`` (+ the SFT / GRPO fields) ->
``build_trl_config``. ``tests/test_trl_golden.py`` checks that the refactored configs build the same
TrainingArguments, so the refactor changes no training run. This script runs only on that commit (it imports
the mapping functions the refactor removed); it is kept to show how the golden file was made:

    git worktree add /tmp/e2d60b7 e2d60b7 && cd /tmp/e2d60b7 && \
        PYTHONPATH=src python tests/golden/dump_trl_configs.py > trl_configs.json

Each recipe section (``sft``, ``rl``, ``warm_start.sft``) is built as the pipeline builds it (pipeline seed;
model / data / prompts / out_dir fixed to placeholders) on three simulated hosts:

- ``cpu-fp32``: no GPU, a CPU without native bfloat16 (``precision: auto`` -> fp32)
- ``cpu-bf16``: no GPU, a CPU with AMX / AVX512-BF16 (``precision: auto`` -> bf16 autocast)
- ``gpu-bf16``: a CUDA GPU with bfloat16 (simulated: only the checks that read the GPU are patched)

A section the code refuses on a host (vLLM on CPU) records ``{"refused": message}``.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from unittest import mock

REPO = Path(__file__).resolve().parents[2]
HOSTS = ("cpu-fp32", "cpu-bf16", "gpu-bf16")
PATHS = {"model": "m", "data": "d.jsonl", "prompts": "p.jsonl", "out_dir": "out"}


def sections(path: Path) -> dict[str, tuple[str, dict, int]]:
    """``{section name: (kind, values, seed)}`` of one recipe, read as the pipeline reads it."""
    from astro_reasoner.pipeline.config import load_pipeline_config

    cfg = load_pipeline_config(path, [])
    out = {"sft": ("sft", cfg.section("sft"), cfg.seed), "rl": ("rl", cfg.section("rl"), cfg.seed)}
    if cfg.warm_start is not None and cfg.warm_start.get("sft") is not None:
        out["warm_start.sft"] = ("sft", dict(cfg.warm_start["sft"]), cfg.seed)
    return out


def host(name: str):
    """Patch what the e2d60b7 code reads about the machine."""
    import torch

    from astro_reasoner.train import common

    stack = contextlib.ExitStack()
    stack.enter_context(mock.patch.object(common, "_cpu_has_bf16", lambda: name == "cpu-bf16"))
    if name == "gpu-bf16":
        stack.enter_context(mock.patch.object(torch.cuda, "is_available", lambda: True))
        stack.enter_context(mock.patch.object(torch.cuda, "is_bf16_supported", lambda *a, **k: True))
    return stack


def build(kind: str, values: dict, seed: int, host_name: str) -> dict:
    import transformers.training_args as ta
    from trl import GRPOConfig, SFTConfig

    from astro_reasoner.config import ConfigError, build_config
    from astro_reasoner.train.common import build_trl_config, common_trl_kwargs, resolve_runtime
    from astro_reasoner.train.config import RLStageConfig, SFTStageConfig
    from astro_reasoner.train.grpo import grpo_trl_kwargs

    cls = SFTStageConfig if kind == "sft" else RLStageConfig
    fixed = {k: PATHS[k] for k in ("model", "out_dir", "data" if kind == "sft" else "prompts")}
    cfg = build_config(cls, {**values, **fixed, "seed": seed}, where=kind)
    try:
        with host(host_name):
            rt = resolve_runtime(cfg, use_vllm=getattr(cfg, "use_vllm", False))
    except ConfigError as exc:
        return {"refused": str(exc)}
    if kind == "sft":
        ours = common_trl_kwargs(cfg, rt) | dict(max_length=cfg.max_length, packing=cfg.packing,
                                                  completion_only_loss=cfg.completion_only_loss,
                                                  assistant_only_loss=False)
        trl_cls = SFTConfig
    else:
        ours, trl_cls = common_trl_kwargs(cfg, rt) | grpo_trl_kwargs(cfg), GRPOConfig
    # a GPU host: TrainingArguments' own bf16 check passes (the device itself stays this machine's CPU)
    patch = mock.patch.object(ta, "is_torch_bf16_gpu_available", lambda: True) if host_name == "gpu-bf16" else \
        contextlib.nullcontext()
    with patch:
        args = build_trl_config(trl_cls, ours, cfg.trl_args)
    return json.loads(json.dumps(args.to_dict(), default=str))


def main() -> None:
    import importlib.metadata as md

    out = {"made_with": {"commit": "e2d60b7", **{p: md.version(p) for p in ("transformers", "trl", "torch")},
                         "tensorboard_installed": importlib_has("tensorboard")},
           "paths": PATHS, "hosts": {}}
    for host_name in HOSTS:
        per = out["hosts"][host_name] = {}
        for path in sorted((REPO / "configs").glob("*.yaml")):
            per[path.stem] = {sec: build(kind, values, seed, host_name)
                              for sec, (kind, values, seed) in sections(path).items()}
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


def importlib_has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    main()
