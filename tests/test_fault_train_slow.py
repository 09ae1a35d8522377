"""Fault injection with the tiny random Llama (issue 14): SIGKILL at seeded random points of SFT, RL (GRPO)
and the pipeline, five times each, then the same command to the end.

SFT and RL resume from their last checkpoint (save_steps=1): the finished run must have every step exactly
once in its logs and the same final weights as an uninterrupted run. The pipeline (data -> search -> clone on
the raw tiny model) must finish with no tree lost or written twice and no finished stage redone.

Slow tier: each kill restarts a Python that imports torch and TRL (~10 s on a busy 2-core machine).
``python tests/test_fault_train_slow.py sft|rl OUT MODEL DATA`` is the child.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fault_helpers import env, kill_when

TESTS = Path(__file__).resolve().parent
TRIALS = 5
MAX_STEPS = 8
pytestmark = pytest.mark.slow


def _sft_cfg(out: str, model: str, data: str):
    from astro_reasoner.train.config import SFTStageConfig

    return SFTStageConfig(model=model, data=data, output_dir=out, learning_rate=3e-3, max_steps=MAX_STEPS,
                          per_device_train_batch_size=4, logging_steps=1, save_steps=1, report_to="none",
                          max_length=256, threads=1)


def _rl_cfg(out: str, model: str, prompts: str):
    from astro_reasoner.train.config import RLStageConfig

    return RLStageConfig(model=model, prompts=prompts, output_dir=out, learning_rate=1e-3, max_steps=MAX_STEPS,
                         per_device_train_batch_size=8, max_completion_length=8, report_to="none", save_steps=1,
                         checker_workers=1, threads=1)


def child(argv: list[str]) -> int:
    stage, out, model, data = argv
    if stage == "sft":
        from astro_reasoner.train.sft import run_sft

        run_sft(data, out, _sft_cfg(out, model, data))
    else:
        from astro_reasoner.train.grpo import run_grpo

        run_grpo(data, out, _rl_cfg(out, model, data))
    return 0


def _checkpoints(out: Path) -> int:
    """The latest checkpoint's step (old ones are deleted, so their count says nothing)."""
    steps = [int(p.name.rsplit("-", 1)[1]) for p in out.glob("checkpoint-*")] if out.exists() else []
    return max(steps, default=0)


def _kill_trials(cmd: list[str], progress, rng: random.Random, cap: int) -> dict:
    """Kill ``cmd`` TRIALS times: once ``progress()`` has grown by a random 0-1 (never beyond ``cap``, so
    that the run is still going), plus a random delay: in start-up, mid-step, or while checkpointing."""
    report = {"kills": 0, "progress_at_kill": []}
    for _ in range(TRIALS):
        target = min(progress() + rng.randint(0, 1), cap)
        killed, code, err = kill_when(cmd, lambda t=target: progress() >= t, rng, max_wait=300, poll=0.05,
                                      max_delay=0.5)
        report["kills"] += killed
        assert code in (0, -signal.SIGKILL), err
        report["progress_at_kill"].append(progress())
    return report


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]


def _max_weight_diff(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    return max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa)


def _me(*args) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *map(str, args)]


@pytest.fixture(scope="module")
def sft_model(tiny_model_dir, tmp_path_factory) -> tuple[Path, Path]:
    """The tiny model after a short SFT on "\\boxed{3}"/"\\boxed{5}" answers (so RL rewards vary), and RL data."""
    from train_helpers import short_answer_rl, short_answer_sft

    from astro_reasoner.train.sft import run_sft

    d = tmp_path_factory.mktemp("fault-train")
    cfg = _sft_cfg(str(d / "sft"), str(tiny_model_dir), str(short_answer_sft(d / "sft.jsonl")))
    run_sft(cfg.data, cfg.output_dir, cfg.with_changes(max_steps=30, learning_rate=1e-2, save_steps=1000,
                                                       logging_steps=10))
    return d / "sft", short_answer_rl(d / "rl.jsonl")


def test_sft_survives_sigkill_at_random_points(tiny_model_dir, tmp_path):
    from train_helpers import write_sft

    from astro_reasoner.io import read_json

    data = write_sft(tmp_path / "sft.jsonl")
    ref, out = tmp_path / "ref", tmp_path / "killed"
    _run(_me("sft", ref, tiny_model_dir, data))
    cmd = _me("sft", out, tiny_model_dir, data)
    report = _kill_trials(cmd, lambda: _checkpoints(out), random.Random(17), MAX_STEPS - 3)
    _run(cmd)
    summary, ref_summary = read_json(out / "train_summary.json"), read_json(ref / "train_summary.json")
    diff = _max_weight_diff(ref, out)
    print(f"\n[fault] sft: trials={TRIALS} kills={report['kills']} checkpoints at each kill="
          f"{report['progress_at_kill']} final step={summary['global_step']} max |w - w_ref|={diff:.2e}")
    assert report["kills"] >= 3 and summary["global_step"] == ref_summary["global_step"] == MAX_STEPS
    assert diff < 1e-5  # resumed from its checkpoints, the run ends where an uninterrupted one does


