"""Training configs (TRL's own classes): validation, CPU/GPU choices, clear errors for GPU-only options, run
identity, YAML and CLI."""

from __future__ import annotations

import pytest
from train_helpers import write_rl

from astro_reasoner.cli import main
from astro_reasoner.config import ConfigError, build_config, load_config
from astro_reasoner.train.config import FilterConfig, RLStageConfig, SFTStageConfig, parse_band

REQUIRED_SFT = {"model": "m", "data": "d.jsonl", "output_dir": "o"}
REQUIRED_RL = {"model": "m", "prompts": "p.jsonl", "output_dir": "o"}


def test_rl_defaults_follow_astro():
    cfg = build_config(RLStageConfig, REQUIRED_RL)
    assert (cfg.beta, cfg.loss_type, cfg.num_generations) == (0.0, "dapo", 4)
    assert (cfg.reward_correct, cfg.reward_wrong, cfg.reward_unparseable) == (1.0, -1.0, -1.0)


@pytest.mark.parametrize("cls,values,match", [
    (RLStageConfig, {**REQUIRED_RL, "num_generations": 1}, "num_generations=1"),
    (RLStageConfig, {**REQUIRED_RL, "epsilon_high": 0.1}, "epsilon_high"),
    (RLStageConfig, {"model": "m", "output_dir": "o"}, "pass --prompts"),
    (SFTStageConfig, {**REQUIRED_SFT, "packing": True, "max_length": None}, "packing=true needs a max_length"),
    (SFTStageConfig, {"data": "d", "output_dir": "o"}, "pass --model"),
    (SFTStageConfig, {"model": "m", "data": "d"}, "output_dir is not set: pass --out"),
    (FilterConfig, {"prompts": "p", "model": "m", "out": "o", "keep": "0.9-0.1"}, "LO <= HI"),
])
def test_invalid_settings_say_what_to_do(cls, values, match):
    with pytest.raises(ConfigError, match=match):
        build_config(cls, values)


@pytest.mark.parametrize("cls,values,field", [
    (RLStageConfig, {**REQUIRED_RL, "loss_type": "token"}, "loss_type='token'"),
    (RLStageConfig, {**REQUIRED_RL, "vllm_mode": "remote"}, "vllm_mode='remote'"),
    (RLStageConfig, {**REQUIRED_RL, "scale_rewards": "std"}, "scale_rewards='std'"),
    (SFTStageConfig, {**REQUIRED_SFT, "loss_type": "dapo"}, "loss_type='dapo'"),  # SFT's loss types are others
    (SFTStageConfig, {**REQUIRED_SFT, "packing_strategy": "tight"}, "packing_strategy='tight'"),
])
def test_a_value_trl_does_not_document_is_refused_naming_the_field(cls, values, field):
    """No copy of TRL's value sets: the allowed values are read from TRL's own field metadata / help."""
    with pytest.raises(ConfigError, match=f"^{field}: use one of .*TRL documents"):
        build_config(cls, values)


def test_the_value_sets_read_from_trl_hold_our_defaults():
    from trl import GRPOConfig

    from astro_reasoner.train.trl_configs import trl_choices

    for name, ours in (("loss_type", "dapo"), ("scale_rewards", "group"), ("vllm_mode", "server")):
        allowed = trl_choices(GRPOConfig, name)
        assert len(allowed) >= 2 and ours in allowed, (name, allowed)  # TRL's help changed its wording otherwise
    assert {"grpo", "dr_grpo", "bnpo"} <= trl_choices(RLStageConfig, "loss_type")  # through our re-declaration


@pytest.mark.parametrize("key, fix", [("out_dir", "output_dir"), ("precision", "bf16 / fp16"),
                                      ("device", "use_cpu: true"), ("trl_args", "top-level keys")])
def test_keys_of_the_old_configs_name_their_replacement(key, fix):
    with pytest.raises(ConfigError, match=f"'{key}' is no longer a key of SFTStageConfig; use .*{fix}"):
        build_config(SFTStageConfig, {**REQUIRED_SFT, key: "x"})


