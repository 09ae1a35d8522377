"""End to end: `astro pipeline` on the tiny random Llama runs every stage, writes the five-row table, skips
finished stages on a re-run, and resumes after being killed mid-stage.

The fixture first teaches the tiny model the answer format (pipeline_helpers), so every stage has real work.
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

from astro_reasoner.cli import main
from pipeline_helpers import build_format_tuned_tiny, pipeline_config

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def format_tuned_tiny(tiny_model_dir, tmp_path_factory) -> Path:
    return build_format_tuned_tiny(tiny_model_dir, tmp_path_factory.mktemp("format"))


def _config(tmp: Path, model: Path) -> Path:
    return pipeline_config(tmp, model)


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
    assert "| ASTRO-RL − Direct-RL |" in table and "RL signal" in table and "acc. % at 0" in table
    assert (run / "report" / "report.html").stat().st_size > 1000
    assert list((run / "eval-rl-astro-checkpoints").glob("checkpoint-*/summary.json"))
    # a re-run skips every finished stage
    t0 = time.time()
    assert main(["pipeline", str(cfg)]) == 0
    assert time.time() - t0 < 30
    # `about:` (what the numbers mean) heads the table; changing it redoes the report only
    assert main(["pipeline", str(cfg), "about=A tiny random model, so these numbers test the plumbing only."]) == 0
    assert (run / "report" / "results.md").read_text().startswith("A tiny random model, so these numbers")
    assert (run / "report.stale-1").exists() and not (run / "analysis.stale-1").exists()
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
