"""What SFT and GRPO leave on disk for others: files that honour the umask, model cards that name the base model,
and one clear line for an empty sft.jsonl (tiny random model, one optimizer step each)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from train_helpers import short_answer_rl, write_sft

from astro_reasoner.cli import main
from astro_reasoner.train.config import RLStageConfig, SFTStageConfig


def _modes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): oct(stat.S_IMODE(p.stat().st_mode)) for p in [root, *root.rglob("*")]}


def test_trained_checkpoints_honour_the_umask_and_name_their_base(tiny_model_dir, tmp_path):
    from astro_reasoner.backends.gguf import hf_to_gguf
    from astro_reasoner.train.grpo import run_grpo
    from astro_reasoner.train.sft import run_sft

    sft = SFTStageConfig(model=str(tiny_model_dir), data=str(write_sft(tmp_path / "sft.jsonl")),
                         output_dir=str(tmp_path / "sft"), max_steps=1, save_steps=1, per_device_train_batch_size=4,
                         report_to="none", logging_steps=1, max_length=512)
    rl = RLStageConfig(model=sft.output_dir, prompts=str(short_answer_rl(tmp_path / "rl.jsonl")),
                       output_dir=str(tmp_path / "rl"), max_steps=1, save_steps=1, per_device_train_batch_size=4,
                       num_generations=4, max_completion_length=8, report_to="none", checker_workers=1)
    old = os.umask(0o027)  # not the usual 022: a file made 0644 or 0600 regardless of the umask shows up
    try:
        run_sft(sft.data, sft.output_dir, sft)
        run_grpo(rl.prompts, rl.output_dir, rl)
        gguf = hf_to_gguf(sft.output_dir)  # written by us (a temp file renamed into the checkpoint)
    finally:
        os.umask(old)
    for out in (Path(sft.output_dir), Path(rl.output_dir)):
        modes = _modes(out)
        assert any(k.startswith("checkpoint-1/") for k in modes) and "model.safetensors" in modes
        wrong = {k: v for k, v in modes.items() if v != ("0o750" if (out / k).is_dir() else "0o640")}
        assert not wrong, f"not 0640/0750 under umask 027: {wrong}"
    assert oct(stat.S_IMODE(gguf.stat().st_mode)) == "0o640"
    for out in (sft.output_dir, rl.output_dir):  # the RL model's base is followed through the SFT run to its base
        card = (Path(out) / "README.md").read_text()
        assert f"fine-tuned version of [{tiny_model_dir}]" in card and "[None]" not in card
        assert f"base_model: {tiny_model_dir}" in card


def test_model_card_names_the_hub_model_of_an_alias(tmp_path, monkeypatch):
    from astro_reasoner.models import ALIASES
    from astro_reasoner.train.card import base_model_name

    monkeypatch.setenv("ASTRO_CACHE", str(tmp_path))
    hub = ALIASES["smollm2-135m"].hub_id
    converted = tmp_path / "models" / "smollm2-135m"
    converted.mkdir(parents=True)
    assert base_model_name("smollm2-135m") == hub == base_model_name(str(converted))
    sft = tmp_path / "sft"
    sft.mkdir()
    (sft / "train_summary.json").write_text('{"config": {"model": "smollm2-135m"}}')
    assert base_model_name(str(sft)) == hub
    assert base_model_name("org/name") == "org/name"


def test_sft_on_an_empty_file_is_one_line_and_claims_nothing(tiny_model_dir, tmp_path, capsys):
    empty = tmp_path / "sft.jsonl"
    empty.write_text("")
    out = tmp_path / "out"
    assert main(["sft", "--data", str(empty), "--model", str(tiny_model_dir), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {empty}: no examples (the file is empty)")
    assert "best-of-n" in err[0] and not (out / "run_config.json").exists()