def test_the_configs_are_trls_and_add_only_what_trl_lacks():
    import dataclasses

    from trl import GRPOConfig, SFTConfig

    from astro_reasoner.train.common import own_fields

    assert issubclass(SFTStageConfig, SFTConfig) and issubclass(RLStageConfig, GRPOConfig)
    ours = {"model", "threads", "lora", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "merge_lora",
            "resume", "overwrite", "tune_malloc"}
    assert set(own_fields(SFTStageConfig)) == ours | {"data", "drop_long"}
    assert set(own_fields(RLStageConfig)) == ours | {
        "prompts", "reward_correct", "reward_wrong", "reward_unparseable", "checker_workers", "checker_deadline",
        "behaviour_logging", "save_completions"}
    # A TRL field is re-declared only to change its default.
    for cls, trl in ((SFTStageConfig, SFTConfig), (RLStageConfig, GRPOConfig)):
        theirs = {f.name: f for f in dataclasses.fields(trl)}
        same = [f.name for f in dataclasses.fields(cls) if f.name in theirs and f is not theirs[f.name]
                and f.default == theirs[f.name].default and f.name not in ("beta", "loss_type")]  # pinned: ASTRO §3.4
        assert same == [], f"{cls.__name__} re-declares {same} with TRL's own default"


def test_parse_band():
    assert parse_band("0.1-0.9") == (0.1, 0.9) and parse_band("0-1") == (0.0, 1.0)
    with pytest.raises(ConfigError):
        parse_band("half")


def test_cpu_runtime_is_chosen_automatically():
    import torch

    from astro_reasoner.train.runtime import check_runtime, cpu_has_amx, cpu_has_bf16

    if torch.cuda.is_available():
        pytest.skip("checks the CPU choice")
    cfg = build_config(SFTStageConfig, REQUIRED_SFT)
    # auto (bf16 unset): bf16 autocast over fp32 weights where the CPU has AMX, plain fp32 elsewhere
    want_bf16 = cpu_has_bf16() and cpu_has_amx()
    assert (cfg.use_cpu, cfg.bf16, cfg.fp16, cfg.model_init_kwargs) == (True, want_bf16, False,
                                                                        {"dtype": "float32"})
    assert check_runtime(cfg).device == "cpu"
    cfg = build_config(SFTStageConfig, {**REQUIRED_SFT, "bf16": False})
    assert (cfg.bf16, cfg.model_init_kwargs["dtype"]) == (False, "float32")
    assert cfg.activation_checkpointing is False and cfg.gradient_checkpointing is False  # off on CPU unless asked
    assert build_config(SFTStageConfig, {**REQUIRED_SFT, "gradient_checkpointing": True}).activation_checkpointing


def test_auto_precision_on_cpu_takes_bf16_only_with_amx(monkeypatch):
    """AVX512-BF16 without AMX runs bf16 autocast slower than fp32 (measured 2x on a matmul): bf16 unset keeps
    fp32 there; explicit bf16=true is still allowed (native, just slower)."""
    from astro_reasoner.train import runtime

    monkeypatch.setattr(runtime, "cuda_available", lambda: False)
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: True)
    monkeypatch.setattr(runtime, "cpu_has_amx", lambda: False)
    assert build_config(SFTStageConfig, REQUIRED_SFT).bf16 is False
    assert runtime.check_runtime(build_config(SFTStageConfig, {**REQUIRED_SFT, "bf16": True})).device == "cpu"
    monkeypatch.setattr(runtime, "cpu_has_amx", lambda: True)
    assert build_config(SFTStageConfig, REQUIRED_SFT).bf16 is True


def test_a_gpu_config_builds_on_a_cpu_machine_and_is_refused_when_it_runs(monkeypatch):
    """A config written for a GPU machine builds anywhere (`astro pipeline --plan` describes it there); the
    hardware it needs is checked when a run starts."""
    from astro_reasoner.train import runtime

    monkeypatch.setattr(runtime, "cuda_available", lambda: False)
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: False)
    for values, match in (({"fp16": True}, "fp16=true needs a CUDA GPU"),
                          ({"use_vllm": True, "vllm_mode": "colocate"}, "use_vllm=true needs a CUDA GPU"),
                          ({"bf16": True}, "bf16=true on CPU needs native bfloat16.*leave bf16 unset")):
        cfg = build_config(RLStageConfig, {**REQUIRED_RL, **values})
        with pytest.raises(ConfigError, match=match):
            runtime.check_runtime(cfg)
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: True)  # AMX / AVX512-BF16: bf16 autocast on CPU
    cfg = build_config(RLStageConfig, {**REQUIRED_RL, "bf16": True})
    assert (runtime.check_runtime(cfg).device, cfg.use_cpu, cfg.bf16, cfg.model_init_kwargs["dtype"]) == (
        "cpu", True, True, "float32")


