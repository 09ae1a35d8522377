"""`backend: openai` with a `server:` section: every generating stage runs on a llama.cpp server started for
*its own* checkpoint (search and eval-base: the base model; the filter and eval-sft: the SFT checkpoint; eval-rl
and the intermediate-checkpoint evals: the RL checkpoints), converted to GGUF on the way; a server that does
not serve the requested model is refused with the list of what it serves; a server killed mid-search is
restarted and the stage resumes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from astro_reasoner.cli import main
from astro_reasoner.pipeline.runner import stage_stats
from pipeline_helpers import build_format_tuned_tiny, llama_server_command, pipeline_config

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def format_tuned_tiny(tiny_model_dir, tmp_path_factory) -> Path:
    llama_server_command()  # fails at once, naming the fix, without a llama-server binary
    return build_format_tuned_tiny(tiny_model_dir, tmp_path_factory.mktemp("format"))


def _samples(eval_dir: Path) -> list[str]:
    return [json.loads(line)["text"] for line in (eval_dir / "samples.jsonl").read_text().splitlines()]


def _served(log: Path) -> list[str]:
    """The --alias of every server start recorded in a server log."""
    return re.findall(r"starting: .*--alias (\S+)", log.read_text())


def test_each_checkpoint_is_evaluated_by_a_server_running_that_checkpoint(format_tuned_tiny, tmp_path):
    cfg = pipeline_config(tmp_path, format_tuned_tiny, backend="openai", backend_options={"concurrency": 2},
                          server={"command": llama_server_command()}, modes=["direct"],
                          sft={"learning_rate": 1e-3})  # a checkpoint that really differs from its base
    assert main(["pipeline", str(cfg)]) == 0
    run = tmp_path / "run"
    sft, rl = (stage_stats(run / s)["checkpoint"] for s in ("sft-direct", "rl-direct"))
    expected = {"search": str(format_tuned_tiny), "eval-base": str(format_tuned_tiny), "filter-direct": sft,
                "eval-sft-direct": sft, "eval-rl-direct": rl}
    for stage, model in expected.items():
        assert _served(run / stage / "server-logs" / "server-0.log") == [model], stage
        assert Path(model, "model-f32.gguf").is_file()  # converted once, next to the checkpoint
    ckpt_logs = sorted((run / "eval-rl-direct-checkpoints").glob("checkpoint-*/server-logs/server-0.log"))
    assert ckpt_logs and all(_served(p) == [str(Path(rl, p.parts[-3]))] for p in ckpt_logs)
    base, tuned = _samples(run / "eval-base"), _samples(run / "eval-sft-direct")
    assert len(base) == len(tuned) == 6 and base != tuned  # same prompts and seeds, another model
    assert json.loads((run / "report" / "results.json").read_text())["rows"]


def test_a_server_serving_another_model_is_refused(format_tuned_tiny, tiny_model_dir, tmp_path, capsys):
    from astro_reasoner.backends.server import ModelServer, ServerSpec
    from astro_reasoner.data import synthesize, write_problems

    write_problems(tmp_path / "p.jsonl", synthesize(steps=1, n=1, seed=0))
    with ModelServer(ServerSpec(command=llama_server_command()), str(format_tuned_tiny), tmp_path / "logs") as srv:
        code = main(["eval", "--model", str(tiny_model_dir), "--backend", "openai", "-b", f"base_url={srv.urls[0]}",
                     "--datasets", str(tmp_path / "p.jsonl"), "--n", "1", "--k", "1", "--out", str(tmp_path / "ev"),
                     "max_tokens=8"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert f"does not serve model '{tiny_model_dir}'; it serves: {format_tuned_tiny}." in err
    assert err.count("error:") == 1 and "Traceback" not in err


def test_a_server_killed_mid_search_is_restarted_and_the_stage_resumes(format_tuned_tiny, tmp_path):
    cfg = pipeline_config(tmp_path, format_tuned_tiny, backend="openai",
                          backend_options={"concurrency": 1, "max_retries": 2, "backoff": 0.2},
                          server={"command": llama_server_command()}, modes=["direct"],
                          data={"train": {"synth": {"steps": 1, "n": 12, "seed": 0, "ops": "+", "min_value": 1,
                                                    "max_value": 4}}},
                          search={"max_active_trees": 1})
    run = tmp_path / "run"
    log = run / "search" / "server-logs" / "server-0.log"
    proc = subprocess.Popen([sys.executable, "-m", "astro_reasoner.cli", "pipeline", str(cfg), "--until", "search"],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        trees = run / "search" / "trees.jsonl"
        while time.monotonic() < deadline and proc.poll() is None and \
                not (trees.exists() and len(trees.read_text().splitlines()) >= 2):
            time.sleep(0.2)
        assert proc.poll() is None, "the search finished before the server could be killed"
        done_before = trees.read_text().splitlines()
        pid = int(re.findall(r"--- pid (\d+)", log.read_text())[-1])
        os.killpg(pid, signal.SIGKILL)  # the server process group the pipeline started (its own session)
        out, _ = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-3000:]
    assert "died" in text and "restarting it (1/2)" in text
    assert len(re.findall(r"--- pid ", log.read_text())) == 2  # started, then restarted once
    lines = trees.read_text().splitlines()
    assert lines[: len(done_before)] == done_before  # finished trees kept byte for byte
    ids = [json.loads(x)["problem_id"] for x in lines]
    assert len(ids) == len(set(ids)) == 12  # every problem exactly once