def test_rl_survives_sigkill_at_random_points(sft_model, tmp_path):
    from astro_reasoner.io import read_json, read_jsonl

    model, prompts = sft_model
    ref, out = tmp_path / "ref", tmp_path / "killed"
    _run(_me("rl", ref, model, prompts))
    cmd = _me("rl", out, model, prompts)
    report = _kill_trials(cmd, lambda: _checkpoints(out), random.Random(18), MAX_STEPS - 3)
    _run(cmd)
    steps = [r["step"] for r in read_jsonl(out / "metrics.jsonl")]
    completions = [c["step"] for c in read_jsonl(out / "completions.jsonl")]
    ref_completions = [c["step"] for c in read_jsonl(ref / "completions.jsonl")]
    diff = _max_weight_diff(ref, out)
    lost = len(set(ref_completions) - set(completions))
    dup = len(completions) - len(ref_completions)
    print(f"\n[fault] rl: trials={TRIALS} kills={report['kills']} checkpoints at each kill="
          f"{report['progress_at_kill']} metric steps={steps} completion records={len(completions)} "
          f"(uninterrupted {len(ref_completions)}) lost steps={lost} extra records={dup} max |w - w_ref|={diff:.2e}")
    assert report["kills"] >= 3 and read_json(out / "train_summary.json")["global_step"] == MAX_STEPS
    assert steps == list(range(1, MAX_STEPS + 1))  # every step logged once
    assert sorted(completions) == sorted(ref_completions) and lost == 0 and dup == 0
    assert diff < 1e-4


def test_pipeline_survives_sigkill_at_random_points(tiny_model_dir, tmp_path):
    """data -> search -> clone on the raw tiny model, killed five times at random moments."""
    import yaml

    from astro_reasoner.search import load_trees

    def config(run: Path) -> Path:
        cfg = {"run_dir": str(run), "seed": 0, "model": str(tiny_model_dir), "backend": "hf",
               "backend_options": {"threads": 1},
               "data": {"train": {"synth": {"steps": 1, "n": 8, "seed": 0}},
                        "test": {"synth": {"steps": 1, "n": 2, "seed": 1}}},
               "modes": ["astro"],
               "search": {"iterations": 2, "k": 2, "rollouts": 1, "max_depth": 3, "max_step_tokens": 8,
                          "max_rollout_tokens": 12, "few_shot": 0, "batch_size": 4, "max_active_trees": 1}}
        path = run.parent / f"{run.name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    ref, run = tmp_path / "ref", tmp_path / "killed"
    astro = [sys.executable, "-m", "astro_reasoner.cli", "pipeline"]
    _run([*astro, str(config(ref)), "--until", "clone-astro"])
    cmd = [*astro, str(config(run)), "--until", "clone-astro"]
    trees = run / "search" / "trees.jsonl"

    def progress() -> int:
        return trees.read_bytes().count(b"\n") if trees.exists() else 0

    report = _kill_trials(cmd, progress, random.Random(19), 6)
    _run(cmd)
    ids = [t.problem_id for t in load_trees(run / "search")]
    ref_ids = [t.problem_id for t in load_trees(ref / "search")]
    lost, dup = len(set(ref_ids) - set(ids)), len(ids) - len(set(ids))
    done = {p.parent.name: json.loads(p.read_text())["key"] for p in run.glob("*/_done.json")}
    ref_done = {p.parent.name: json.loads(p.read_text())["key"] for p in ref.glob("*/_done.json")}
    # Byte equality of the re-searched trees needs seeds that do not depend on the wave (issue 14 item 7,
    # another change); here: nothing lost, nothing twice, every stage finished with the same key.
    same = sorted(ids) == sorted(ref_ids)
    print(f"\n[fault] pipeline: trials={TRIALS} kills={report['kills']} trees at each kill="
          f"{report['progress_at_kill']} lost={lost} duplicated={dup} same ids={same}")
    assert report["kills"] >= 3 and lost == 0 and dup == 0 and same
    assert done == ref_done and set(done) == {"data", "search", "clone-astro"}
    assert not list(run.glob("*.stale-*"))  # an interrupted stage resumed in place, never moved aside


if __name__ == "__main__":
    sys.path.insert(0, str(TESTS))
    raise SystemExit(child(sys.argv[1:]))
