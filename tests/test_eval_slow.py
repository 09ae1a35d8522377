"""`astro eval` with the real SmolLM2-135M on slices of the real MATH-500 / AIME24 files and a synthetic set,
killed with SIGKILL mid-run and resumed (slow: minutes on 2 CPU cores)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

pytestmark = pytest.mark.slow


def _astro(*args: str) -> list[str]:
    return [sys.executable, "-m", "astro_reasoner.cli", *args]


def _lines(path) -> int:
    return path.read_text().count("\n") if path.exists() else 0


def test_smollm2_eval_real_benchmarks_survives_sigkill(data_dir, tmp_path):
    from astro_reasoner.data import synthesize, write_problems

    synth = tmp_path / "synth2.jsonl"
    write_problems(synth, synthesize(steps=2, n=2, seed=0))
    out = tmp_path / "eval"
    # One problem per backend call (batch_size=1) so that a kill lands between appended records.
    cmd = _astro("eval", "--model", "smollm2-135m", "--backend", "hf", "--data-dir", str(data_dir),
                 "--datasets", f"math500,aime24,{synth}", "--limit", "2", "--n", "2", "--k", "2", "--out", str(out),
                 "max_tokens=48", "few_shot=1", "batch_size=1", "bootstrap=200", "-b", "threads=1")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # 2 threads on a busy 2-core box: ~10x slower
    t0 = time.time()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    samples = out / "samples.jsonl"
    while _lines(samples) < 2 and proc.poll() is None and time.time() - t0 < 900:
        time.sleep(0.2)
    assert proc.poll() is None, f"eval ended before it could be killed:\n{proc.stdout.read()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = _lines(samples)
    assert 2 <= killed_at < 12
    first = [json.loads(x) for x in samples.read_text().splitlines() if x.strip()][:2]

    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1500)
    wall = time.time() - t0
    assert res.returncode == 0, res.stdout + res.stderr
    recs = [json.loads(x) for x in samples.read_text().splitlines() if x.strip()]
    keys = Counter((r["dataset"], r["problem_id"], r["sample"]) for r in recs)
    assert len(keys) == 12 and set(keys.values()) == {1}  # 3 datasets x 2 problems x 2 samples, no duplicates
    assert recs[:2] == first
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["datasets"]) == {"math500", "aime24", "synth2"}
    assert summary["run"]["new_samples"] == 12 - killed_at
    for m in summary["datasets"].values():
        assert m["problems"] == 2 and m["samples"] == 4 and 0 <= m["pass@1"] <= 1
        assert m["mean_tokens"] > 0
    assert all(r["verdict"] in ("correct", "wrong", "unparseable") for r in recs)
    print(f"\nSmolLM2 eval: 12 samples, killed after {killed_at}, total wall {wall:.0f}s; "
          + ", ".join(f"{d} pass@1={m['pass@1']:.2f}" for d, m in summary["datasets"].items()))


@pytest.mark.server
def test_eval_through_a_llama_cpp_server(tmp_path):
    """The same command with ``--backend openai`` against a real OpenAI-compatible server (llama.cpp's
    ``llama-server``)."""
    from backend_helpers import llama_server, smollm2_gguf

    from astro_reasoner.cli import main
    from astro_reasoner.data import synthesize, write_problems

    synth = tmp_path / "synth2.jsonl"
    write_problems(synth, synthesize(steps=2, n=2, seed=1))
    out = tmp_path / "eval-openai"
    with llama_server(smollm2_gguf(), tmp_path / "server.log") as url:
        argv = ["eval", "--model", "smollm2-135m", "--backend", "openai", "-b", f"base_url={url}", "-b",
                "concurrency=2", "--datasets", str(synth), "--n", "2", "--k", "2", "--out", str(out),
                "max_tokens=32", "few_shot=1", "bootstrap=100"]
        assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["backend"] == "openai" and summary["datasets"]["synth2"]["samples"] == 4
    recs = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert len(recs) == 4 and all(0 < r["tokens"] <= 32 for r in recs)
    assert len({r["text"] for r in recs}) > 1  # sampled, not one answer copied
