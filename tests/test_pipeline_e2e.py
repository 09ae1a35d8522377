"""End to end: `astro pipeline` on the tiny random Llama runs every stage, writes the five-row table, skips
finished stages on a re-run, and resumes after being killed mid-stage.

A random model never writes `\\boxed{}`, so search would find no correct terminal and there would be nothing
to clone. The fixture first teaches the tiny model the answer format with a short SFT on synthetic
one-step problems (our own `run_sft`), so every stage has real work to do.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from astro_reasoner.cli import main

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def format_tuned_tiny(tiny_model_dir, tmp_path_factory) -> Path:
    from astro_reasoner.data import synthesize
    from astro_reasoner.io import write_jsonl
    from astro_reasoner.prompts import PromptConfig, problem_messages
    from astro_reasoner.train import SFTStageConfig, run_sft

    tmp = tmp_path_factory.mktemp("format")
    rows = [{"problem_id": p.id, "prompt": problem_messages(p.problem, PromptConfig(few_shot=0)),
             "completion": [{"role": "assistant", "content": p.meta["solution"]}]}
            for p in synthesize(steps=1, n=64, seed=123, ops="+", min_value=1, max_value=4)]
    write_jsonl(tmp / "sft.jsonl", rows)
    out = run_sft(SFTStageConfig(model=str(tiny_model_dir), data=str(tmp / "sft.jsonl"), out_dir=str(tmp / "m"),
                                 max_steps=120, learning_rate=3e-3, per_device_train_batch_size=8,
                                 lr_scheduler_type="constant", logging_steps=20, save_steps=1000,
                                 report_to="none", max_length=512, threads=1))
    return Path(out)


def _config(tmp: Path, model: Path) -> Path:
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
    path = tmp / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_pipeline_end_to_end_then_skip(format_tuned_tiny, tmp_path):
    cfg = _config(tmp_path, format_tuned_tiny)
    assert main(["pipeline", str(cfg)]) == 0
    run = tmp_path / "run"
    results = json.loads((run / "report" / "results.json").read_text())
    assert [r["row"] for r in results["rows"]] == ["base", "Direct-SFT", "ASTRO-SFT", "Direct-RL", "ASTRO-RL"]
    for r in results["rows"]:
        assert r["datasets"]["test"]["pass@1"] is not None
    table = (run / "report" / "results.md").read_text()
    assert "ASTRO-RL" in table and "Compute per stage" in table
    assert (run / "report" / "report.html").stat().st_size > 1000
    assert list((run / "eval-rl-astro-checkpoints").glob("checkpoint-*/summary.json"))
    # a re-run skips every finished stage
    t0 = time.time()
    assert main(["pipeline", str(cfg)]) == 0
    assert time.time() - t0 < 30
    # --force redoes a stage and its dependents only
    assert main(["pipeline", str(cfg), "--force", "analysis"]) == 0
    assert (run / "analysis.stale-1").exists() and not (run / "search.stale-1").exists()


def test_pipeline_resumes_after_kill(format_tuned_tiny, tmp_path):
    cfg = _config(tmp_path, format_tuned_tiny)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "astro_reasoner.cli", "pipeline", str(cfg)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    run = tmp_path / "run"
    deadline = time.time() + 300
    while time.time() < deadline and not (run / "sft-direct" / "_started.json").exists():
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {p.parent.name for p in run.glob("*/_done.json")}
    assert "search" in done_before and "sft-direct" not in done_before
    mtimes = {name: (run / name / "_done.json").stat().st_mtime for name in done_before}
    assert main(["pipeline", str(cfg)]) == 0
    for name, m in mtimes.items():  # finished work was not redone
        assert (run / name / "_done.json").stat().st_mtime == m
    results = json.loads((run / "report" / "results.json").read_text())
    assert len(results["rows"]) == 5
