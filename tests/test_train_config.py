"""Training configs: validation, CPU choices, clear errors for GPU-only options, TRL pass-through, CLI."""

from __future__ import annotations

import pytest
from train_helpers import write_rl

from astro_reasoner.cli import main
from astro_reasoner.config import ConfigError, build_config, load_config
from astro_reasoner.train.config import FilterConfig, RLStageConfig, SFTStageConfig, parse_band

REQUIRED_SFT = {"model": "m", "data": "d.jsonl", "out_dir": "o"}
REQUIRED_RL = {"model": "m", "prompts": "p.jsonl", "out_dir": "o"}


def test_rl_defaults_follow_astro():
    cfg = build_config(RLStageConfig, REQUIRED_RL)
    assert (cfg.beta, cfg.loss_type, cfg.num_generations) == (0.0, "dapo", 4)
    assert (cfg.reward_correct, cfg.reward_wrong, cfg.reward_unparseable) == (1.0, -1.0, -1.0)


@pytest.mark.parametrize("cls,values,match", [
    (RLStageConfig, {**REQUIRED_RL, "num_generations": 1}, "num_generations=1"),
    (RLStageConfig, {**REQUIRED_RL, "loss_type": "token"}, "loss_type='token'"),
    (RLStageConfig, {**REQUIRED_RL, "epsilon_high": 0.1}, "epsilon_high"),
    (RLStageConfig, {**REQUIRED_RL, "vllm_mode": "remote"}, "vllm_mode"),
    (RLStageConfig, {"model": "m", "out_dir": "o"}, "pass --prompts"),
    (SFTStageConfig, {**REQUIRED_SFT, "packing": True, "max_length": None}, "packing=true needs a max_length"),
    (SFTStageConfig, {**REQUIRED_SFT, "precision": "fp8"}, "precision='fp8'"),
    (SFTStageConfig, {"data": "d", "out_dir": "o"}, "pass --model"),
    (FilterConfig, {"prompts": "p", "model": "m", "out": "o", "keep": "0.9-0.1"}, "LO <= HI"),
])
def test_invalid_settings_say_what_to_do(cls, values, match):
    with pytest.raises(ConfigError, match=match):
        build_config(cls, values)


def test_parse_band():
    assert parse_band("0.1-0.9") == (0.1, 0.9) and parse_band("0-1") == (0.0, 1.0)
    with pytest.raises(ConfigError):
        parse_band("half")


def test_cpu_runtime_is_chosen_automatically():
    import torch

    from astro_reasoner.train.common import resolve_runtime

    if torch.cuda.is_available():
        pytest.skip("checks the CPU choice")
    from astro_reasoner.train.common import _cpu_has_amx, _cpu_has_bf16

    rt = resolve_runtime(build_config(SFTStageConfig, REQUIRED_SFT))
    # auto: bf16 autocast over fp32 weights where the CPU has AMX, plain fp32 elsewhere
    want_bf16 = _cpu_has_bf16() and _cpu_has_amx()
    assert (rt.device, rt.use_cpu, rt.bf16, rt.fp16, rt.dtype) == ("cpu", True, want_bf16, False, "float32")
    rt = resolve_runtime(build_config(SFTStageConfig, {**REQUIRED_SFT, "precision": "fp32"}))
    assert (rt.bf16, rt.dtype) == (False, "float32")
    assert rt.activation_checkpointing is False  # off on CPU unless asked for


def test_auto_precision_on_cpu_takes_bf16_only_with_amx(monkeypatch):
    """AVX512-BF16 without AMX runs bf16 autocast slower than fp32 (measured 2x on a matmul): auto keeps fp32."""
    import torch

    from astro_reasoner.train import common

    if torch.cuda.is_available():
        pytest.skip("checks the CPU choice")
    cfg = build_config(SFTStageConfig, REQUIRED_SFT)
    monkeypatch.setattr(common, "_cpu_has_bf16", lambda: True)
    monkeypatch.setattr(common, "_cpu_has_amx", lambda: False)
    assert common.resolve_runtime(cfg).bf16 is False
    monkeypatch.setattr(common, "_cpu_has_amx", lambda: True)
    assert common.resolve_runtime(cfg).bf16 is True


@pytest.mark.parametrize("values,use_vllm,match", [
    ({"precision": "fp16"}, False, "precision=fp16 needs a CUDA GPU"),
    ({"device": "cuda"}, False, "no CUDA GPU is visible"),
    ({"trl_args": {"bf16": True}}, False, "trl_args sets bf16"),
    ({}, True, "use_vllm=true needs a CUDA GPU"),
])
def test_gpu_only_options_on_cpu_are_clear_errors(values, use_vllm, match):
    import torch

    from astro_reasoner.train.common import resolve_runtime

    if torch.cuda.is_available():
        pytest.skip("needs a machine without a GPU")
    with pytest.raises(ConfigError, match=match):
        resolve_runtime(build_config(RLStageConfig, {**REQUIRED_RL, **values}), use_vllm=use_vllm)


def test_bf16_on_cpu_needs_native_bfloat16(monkeypatch):
    """bf16 on CPU runs under autocast with fp32 master weights where the CPU has AMX/AVX512-BF16, and is
    refused with the reason where it would be emulated."""
    import torch

    from astro_reasoner.train import common

    if torch.cuda.is_available():
        pytest.skip("checks the CPU choice")
    cfg = build_config(RLStageConfig, {**REQUIRED_RL, "precision": "bf16"})
    monkeypatch.setattr(common, "_cpu_has_bf16", lambda: True)
    rt = common.resolve_runtime(cfg)
    assert (rt.device, rt.use_cpu, rt.bf16, rt.dtype) == ("cpu", True, True, "float32")
    monkeypatch.setattr(common, "_cpu_has_bf16", lambda: False)
    with pytest.raises(ConfigError, match="needs native bfloat16.*precision=auto"):
        common.resolve_runtime(cfg)


