"""Real model: SmolLM2-135M-Instruct SFT for a few steps, reload with the hf backend, generate, then 2 GRPO steps.

Data: ``ASTRO_SFT_JSONL`` / ``ASTRO_RL_JSONL`` if set (e.g. the clone stage's output of a real search);
otherwise a small sft.jsonl built here from GSM8K-train reference solutions (one step per line, final
answer boxed) and an rl.jsonl of other GSM8K-train problems. Wall times are printed and written to
``train_timings.json`` in the test's tmp dir. Threads: OMP_NUM_THREADS=1 from conftest (on these shared
2-core machines a second thread mostly competes with other jobs); pass threads=N in the configs to change it.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from astro_reasoner.io import read_jsonl, write_json, write_jsonl
from astro_reasoner.prompts import PromptConfig, problem_messages

pytestmark = pytest.mark.slow
PROMPT = PromptConfig(few_shot=0)
_CALC = re.compile(r"<<[^>]*>>")  # GSM8K calculator annotations


def gsm8k_sft(data_dir: Path, path: Path, n: int) -> Path:
    rows = []
    for rec in list(read_jsonl(data_dir / "gsm8k_train.jsonl"))[:n]:
        steps = [_CALC.sub("", line).strip() for line in rec["solution"].split("\n") if line.strip()]
        cot = "\n\n".join(steps) + f"\n\nThe answer is \\boxed{{{rec['answer']}}}."
        rows.append({"problem_id": rec["id"], "prompt": problem_messages(rec["problem"], PROMPT),
                     "completion": [{"role": "assistant", "content": cot}]})
    write_jsonl(path, rows)
    return path


def gsm8k_rl(data_dir: Path, path: Path, start: int, n: int) -> Path:
    recs = list(read_jsonl(data_dir / "gsm8k_train.jsonl"))[start:start + n]
    write_jsonl(path, [{"problem_id": r["id"], "prompt": problem_messages(r["problem"], PROMPT),
                        "answer": r["answer"]} for r in recs])
    return path


def test_smollm2_sft_reload_generate_then_grpo(data_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from astro_reasoner.backends import make_backend
    from astro_reasoner.models import resolve_model
    from astro_reasoner.train.config import RLStageConfig, SFTStageConfig
    from astro_reasoner.train.grpo import run_grpo
    from astro_reasoner.train.sft import run_sft
    from astro_reasoner.types import GenParams

    times: dict[str, float] = {}
    t0 = time.perf_counter()
    base = resolve_model("smollm2-135m")  # the GGUF rebuilt once as a plain, trainable HF checkpoint
    times["resolve_model"] = time.perf_counter() - t0
    sft_data = Path(os.environ.get("ASTRO_SFT_JSONL") or gsm8k_sft(data_dir, tmp_path / "sft.jsonl", 8))
    rl_data = Path(os.environ.get("ASTRO_RL_JSONL") or gsm8k_rl(data_dir, tmp_path / "rl.jsonl", 100, 4))

    sft = SFTStageConfig(model="smollm2-135m", data=str(sft_data), output_dir=str(tmp_path / "sft"), max_steps=3,
                         per_device_train_batch_size=2, learning_rate=2e-5, max_length=1024, logging_steps=1,
                         report_to="none")
    t0 = time.perf_counter()
    sft_dir = run_sft(sft.data, sft.output_dir, sft)["checkpoint"]
    times["sft_3_steps"] = time.perf_counter() - t0
    summary = json.loads((Path(sft_dir) / "train_summary.json").read_text())
    assert summary["global_step"] == 3 and len(summary["loss_history"]) == 3
    assert (Path(sft_dir) / "model.safetensors").exists() and (Path(sft_dir) / "chat_template.jinja").exists()

    t0 = time.perf_counter()
    policy = make_backend("hf", sft_dir)
    try:
        prompt = policy.apply_chat_template(problem_messages("What is 12 + 30?", PROMPT))
        out = policy.generate([prompt], GenParams(n=2, max_tokens=32, temperature=0.7, seed=0))
    finally:
        policy.close()
    times["hf_reload_and_generate"] = time.perf_counter() - t0
    assert len(out[0]) == 2 and all(c.text.strip() and c.tokens > 0 for c in out[0])

    rl = RLStageConfig(model=sft_dir, prompts=str(rl_data), output_dir=str(tmp_path / "rl"), max_steps=2,
                       per_device_train_batch_size=4, max_completion_length=48, learning_rate=1e-6,
                       report_to="none", save_steps=1, checker_workers=1)
    t0 = time.perf_counter()
    rl_dir = run_grpo(rl.prompts, rl.output_dir, rl)["checkpoint"]
    times["grpo_2_steps"] = time.perf_counter() - t0
    metrics = list(read_jsonl(Path(rl_dir) / "metrics.jsonl"))
    assert [m["step"] for m in metrics] == [1, 2]
    assert all("reflections_mean" in m and "length_mean" in m for m in metrics)

    before = AutoModelForCausalLM.from_pretrained(base).state_dict()
    after_sft = AutoModelForCausalLM.from_pretrained(sft_dir).state_dict()
    assert any(not torch.equal(before[k], after_sft[k]) for k in before)
    times["torch_threads"] = torch.get_num_threads()
    write_json(tmp_path / "train_timings.json", {"times": times, "sft_losses": summary["loss_history"],
                                                 "rl_metrics": metrics, "sample": out[0][0].text})
    print(json.dumps({"times": times, "sample": out[0][0].text[:200]}, indent=1))
