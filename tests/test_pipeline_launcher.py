"""The pipeline's ``launcher:`` setting (issue 15, item 1): training stages in-process or under
``accelerate launch`` (pipeline/launch.py)."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import pytest

from astro_reasoner.config import ConfigError, load_config, yaml_section
from astro_reasoner.io import read_json, write_json, write_jsonl
from astro_reasoner.pipeline.config import load_pipeline_config
from astro_reasoner.pipeline.launch import (LAUNCH_CONFIG, LAUNCH_LOG, LaunchError, LauncherSpec, launch_command,
                                            parse_launcher, run_launched, write_stage_config)
from astro_reasoner.pipeline.runner import DONE
from astro_reasoner.pipeline.stages import build_graph
from astro_reasoner.train import RLStageConfig, SFTStageConfig
from pipeline_helpers import pipeline_config

ACC = {"kind": "accelerate", "num_processes": 2}


@pytest.mark.parametrize("bad, match", [
    ({"kind": "torchrun"}, "not a launcher; use inprocess .* or accelerate"),
    ({"kind": "accelerate", "num_processes": 0}, "num_processes=0: must be a positive integer"),
    ({"kind": "accelerate", "num_processes": True}, "num_processes: expected an integer"),
    ({"kind": "inprocess", "num_processes": 2}, "only apply to kind: accelerate"),
    ({"kind": "accelerate", "config_file": "nope/none.yaml"}, "not found .* configs/accelerate/multi_gpu.yaml"),
    ({**ACC, "extra_args": ["--num_processes=4"]}, "set by the launcher; use launcher.num_processes"),
    ({**ACC, "main_process_port": 70000}, "TCP port"),
    ({**ACC, "gpus": 2}, "unknown key"),
    ("accelerate", "launcher: expected a mapping"),
])
def test_bad_launcher_fails_when_the_config_is_loaded(tmp_path, tiny_model_dir, bad, match):
    with pytest.raises(ConfigError, match=match):
        load_pipeline_config(pipeline_config(tmp_path, tiny_model_dir, launcher=bad))


def test_launch_command_line(tmp_path):
    cfg_path = tmp_path / "launch_config.yaml"
    cmd = launch_command(parse_launcher(ACC), "sft", cfg_path, port=29555)
    assert cmd == [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "1",
                   "--num_processes", "2", "--main_process_port", "29555", "-m", "astro_reasoner.cli", "sft",
                   "--config", str(cfg_path)]
    zero3 = "configs/accelerate/deepspeed_zero3.yaml"
    spec = LauncherSpec("accelerate", 8, zero3, ["--mixed_precision", "bf16"], main_process_port=29600)
    assert launch_command(spec, "rl", cfg_path)[3:] == [
        "--config_file", zero3, "--num_processes", "8", "--main_process_port", "29600", "--mixed_precision",
        "bf16", "-m", "astro_reasoner.cli", "rl", "train", "--config", str(cfg_path)]
    one = launch_command(LauncherSpec("accelerate"), "sft", cfg_path)  # one process: no port, no multi_gpu
    assert one[3:] == ["--num_processes", "1", "-m", "astro_reasoner.cli", "sft", "--config", str(cfg_path)]


@pytest.mark.parametrize("cls, fixed", [
    (SFTStageConfig, {"data": "x/sft.jsonl", "max_length": 384, "packing_strategy": "wrapped",
                      "save_total_limit": None, "warmup_steps": 0.1, "lr_scheduler_type": "linear"}),
    (RLStageConfig, {"prompts": "x/rl.jsonl", "num_generations": 2, "log_completions": True,
                     "gradient_accumulation_steps": 2, "bf16": False}),
])
def test_launch_config_reproduces_the_stage_config_exactly(tmp_path, cls, fixed):
    import yaml

    cfg = cls(model="m", output_dir=str(tmp_path / "model"), seed=3, **fixed)
    path = write_stage_config(cfg, tmp_path / LAUNCH_CONFIG)
    section = "sft" if cls is SFTStageConfig else "rl"
    assert load_config(cls, path, section=yaml_section(path, section)) == cfg  # what `astro sft|rl --config` reads
    # what was given, not what this process resolved: the launched ranks resolve device, precision and TRL's
    # derived values (generation_batch_size grows with the number of processes) themselves
    assert yaml.safe_load(path.read_text()) == {"model": "m", "output_dir": str(tmp_path / "model"), "seed": 3,
                                                **fixed}


def test_launcher_enters_training_keys_only_where_it_changes_outputs(tmp_path, tiny_model_dir):
    def keys(launcher):
        graph = build_graph(load_pipeline_config(pipeline_config(tmp_path, tiny_model_dir, launcher=launcher)))
        return {n: graph.key(n) for n in graph.stages}

    default, inproc, two = keys(None), keys({"kind": "inprocess"}), keys(ACC)
    assert default == inproc  # existing runs keep their keys
    changed = {n for n in default if default[n] != two[n]}
    assert {"sft-astro", "rl-astro", "eval-rl-astro", "filter-direct"} <= changed
    assert not changed & {"data", "search", "clone-astro", "eval-base"}
    ported = keys({**ACC, "main_process_port": 29999, "extra_args": ["--quiet"]})
    assert ported == two  # port, flags and logs do not change what is trained


def test_failed_launch_names_the_log_and_its_tail(tmp_path, monkeypatch):
    import astro_reasoner.pipeline.launch as launch

    script = "import sys; print('loading'); print('RuntimeError: boom', file=sys.stderr); sys.exit(3)"
    monkeypatch.setattr(launch, "launch_command", lambda *a, **k: [sys.executable, "-c", script])
    seen: list[str] = []
    cfg = SFTStageConfig(model="m", data="d.jsonl", output_dir=str(tmp_path / "model"))
    with pytest.raises(LaunchError, match=r"(?s)exited with code 3; full output in .*launch.log.*RuntimeError: boom"):
        run_launched(parse_launcher(ACC), "sft", cfg, tmp_path, echo=seen.append)
    assert "RuntimeError: boom\n" in seen and "boom" in (tmp_path / LAUNCH_LOG).read_text()
    assert (tmp_path / LAUNCH_CONFIG).exists()


# -- end to end: the warm-start SFT stage and a GRPO stage under `accelerate launch`, 2 CPU processes (gloo) ---
def _sft_rows(n: int) -> list[dict]:
    from astro_reasoner.data import synthesize
    from astro_reasoner.prompts import PromptConfig, problem_messages

    return [{"problem_id": p.id, "prompt": problem_messages(p.problem, PromptConfig(few_shot=0)),
             "completion": [{"role": "assistant", "content": p.meta["solution"]}]}
            for p in synthesize(steps=1, n=n, seed=7, ops="+", min_value=1, max_value=4)]


def _warm_start_run(tmp_path: Path, model: Path, launcher, per_device: int) -> tuple[dict, float]:
    """The warm-start stage (an SFT on a given JSONL, no upstream stage) of a tiny pipeline; 4 optimizer
    steps, effective batch 4 (``per_device`` x processes)."""
    write_jsonl(tmp_path / "ws.jsonl", _sft_rows(16))
    sft = {"max_steps": 4, "per_device_train_batch_size": per_device, "max_length": 256, "report_to": "none",
           "threads": 1, "logging_steps": 1, "save_steps": 2, "learning_rate": 1e-3}
    cfg = load_pipeline_config(pipeline_config(tmp_path, model, launcher=launcher,
                                               warm_start={"sft_data": str(tmp_path / "ws.jsonl"), "sft": sft}))
    t0 = time.time()
    res = build_graph(cfg).run(until="warm-start")
    return {r.name: r for r in res}["warm-start"].__dict__, time.time() - t0


@pytest.mark.e2e
def test_sft_stage_under_accelerate_two_cpu_processes_matches_one_process(tmp_path, tiny_model_dir):
    # DDP with 2 processes doubles the effective batch: per-device 2 x 2 processes = per-device 4 x 1 process
    two, t_two = _warm_start_run(tmp_path / "two", tiny_model_dir, ACC, per_device=2)
    one, t_one = _warm_start_run(tmp_path / "one", tiny_model_dir, None, per_device=4)
    stage = tmp_path / "two" / "run" / "warm-start"
    assert not two["skipped"] and two["stats"]["steps"] == one["stats"]["steps"] == 4
    assert two["stats"]["checkpoint"] == str(stage / "model")
    assert (stage / "model" / "model.safetensors").exists() and (stage / "model" / "checkpoint-2").is_dir()
    # the same 16 examples once each: the same tokens trained on, summed over both processes
    assert read_json(stage / DONE)["stats"]["trained_tokens"] == two["stats"]["trained_tokens"] > 0
    assert two["stats"]["trained_tokens"] == one["stats"]["trained_tokens"]
    summary = read_json(stage / "model" / "train_summary.json")
    assert summary["world_size"] == 2
    losses = [h["loss"] for h in summary["loss_history"]]
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)
    one_losses = [h["loss"] for h in read_json(tmp_path / "one" / "run" / "warm-start" / "model" /
                                               "train_summary.json")["loss_history"]]
    assert len(one_losses) == 4 and abs(losses[0] - one_losses[0]) < 0.5 * abs(one_losses[0])  # same model, data
    log_text = (stage / LAUNCH_LOG).read_text()
    assert "accelerate.commands.launch --multi_gpu --num_machines 1 --num_processes 2" in log_text
    assert (stage / LAUNCH_CONFIG).exists()
    print(f"\nwarm-start SFT, 4 steps: 2 processes {t_two:.1f}s, 1 process {t_one:.1f}s")
    again, _ = _warm_start_run(tmp_path / "two", tiny_model_dir, ACC, per_device=2)
    assert again["skipped"] and again["stats"] == two["stats"]


@pytest.mark.e2e
def test_grpo_stage_under_accelerate_two_cpu_processes(tmp_path, tiny_model_dir):
    from astro_reasoner.data import synthesize
    from astro_reasoner.prompts import PromptConfig, problem_messages

    path = pipeline_config(tmp_path, tiny_model_dir, modes=["astro"], launcher=ACC,
                           rl={"max_steps": 2, "num_generations": 2, "per_device_train_batch_size": 2,
                               "max_completion_length": 24, "save_steps": 1})
    graph = build_graph(load_pipeline_config(path))
    # the RL stage's inputs, as finished upstream stages: the SFT "checkpoint" (the tiny model) and the prompts
    for name in ("data", "search", "clone-astro", "sft-astro", "filter-astro"):
        stats = {"checkpoint": str(tiny_model_dir)} if name == "sft-astro" else {}
        write_json(graph.out_dir(name) / DONE, {"key": graph.key(name), "stats": stats})
    write_jsonl(graph.out_dir("filter-astro") / "rl.jsonl",
                [{"problem_id": p.id, "prompt": problem_messages(p.problem, PromptConfig(few_shot=0)),
                  "answer": p.answer} for p in synthesize(steps=1, n=4, seed=3, ops="+", min_value=1, max_value=4)])
    res = {r.name: r for r in graph.run(until="rl-astro")}["rl-astro"]
    model = graph.out_dir("rl-astro") / "model"
    assert not res.skipped and res.stats["steps"] == 2 and res.stats["checkpoint"] == str(model)
    assert (model / "model.safetensors").exists() and (model / "checkpoint-1").is_dir()
    assert (model / "completions.jsonl").exists() and (model / "completions.rank1.jsonl").exists()
    assert res.stats["tokens"] > 0 and read_json(graph.out_dir("rl-astro") / DONE)["stats"] == res.stats
    assert {r.name: r for r in build_graph(load_pipeline_config(path)).run(until="rl-astro")}["rl-astro"].skipped


def test_plan_shows_the_launcher_and_shards_memory_under_zero3(tmp_path):
    from astro_reasoner.pipeline.plan import plan_stages

    repo = Path(__file__).resolve().parents[1]
    zero3 = repo / "configs" / "accelerate" / "deepspeed_zero3.yaml"

    def sft_plan(n: int):
        cfg = load_pipeline_config(repo / "configs" / "llama3.1-70b.yaml", [
            f"run_dir={tmp_path / 'run'}", "launcher.kind=accelerate", f"launcher.num_processes={n}",
            f"launcher.config_file={zero3}"])
        return {p.name: p for p in plan_stages(cfg)}["sft-astro"]

    eight, many = sft_plan(8), sft_plan(32)
    assert eight.processes == eight.gpus == 8 and "under accelerate launch on 8 process(es)" in eight.runs
    assert "sharded (deepspeed_zero3.yaml)" in eight.runs
    assert eight.problems and "sharded over 8 processes" in eight.problems[0]
    assert "launcher: {kind: accelerate, num_processes: 32, config_file: configs/accelerate/deepspeed_zero3.yaml}" \
        in eight.problems[0]
    assert not many.problems and many.peak_gb < eight.peak_gb
