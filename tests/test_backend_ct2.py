"""The ct2 backend beyond the shared contract: conversion cache, log-prob semantics, option errors."""

from __future__ import annotations

import math
import os

import pytest

from astro_reasoner.backends import BackendError, make_backend
from astro_reasoner.types import GenParams

pytest.importorskip("ctranslate2", reason="pip install ctranslate2 to test the ct2 backend")

PROMPT_MESSAGES = [{"role": "user", "content": "What is 2 + 3? Answer step by step."}]


@pytest.fixture(scope="module")
def ct2_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("ct2-cache"))


@pytest.fixture(scope="module")
def fp32(tiny_model_dir, ct2_cache):
    # float32 weights: the comparison with transformers below is then exact up to float rounding
    policy = make_backend("ct2", str(tiny_model_dir), compute_type="float32", cache_dir=ct2_cache)
    yield policy
    policy.close()


def _raw_logprob_sum(model_dir, prompt_ids: list[int], gen_ids: list[int]) -> float:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids + gen_ids])).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    return sum(logp[len(prompt_ids) - 1 + k, t].item() for k, t in enumerate(gen_ids))


def test_logprobs_are_raw_whatever_the_temperature(fp32, tiny_model_dir):
    """logprob_sum is log p(tokens) under the model's own distribution (temperature 1, no top-p), as in hf."""
    prompt = fp32.apply_chat_template(PROMPT_MESSAGES)
    ids = fp32.prompts.encode_prompt(prompt)
    for temperature, top_p in ((0.5, 1.0), (1.3, 0.9)):
        params = GenParams(n=1, max_tokens=12, temperature=temperature, top_p=top_p)
        ((gen, logprobs, _),) = fp32.decode_rows(fp32._generator, [ids], params)
        assert len(gen) >= 2
        assert math.isclose(sum(logprobs), _raw_logprob_sum(tiny_model_dir, ids, gen), rel_tol=1e-3, abs_tol=1e-3)


def test_greedy_matches_hf_backend(fp32, tiny_model_dir):
    hf = make_backend("hf", str(tiny_model_dir))
    prompt = fp32.apply_chat_template(PROMPT_MESSAGES)
    params = GenParams(n=1, max_tokens=16, stop=(" ",), temperature=0.0)
    try:
        (a,), (b,) = hf.generate([prompt], params)[0], fp32.generate([prompt], params)[0]
    finally:
        hf.close()
    assert (a.text, a.tokens, a.finish_reason) == (b.text, b.tokens, b.finish_reason)
    assert math.isclose(a.logprob_sum, b.logprob_sum, rel_tol=1e-3, abs_tol=1e-3)


def test_conversion_cached_and_redone_when_checkpoint_changes(tiny_model_dir, tmp_path, ct2_cache):
    import shutil

    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_model_dir, ckpt)
    first = make_backend("ct2", str(ckpt), cache_dir=ct2_cache)
    marker = first.ct2_dir / "astro_ct2.json"
    stamp = marker.stat().st_mtime_ns
    again = make_backend("ct2", str(ckpt), cache_dir=ct2_cache)
    assert again.ct2_dir == first.ct2_dir and marker.stat().st_mtime_ns == stamp  # not converted again
    weights = ckpt / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))  # "re-saved"
    changed = make_backend("ct2", str(ckpt), cache_dir=ct2_cache)
    assert changed.ct2_dir != first.ct2_dir and (changed.ct2_dir / "astro_ct2.json").is_file()
    for p in (first, again, changed):
        p.close()


def test_bad_options_are_clear_errors(tiny_model_dir, tmp_path):
    with pytest.raises(BackendError, match="compute_type='int4'"):
        make_backend("ct2", str(tiny_model_dir), compute_type="int4")
    with pytest.raises(BackendError, match="does not exist"):
        make_backend("ct2", str(tmp_path / "missing"))
    closed = make_backend("ct2", str(tiny_model_dir), cache_dir=str(tmp_path / "c"))
    closed.close()
    with pytest.raises(BackendError, match="closed"):
        closed.generate(["hi"], GenParams(max_tokens=2))
