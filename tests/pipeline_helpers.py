"""Shared by the pipeline tests: the tiny model taught the answer format, and a small pipeline config."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import yaml

# The llama.cpp server as the pipeline starts it for each checkpoint: llama.cpp's C++ llama-server (`make setup`
# builds it; tests that start it call llama_server_command(), which fails with that fix when it is missing). One
# thread: tests share 2 cores; one slot and no prompt cache: reproducible outputs (see backends/openai_http.py).
LLAMA_SERVER_ARGS = ("--model {gguf} --alias {model} --host {host} --port {port} -t 1 -tb 1 -c 2048 -np 1 "
                     "--no-cache-prompt --no-webui")


def _llama_server_exe() -> str | None:
    from astro_reasoner.backends.llamacpp import find_llama_server

    return find_llama_server()


# the command template as a constant, for tests that only read it (e.g. --plan); the binary need not exist
LLAMA_SERVER = f"{shlex.quote(_llama_server_exe() or 'llama-server')} {LLAMA_SERVER_ARGS}"


def llama_server_command() -> str:
    """The ``server.command`` template running the ``llama-server`` that ``make setup`` builds (fails the
    test, naming the fix, when there is none)."""
    from backend_helpers import require_llama_server

    return f"{shlex.quote(require_llama_server())} {LLAMA_SERVER_ARGS}"


def build_format_tuned_tiny(tiny_model_dir: Path, tmp: Path) -> Path:
    """A random model never writes ``\\boxed{}``, so search would find no correct terminal and there would be
    nothing to clone: a short SFT on synthetic one-step problems (our own ``run_sft``) teaches the format."""
    from astro_reasoner.data import synthesize
    from astro_reasoner.io import write_jsonl
    from astro_reasoner.prompts import PromptConfig, problem_messages
    from astro_reasoner.train import SFTStageConfig, run_sft

    rows = [{"problem_id": p.id, "prompt": problem_messages(p.problem, PromptConfig(few_shot=0)),
             "completion": [{"role": "assistant", "content": p.meta["solution"]}]}
            for p in synthesize(steps=1, n=64, seed=123, ops="+", min_value=1, max_value=4)]
    write_jsonl(tmp / "sft.jsonl", rows)
    cfg = SFTStageConfig(model=str(tiny_model_dir), data=str(tmp / "sft.jsonl"), output_dir=str(tmp / "m"),
                         max_steps=120, learning_rate=3e-3, per_device_train_batch_size=8,
                         lr_scheduler_type="constant", logging_steps=20, save_steps=1000,
                         report_to="none", max_length=512, threads=1)
    return Path(run_sft(cfg.data, cfg.output_dir, cfg)["checkpoint"])


def pipeline_config(tmp: Path, model: Path, **top: Any) -> Path:
    cfg = {
        "run_dir": str(tmp / "run"),
        "seed": 0,
        "model": str(model),
        "backend": "hf",
        "backend_options": {"threads": 1},
        "data": {"train": {"synth": {"steps": 1, "n": 6, "seed": 0, "ops": "+", "min_value": 1, "max_value": 4}},
                 "test": {"synth": {"steps": 1, "n": 3, "seed": 1, "ops": "+", "min_value": 1, "max_value": 4}}},
        "search": {"iterations": 3, "k": 3, "rollouts": 2, "max_depth": 4, "max_step_tokens": 64,
                   "max_rollout_tokens": 128, "few_shot": 0, "early_stop_correct": 1, "early_stop_wrong": 1},
        "clone": {"max_backtracks": 1},
        "sft": {"max_steps": 2, "per_device_train_batch_size": 2, "max_length": 512, "report_to": "none",
                "threads": 1},
        "rl_filter": {"n": 2, "max_tokens": 96, "min_kept": 100},
        "rl": {"max_steps": 2, "num_generations": 2, "per_device_train_batch_size": 2, "max_completion_length": 96,
               "save_steps": 1, "save_total_limit": None, "report_to": "none", "logging_steps": 1, "threads": 1},
        "eval": {"n": 2, "k": 2, "max_tokens": 96, "bootstrap": 50, "temperature": 1.0},
    }
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict) and key != "backend_options":
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    path = tmp / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path

