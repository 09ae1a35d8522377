"""`astro pipeline CONFIG --plan`: what each stage runs, its processes, GPUs and memory, and refusals of settings
that cannot fit (issue 15). Fast: nothing is loaded, downloaded or started."""

from __future__ import annotations

import json

import pytest

from astro_reasoner.cli import main
from astro_reasoner.config import ConfigError
from astro_reasoner.io import write_json
from astro_reasoner.pipeline.config import load_pipeline_config
from astro_reasoner.pipeline.plan import format_plan, plan, plan_stages, refusals
from astro_reasoner.pipeline.sizing import architecture
from astro_reasoner.pipeline.stages import build_graph
from conftest import REPO
from pipeline_helpers import LLAMA_SERVER, pipeline_config

CONFIGS = REPO / "configs"
TRAINING = ("sft-direct", "sft-astro", "rl-direct", "rl-astro")


def _load(name: str, tmp_path, *overrides: str):
    return load_pipeline_config(CONFIGS / name, [f"run_dir={tmp_path / 'run'}", *overrides])


def _by_name(plans):
    return {p.name: p for p in plans}


@pytest.mark.parametrize("model, params", [("smollm2-135m", 134.5e6), ("meta-llama/Llama-3.1-8B-Instruct", 8.03e9),
                                           ("meta-llama/Llama-3.1-70B-Instruct", 70.55e9)])
def test_parameter_counts_of_the_configs_models(model, params):
    assert architecture(model).params == pytest.approx(params, rel=0.005)


def test_parameter_count_from_a_local_config_json(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
        "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 131072}))
    arch = architecture(str(tmp_path))
    assert arch.params == pytest.approx(8.03e9, rel=0.005) and arch.source == str(tmp_path / "config.json")
    assert architecture("someone/unknown-model") is None


def test_demo_plans_on_cpu_in_one_process(tmp_path):
    cfg = _load("demo.yaml", tmp_path)
    plans = _by_name(plan(cfg))
    assert list(plans) == list(build_graph(cfg).stages)
    assert all(p.gpus == 0 for p in plans.values())
    for name in TRAINING:
        assert plans[name].processes == 1 and "in-process on CPU" in plans[name].runs
        assert 0.5 < plans[name].peak_gb < 20  # a 135M model: 2.2 GiB of state + activations of 4 x ~1k tokens
    assert plans["search"].peak_gb < 5
    assert "0.13B parameters" in format_plan(cfg, list(plans.values()))


def test_70b_recipe_generates_on_tensor_parallel_8_servers(tmp_path):
    plans = _by_name(plan_stages(_load("llama3.1-70b.yaml", tmp_path)))
    for name in ("search", "filter-astro", "eval-rl-astro"):
        assert "--tensor-parallel-size 8" in plans[name].runs and plans[name].gpus == 8 and not plans[name].problems
    assert f"vllm serve {tmp_path / 'run' / 'rl-astro' / 'model'}" in plans["eval-rl-astro"].runs
    rl = plans["rl-astro"]
    assert "vLLM server mode" in rl.runs and "trl vllm-serve" in rl.runs and "--tensor-parallel-size 8" in rl.runs
    assert "accelerate launch on 32 process(es)" in rl.runs and "deepspeed_zero3" in rl.runs
    assert rl.gpus == 32 + 8  # ZeRO-3 training on 32 GPUs + the 8 of the vLLM server
    assert not refusals(plans.values())  # the recipe fits: sharded training, generation on a TP-8 server


def test_70b_recipe_trained_in_one_process_is_refused_with_the_launcher_fix(tmp_path):
    plans = _by_name(plan_stages(_load("llama3.1-70b.yaml", tmp_path, "launcher={kind: inprocess}")))
    problems = refusals(plans.values())
    assert problems and all("pipeline's own process" in p and "ZeRO-3" in p for p in problems)
    assert {n for n, p in plans.items() if p.problems} == set(TRAINING)


def test_8b_recipe_generates_on_8_single_gpu_servers_and_trains_sharded_on_8(tmp_path):
    plans = _by_name(plan_stages(_load("llama3.1-8b.yaml", tmp_path)))
    assert plans["search"].gpus == 8 and "CUDA_VISIBLE_DEVICES=<replica> vllm serve" in plans["search"].runs
    assert not plans["sft-astro"].problems and plans["sft-astro"].gpus == 8
    assert "vLLM colocated" in plans["rl-astro"].runs
    assert not refusals(plans.values())


def test_8b_recipe_in_one_process_fits_sft_but_not_grpo(tmp_path):
    plans = _by_name(plan_stages(_load("llama3.1-8b.yaml", tmp_path, "launcher={kind: inprocess}")))
    assert not plans["sft-astro"].problems and plans["sft-astro"].gpus == 1
    assert [n for n, p in plans.items() if p.problems] == ["rl-direct", "rl-astro"]
    assert "colocated" not in " ".join(plans["rl-astro"].problems)  # vllm_max_model_length fits vLLM's share
    cfg = _load("llama3.1-8b.yaml", tmp_path, "launcher={kind: inprocess}", "rl.vllm_mode=server",
                "rl.per_device_train_batch_size=1")
    assert _by_name(plan(cfg))["rl-astro"].gpus == 2


def test_70b_grpo_colocated_at_tensor_parallel_1_is_refused_with_cause_and_fix(tmp_path):
    cfg = _load("llama3.1-70b.yaml", tmp_path, "rl.vllm_mode=colocate", "rl.vllm_tensor_parallel_size=1")
    with pytest.raises(ConfigError) as err:
        plan(cfg)
    msg = str(err.value)
    assert "rl-direct, rl-astro: vLLM colocated on the training GPU" in msg and "70.6B-parameter model" in msg
    assert "next to the policy being trained" in msg
    assert "Fix: set rl.vllm_mode: server" in msg and "--tensor-parallel-size 4" in msg


def test_colocate_with_tensor_parallel_needs_more_training_processes(tmp_path):
    plans = plan_stages(_load("llama3.1-70b.yaml", tmp_path, "rl.vllm_mode=colocate", "launcher={kind: inprocess}"))
    assert any("vllm_tensor_parallel_size: 8 needs a multiple of 8 training processes" in p and "trains on 1" in p
               and "num_processes: 8" in p for p in refusals(plans))
    plans = plan_stages(_load("llama3.1-70b.yaml", tmp_path, "rl.vllm_mode=colocate"))  # 32 processes: 4 x TP 8
    assert not any("needs a multiple of" in p for p in refusals(plans))


def test_a_server_too_small_for_the_model_is_refused(tmp_path):
    cfg = _load("llama3.1-70b.yaml", tmp_path,
                "server.command=vllm serve {model} --served-model-name {model} --port {port}")
    problems = refusals(plan_stages(cfg))
    assert any(p.startswith("search, clone-direct") and "tensor parallel 1" in p and "--tensor-parallel-size 4" in p
               for p in problems)


def test_finished_stages_are_not_refused(tmp_path):
    cfg = _load("llama3.1-70b.yaml", tmp_path, "launcher={kind: inprocess}")
    graph = build_graph(cfg)
    for name in ("sft-direct", "sft-astro"):
        write_json(graph.out_dir(name) / "_done.json", {"key": graph.key(name)})
    plans = _by_name(plan_stages(cfg))
    assert plans["sft-astro"].status == "done" and not plans["sft-astro"].problems
    assert plans["rl-astro"].problems


def test_cli_plan_prints_and_writes_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["pipeline", str(CONFIGS / "demo.yaml"), f"run_dir={run}", "--plan"]) == 0
    out = capsys.readouterr().out
    assert "sft-astro [todo]" in out and "Assumptions:" in out and "0 GPU(s)" in out
    assert not run.exists()