def test_trl_args_pass_through_and_typos_are_caught(tmp_path):
    from trl import GRPOConfig

    from astro_reasoner.train.common import build_trl_config, common_trl_kwargs, resolve_runtime
    from astro_reasoner.train.grpo import grpo_trl_kwargs

    cfg = build_config(RLStageConfig, {**REQUIRED_RL, "out_dir": str(tmp_path), "epsilon_high": 0.28, "precision": "fp32",
                                       "trl_args": {"top_k": 20, "model_init_kwargs": {"attn_implementation": "eager"}}})
    ours = common_trl_kwargs(cfg, resolve_runtime(cfg)) | grpo_trl_kwargs(cfg)
    args = build_trl_config(GRPOConfig, ours, cfg.trl_args)
    assert (args.beta, args.loss_type, args.num_generations, args.epsilon_high) == (0.0, "dapo", 4, 0.28)
    assert args.top_k == 20 and args.use_cpu and not args.bf16
    assert args.model_init_kwargs == {"dtype": "float32", "attn_implementation": "eager"}
    with pytest.raises(ConfigError, match="did you mean top_k"):
        build_trl_config(GRPOConfig, ours, {"topk": 20})
    with pytest.raises(ConfigError, match="set from our own config"):
        build_trl_config(GRPOConfig, ours, {"beta": 0.1})


def test_yaml_section_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("rl:\n  num_generations: 8\n  trl_args: {top_k: 5}\nsft:\n  lora: true\n")
    cfg = load_config(RLStageConfig, path, {**REQUIRED_RL, "learning_rate": "2e-6"}, section="rl")
    assert cfg.num_generations == 8 and cfg.learning_rate == 2e-6 and cfg.trl_args == {"top_k": 5}


@pytest.mark.parametrize("text", ["rl:\n  num_generations: 1\nsft:\n  lora: true\n", "num_generations: 1\n"])
def test_cli_config_file_section_or_whole_file(tmp_path, capsys, text):
    # The stage's section of a pipeline-style file, or the whole file when it has no such section.
    path = tmp_path / "c.yaml"
    path.write_text(text)
    code = main(["rl", "--config", str(path), "--prompts", "p.jsonl", "--model", "m", "--out", str(tmp_path / "o")])
    assert code == 1 and "num_generations=1: GRPO needs >= 2" in capsys.readouterr().err


def test_cli_rl_defaults_to_train_and_reports_config_errors(tmp_path, capsys, tiny_model_dir):
    prompts = write_rl(tmp_path / "rl.jsonl")
    # `astro rl ARGS` runs `astro rl train ARGS`: the key=value override reaches RLStageConfig.
    code = main(["rl", "--prompts", str(prompts), "--model", str(tiny_model_dir), "--out", str(tmp_path / "o"),
                 "num_generations=1"])
    assert code == 1 and "num_generations=1" in capsys.readouterr().err
    code = main(["rl", "--prompts", str(prompts), "--model", str(tiny_model_dir), "--out", str(tmp_path / "o"),
                 "precision=fp16"])
    err = capsys.readouterr().err
    assert code == 1 and "error: precision=fp16 needs a CUDA GPU" in err
    assert not (tmp_path / "o").exists()  # refused before anything was written
    code = main(["rl", "filter", "--prompts", str(prompts), "--model", "m", "--out", str(tmp_path / "k.jsonl"),
                 "--keep", "0.2"])
    assert code == 1 and "keep='0.2'" in capsys.readouterr().err
    code = main(["sft", "--data", str(prompts), "--model", "m", "--out", str(tmp_path / "s"), "nonsense=1"])
    assert code == 1 and "unknown key(s) nonsense" in capsys.readouterr().err


def test_group_size_must_divide_the_generation_batch(tmp_path, tiny_model_dir):
    from astro_reasoner.train.grpo import build_grpo_trainer

    cfg = build_config(RLStageConfig, {**REQUIRED_RL, "model": str(tiny_model_dir), "out_dir": str(tmp_path),
                                       "per_device_train_batch_size": 3})
    with pytest.raises(ConfigError, match="divisible by num_generations.*per_device_train_batch_size=4"):
        build_grpo_trainer(cfg, checker=None)


def test_our_loss_types_are_the_ones_trl_documents():
    """LOSS_TYPES is a copy (configs validate on construction without importing TRL); this fails when the
    installed TRL documents another set, so the copy cannot drift silently."""
    import dataclasses
    import re

    pytest.importorskip("trl")
    from trl import GRPOConfig

    from astro_reasoner.train.config import LOSS_TYPES

    help_text = {f.name: f.metadata.get("help", "") for f in dataclasses.fields(GRPOConfig)}["loss_type"]
    sentence = re.search(r"Supported values are (.*?)\.", help_text)
    assert sentence, "TRL's loss_type help changed its wording; compare LOSS_TYPES by hand"
    documented = set(re.findall(r"'(\w+)'", sentence.group(1)))
    assert documented == set(LOSS_TYPES), f"TRL documents {sorted(documented)}; update train/config.py LOSS_TYPES"
