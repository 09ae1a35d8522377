"""SFT on the tiny random model: completion-only loss, training moves every weight, resumable runs.

Threads: conftest sets OMP_NUM_THREADS=1 (on 2 shared cores two OpenMP threads made tiny-model training
~25x slower); the stage configs keep ``threads=0`` so that setting is what torch uses.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
from pathlib import Path

import pytest
from train_helpers import sft_records, write_sft

from astro_reasoner.config import ConfigError
from astro_reasoner.train.config import SFTStageConfig


def sft_cfg(model, data, out, **kw) -> SFTStageConfig:
    base = dict(model=str(model), data=str(data), output_dir=str(out), learning_rate=3e-3, num_train_epochs=3,
                per_device_train_batch_size=4, logging_steps=1, report_to="none", max_length=512)
    cfg = SFTStageConfig(**{**base, **kw})
    return cfg


@pytest.fixture(scope="module")
def sft_data(tmp_path_factory):
    return write_sft(tmp_path_factory.mktemp("sft-data") / "sft.jsonl")


@pytest.fixture(scope="module")
def sft_run(tiny_model_dir, sft_data, tmp_path_factory):
    from astro_reasoner.train.sft import run_sft

    out = tmp_path_factory.mktemp("sft-run") / "out"
    cfg = sft_cfg(tiny_model_dir, sft_data, out)
    assert run_sft(cfg.data, out, cfg) == {"checkpoint": str(out), "skipped": False}
    return cfg


def test_default_loss_is_on_all_tokens_as_in_the_paper(tiny_model_dir, sft_data, tmp_path):
    from astro_reasoner.train.sft import build_sft_trainer

    # The class defaults (a bare SFTStageConfig() is invalid: model, data and output_dir are required).
    defaults = {f.name: f.default for f in dataclasses.fields(SFTStageConfig)}
    assert defaults["completion_only_loss"] is False and defaults["learning_rate"] == 3e-6
    trainer, _ = build_sft_trainer(sft_cfg(tiny_model_dir, sft_data, tmp_path / "out"))
    tok = trainer.processing_class
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    labels, ids = batch["labels"], batch["input_ids"]
    real = batch["attention_mask"] == 1
    assert bool((labels[real] == ids[real]).all()) and bool((labels[~real] == -100).all())  # loss on every token
    text = tok.decode([t for t in labels[0].tolist() if t != -100])
    assert "Solve the following" in text and text.endswith("<|im_end|>\n")  # the prompt carries loss too


def test_completion_only_loss_masks_the_prompt(tiny_model_dir, sft_data, tmp_path):
    from astro_reasoner.train.sft import build_sft_trainer

    trainer, stats = build_sft_trainer(sft_cfg(tiny_model_dir, sft_data, tmp_path / "out",
                                               completion_only_loss=True))
    tok = trainer.processing_class
    records = sft_records()
    assert stats["examples"] == len(records) and stats["too_long"] == 0
    by_text = {tok.decode(ex["input_ids"]): ex for ex in trainer.train_dataset}
    for rec in records:
        prompt_text = tok.apply_chat_template(rec["prompt"], tokenize=False, add_generation_prompt=True)
        cot = rec["completion"][0]["content"]
        ex = by_text[prompt_text + cot + "<|im_end|>\n"]
        labels, ids = ex["labels"], ex["input_ids"]
        n_prompt = len(tok(prompt_text, add_special_tokens=False)["input_ids"])
        assert all(lab == -100 for lab in labels[:n_prompt]), "a prompt token carries loss"
        assert labels[n_prompt:] == ids[n_prompt:], "a completion token is masked"
        assert tok.decode([t for t in labels if t != -100]) == cot + "<|im_end|>\n"
    # The collated batch (what the model sees) keeps the mask and masks padding too.
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    labels, ids = batch["labels"], batch["input_ids"]
    for row_labels, row_ids in zip(labels.tolist(), ids.tolist()):
        text = tok.decode([t for t in row_labels if t != -100])
        assert text.startswith("There are ") and text.endswith("<|im_end|>\n")
        assert "Solve the following" not in text and "<|im_start|>" not in text
    assert (labels == -100).sum() > (labels != -100).sum() // 4  # prompts are masked, not just padding


def test_sft_lowers_loss_and_changes_every_parameter(sft_run, tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    summary = json.loads((Path(sft_run.output_dir) / "train_summary.json").read_text())
    losses = [h["loss"] for h in summary["loss_history"]]
    assert len(losses) == 6 and losses[-1] < losses[0] - 0.3, losses
    before = dict(AutoModelForCausalLM.from_pretrained(tiny_model_dir).named_parameters())
    after = dict(AutoModelForCausalLM.from_pretrained(sft_run.output_dir).named_parameters())
    assert before.keys() == after.keys()
    unchanged = [n for n, p in before.items() if torch.equal(p, after[n])]
    assert not unchanged, f"parameters not updated: {unchanged}"
    tok = AutoTokenizer.from_pretrained(sft_run.output_dir)  # a self-contained HF checkpoint with its template
    assert tok.chat_template and "<|im_start|>" in tok.chat_template


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_tuned_malloc_trains_the_same_model(sft_run, tmp_path, caplog, monkeypatch):
    """tune_malloc=true changes where freed memory goes, not what is computed: same losses, same weights."""
    import torch
    from safetensors.torch import load_file

    from astro_reasoner.train.sft import run_sft

    for k in [k for k in os.environ if k.startswith("MALLOC_") or k in ("LD_PRELOAD", "ASTRO_TUNE_MALLOC")]:
        monkeypatch.delenv(k)
    cfg = sft_cfg(sft_run.model, sft_run.data, tmp_path / "tuned", tune_malloc=True)
    with caplog.at_level(logging.INFO, logger="astro_reasoner.train.allocator"):
        run_sft(cfg.data, cfg.output_dir, cfg)
    assert "glibc malloc tuned for this training loop" in caplog.text

    def losses(run):
        return [h["loss"] for h in json.loads((Path(run) / "train_summary.json").read_text())["loss_history"]]

    assert losses(cfg.output_dir) == losses(sft_run.output_dir)
    tuned, plain = (load_file(Path(d) / "model.safetensors") for d in (cfg.output_dir, sft_run.output_dir))
    assert tuned.keys() == plain.keys() and all(torch.equal(tuned[k], plain[k]) for k in tuned)


def test_finished_run_is_skipped_and_other_configs_refused(sft_run):
    from astro_reasoner.train.sft import run_sft

    summary = Path(sft_run.output_dir) / "train_summary.json"
    stamp = summary.read_text()
    # same config: nothing retrained
    assert run_sft(sft_run.data, sft_run.output_dir, sft_run) == {"checkpoint": sft_run.output_dir, "skipped": True}
    assert summary.read_text() == stamp
    other = sft_cfg(sft_run.model, sft_run.data, sft_run.output_dir, learning_rate=1e-4)
    with pytest.raises(ConfigError, match=r"other settings \(learning_rate: .* -> 0\.0001;"):
        run_sft(other.data, other.output_dir, other)


def test_long_examples_are_counted_and_optionally_dropped(tiny_model_dir, sft_data, caplog):
    from transformers import AutoTokenizer

    from astro_reasoner.train.sft import apply_length_limit, load_sft_rows, token_lengths

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = load_sft_rows(sft_data)
    lengths = token_lengths(tok, rows)
    limit = sorted(lengths)[4]  # 3 examples are longer than this (lengths differ by digit counts)
    n_long = sum(n > limit for n in lengths)
    assert n_long >= 1
    cfg = sft_cfg(tiny_model_dir, sft_data, "unused", max_length=limit)
    with caplog.at_level(logging.WARNING):
        kept, stats = apply_length_limit(rows, lengths, cfg)
    assert len(kept) == len(rows) and stats["too_long"] == n_long
    assert f"{n_long} of {len(rows)} examples exceed max_length={limit}" in caplog.text
    kept, stats = apply_length_limit(rows, lengths, sft_cfg(tiny_model_dir, sft_data, "x", max_length=limit,
                                                            drop_long=True))
    assert len(kept) == len(rows) - n_long and stats["dropped"] == n_long


def test_lora_merged_checkpoint_is_a_plain_model(tiny_model_dir, sft_data, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from astro_reasoner.train.sft import run_sft

    cfg = sft_cfg(tiny_model_dir, sft_data, tmp_path / "lora", lora=True, lora_r=4, lora_alpha=8,
                  lora_dropout=0.0, max_steps=2, learning_rate=1e-2)
    out = run_sft(cfg.data, cfg.output_dir, cfg)["checkpoint"]
    assert (tmp_path / "lora" / "adapter" / "adapter_config.json").exists()
    assert not (tmp_path / "lora" / "adapter_config.json").exists()  # the top level is a full model
    merged = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    changed = [n for n, p in base.named_parameters() if not torch.equal(p, merged.get_parameter(n))]
    assert any("q_proj" in n for n in changed) and all("proj" in n for n in changed), changed


def test_bad_sft_data_names_file_and_line(tmp_path):
    from astro_reasoner.io import DataError
    from astro_reasoner.train.sft import load_sft_rows

    path = tmp_path / "bad.jsonl"
    good = json.dumps(sft_records(1)[0])
    path.write_text(good + "\n" + json.dumps({"prompt": [{"role": "user", "content": "q"}],
                                              "completion": "just a string"}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:2: field 'completion'"):
        load_sft_rows(path)