def test_gpu_rule(monkeypatch):
    """On a GPU: bf16 weights where it has bf16, else fp32; fp16 keeps fp32 master weights; checkpointing on."""
    import transformers.training_args as ta

    from astro_reasoner.train import runtime

    monkeypatch.setattr(runtime, "cuda_available", lambda: True)
    monkeypatch.setattr(runtime, "cuda_has_bf16", lambda: True)
    monkeypatch.setattr(ta, "is_torch_bf16_gpu_available", lambda: True)
    cfg = build_config(SFTStageConfig, REQUIRED_SFT)
    assert (cfg.use_cpu, cfg.bf16, cfg.activation_checkpointing, cfg.model_init_kwargs) == (
        False, True, True, {"dtype": "bfloat16"})
    cfg = build_config(SFTStageConfig, {**REQUIRED_SFT, "fp16": True, "activation_checkpointing": False})
    assert (cfg.bf16, cfg.fp16, cfg.activation_checkpointing, cfg.model_init_kwargs["dtype"]) == (
        False, True, False, "float32")
    monkeypatch.setattr(runtime, "cuda_has_bf16", lambda: False)
    assert build_config(SFTStageConfig, REQUIRED_SFT).bf16 is False
    assert build_config(SFTStageConfig, {**REQUIRED_SFT, "use_cpu": True}).use_cpu is True  # use_cpu=true wins


def test_every_trl_option_is_a_key_and_typos_are_caught(tmp_path):
    cfg = build_config(RLStageConfig, {**REQUIRED_RL, "output_dir": str(tmp_path), "epsilon_high": 0.28,
                                       "bf16": False, "top_k": 20,
                                       "model_init_kwargs": {"attn_implementation": "eager"}})
    assert (cfg.beta, cfg.loss_type, cfg.num_generations, cfg.epsilon_high) == (0.0, "dapo", 4, 0.28)
    assert cfg.top_k == 20 and cfg.use_cpu and not cfg.bf16
    assert cfg.model_init_kwargs == {"dtype": "float32", "attn_implementation": "eager"}  # ours merged, theirs win
    with pytest.raises(ConfigError, match="did you mean top_k"):
        build_config(RLStageConfig, {**REQUIRED_RL, "topk": 20})


def test_identity_is_stable_across_constructions_and_copies():
    """run_settings / config_hash (train/common.py): equal for every construction of one config, for copies made
    by dataclasses.replace (which passes TRL's derived values back in) and for a default written out."""
    import dataclasses

    from astro_reasoner.train.common import config_hash, run_settings

    for cls, req in ((SFTStageConfig, REQUIRED_SFT), (RLStageConfig, REQUIRED_RL)):
        a = build_config(cls, {**req, "learning_rate": 2e-6, "gradient_accumulation_steps": 2})
        b = build_config(cls, {**req, "learning_rate": 2e-6, "gradient_accumulation_steps": 2})
        assert run_settings(a) == run_settings(b) == run_settings(dataclasses.replace(a))
        assert config_hash(a) == config_hash(b) == config_hash(dataclasses.replace(a, threads=3))  # threads: ignored
        assert config_hash(a) == config_hash(a.with_changes()) != config_hash(a.with_changes(learning_rate=1e-6))
        default = build_config(cls, {**req, "seed": 0, "lr_scheduler_type": a.lr_scheduler_type.value})
        assert config_hash(default) == config_hash(build_config(cls, req))
        assert config_hash(a, with_length=False) == config_hash(a.with_changes(max_steps=5), with_length=False)


def test_yaml_section_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("rl:\n  num_generations: 8\n  per_device_train_batch_size: 8\n  top_k: 5\n  report_to: [tensorboard]\nsft:\n  lora: true\n")
    cfg = load_config(RLStageConfig, path, {**REQUIRED_RL, "learning_rate": "2e-6"}, section="rl")
    assert cfg.num_generations == 8 and cfg.learning_rate == 2e-6 and cfg.top_k == 5
    assert cfg.report_to == ["tensorboard"]


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
                 "--fp16"])
    err = capsys.readouterr().err
    assert code == 1 and "error: fp16=true needs a CUDA GPU" in err
    assert not (tmp_path / "o").exists()  # refused before anything was written
    code = main(["rl", "filter", "--prompts", str(prompts), "--model", "m", "--out", str(tmp_path / "k.jsonl"),
                 "--keep", "0.2"])
    assert code == 1 and "keep='0.2'" in capsys.readouterr().err
    code = main(["sft", "--data", str(prompts), "--model", "m", "--out", str(tmp_path / "s"), "nonsense=1"])
    assert code == 1 and "unknown key(s) nonsense" in capsys.readouterr().err


def test_group_size_must_divide_the_generation_batch():
    # TRL's own check, at construction now, with our hint added
    with pytest.raises(ConfigError, match="divisible by num_generations.*per_device_train_batch_size=4"):
        build_config(RLStageConfig, {**REQUIRED_RL, "per_device_train_batch_size": 3})