def test_cli_plan_refuses_with_cause_and_fix(tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["pipeline", str(CONFIGS / "llama3.1-70b.yaml"), f"run_dir={run}", "rl.vllm_mode=colocate",
                 "rl.vllm_tensor_parallel_size=1", "--plan", "--gpu-memory", "141"])
    captured = capsys.readouterr()
    assert code == 1 and "rl-astro [todo]  REFUSED" in captured.out and "141 GiB GPUs" in captured.out
    assert "error: this pipeline cannot fit" in captured.err and "Fix: set rl.vllm_mode: server" in captured.err
    assert not run.exists()


def _small_model(tmp_path):
    """A config.json is all the plan reads of a checkpoint."""
    model = tmp_path / "small"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({
        "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
        "num_key_value_heads": 3, "vocab_size": 49152, "tie_word_embeddings": True, "max_position_embeddings": 8192}))
    return model


@pytest.mark.parametrize("top, expect", [
    ({"backend": "hf"}, "hf backend in-process on CPU"),
    ({"backend": "openai", "backend_options": {"base_url": "http://gpu1:8000/v1"}}, "not started by the pipeline"),
    ({"backend": "openai", "backend_options": {}, "server": {"command": LLAMA_SERVER}}, "--model <GGUF of "),
])
def test_cpu_engines_are_planned_without_gpus(tmp_path, top, expect):
    cfg = load_pipeline_config(pipeline_config(tmp_path, _small_model(tmp_path), **top))
    plans = _by_name(plan(cfg))
    assert expect in plans["eval-rl-direct"].runs and all(p.gpus == 0 for p in plans.values())
    assert str(tmp_path / "run" / "rl-direct" / "model") in plans["eval-rl-direct"].runs
