"""hf_to_gguf: a Llama HF checkpoint becomes a GGUF file llama.cpp loads as *the same model* (same tokens,
same logits), converted once per checkpoint and again when its weights change; other architectures are
refused with the fix."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from astro_reasoner.backends import BackendError
from astro_reasoner.backends.gguf import hf_to_gguf


@pytest.fixture
def ckpt(tiny_model_dir, tmp_path):
    return shutil.copytree(tiny_model_dir, tmp_path / "ckpt")


def test_tiny_llama_converts_with_its_tokenizer_and_every_tensor(ckpt):
    from gguf import GGUFReader
    from transformers import AutoTokenizer

    path = hf_to_gguf(ckpt)
    assert path == ckpt / "model-f32.gguf"
    reader = GGUFReader(str(path))
    cfg = json.loads((ckpt / "config.json").read_text())
    field = lambda k: reader.fields[k].contents()  # noqa: E731
    assert field("general.architecture") == "llama"
    assert field("llama.block_count") == cfg["num_hidden_layers"]
    assert field("llama.attention.head_count_kv") == cfg["num_key_value_heads"]
    tok = AutoTokenizer.from_pretrained(ckpt)
    tokens = field("tokenizer.ggml.tokens")
    assert len(tokens) == cfg["vocab_size"] and all(tokens[i] == t for t, i in tok.get_vocab().items())
    assert field("tokenizer.ggml.eos_token_id") == tok.eos_token_id
    assert field("tokenizer.chat_template") == tok.chat_template
    names = {t.name for t in reader.tensors}
    assert len(names) == 2 + 9 * cfg["num_hidden_layers"] and "output.weight" not in names  # tied embeddings
    assert all(t.tensor_type.name == "F32" for t in reader.tensors)


def test_converted_once_then_again_when_the_weights_change(ckpt, tmp_path):
    first = hf_to_gguf(ckpt)
    stamp = first.stat().st_mtime_ns
    assert hf_to_gguf(ckpt) == first and first.stat().st_mtime_ns == stamp  # cached
    from safetensors.torch import load_file, save_file

    w = load_file(str(ckpt / "model.safetensors"))
    w["model.norm.weight"] = w["model.norm.weight"] * 2
    save_file(w, str(ckpt / "model.safetensors"), metadata={"format": "pt"})
    assert hf_to_gguf(ckpt).stat().st_mtime_ns != stamp
    half = hf_to_gguf(ckpt, tmp_path / "half.gguf", outtype="f16")
    assert half.stat().st_size < first.stat().st_size


def test_other_architectures_and_outtypes_are_refused_with_the_fix(ckpt):
    with pytest.raises(BackendError, match="outtype 'q4'"):
        hf_to_gguf(ckpt, outtype="q4")
    cfg = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps({**cfg, "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(BackendError, match="only Llama-architecture.*convert_hf_to_gguf.py"):
        hf_to_gguf(ckpt)
    (ckpt.parent / "empty").mkdir()
    with pytest.raises(BackendError):
        hf_to_gguf(ckpt.parent / "empty")


@pytest.mark.server
def test_llama_cpp_computes_the_same_logits_as_transformers(ckpt, tmp_path):
    """The Q/K row permutation, norms, tied head and vocabulary are right only if llama.cpp (its C++
    ``llama-server``) tokenizes the text as the HF tokenizer does and its log-probabilities agree with
    transformers' at every position (the ``top`` most likely tokens of each, from the raw logits)."""
    import httpx
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from backend_helpers import llama_server

    text = "<|im_start|>user\nTom has 3 boxes with 4 apples in each box.<|im_end|>\n<|im_start|>assistant\n"
    ids = AutoTokenizer.from_pretrained(ckpt)(text, add_special_tokens=False).input_ids
    model = AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.float32).eval()
    with torch.no_grad():
        hf_logits = model(torch.tensor([ids])).logits[0]
    hf_logprobs = torch.log_softmax(hf_logits, dim=-1).numpy()
    top = 8
    with llama_server(hf_to_gguf(ckpt), tmp_path / "server.log", alias="tiny") as url:
        base = url.removesuffix("/v1")
        cpp_ids = httpx.post(f"{base}/tokenize", json={"content": text, "add_special": False,
                                                      "parse_special": True}, timeout=60).json()["tokens"]
        assert cpp_ids == ids
        for pos in range(len(ids)):  # the distribution after ids[: pos + 1], from its raw logits
            out = httpx.post(f"{base}/completion", json={"prompt": ids[: pos + 1], "n_predict": 1, "n_probs": top,
                                                         "temperature": 0.0, "cache_prompt": False},
                             timeout=60).json()
            assert out["tokens_evaluated"] == pos + 1  # the token prompt as given, no BOS added
            (first,) = out["completion_probabilities"][:1]
            cpp = {t["id"]: t["logprob"] for t in first["top_logprobs"]}
            assert len(cpp) == top
            want = hf_logprobs[pos]
            assert set(cpp) <= set(np.argsort(-want)[: top + 2].tolist())  # the same most likely tokens (ties aside)
            got = np.array([cpp[i] for i in cpp])
            assert np.abs(got - want[list(cpp)]).max() < 2e-3 * max(1.0, float(hf_logits.abs().max())), pos


def test_q8_0_stores_matrices_as_8_bit_blocks_close_to_the_weights(ckpt, tmp_path):
    """outtype q8_0 (the llamacpp engine's default): every 2-D weight in Q8_0 blocks, norms kept in F32, and
    dequantized values within ~half a quantization step (max |w| / 127 per block of 32) of the weights."""
    from gguf import GGMLQuantizationType, GGUFReader
    from gguf.quants import dequantize
    from safetensors.torch import load_file

    path = hf_to_gguf(ckpt, tmp_path / "q8.gguf", outtype="q8_0")
    assert path.stat().st_size < hf_to_gguf(ckpt).stat().st_size / 3
    reader = GGUFReader(str(path))
    types = {t.name: t.tensor_type for t in reader.tensors}
    assert types["token_embd.weight"] == GGMLQuantizationType.Q8_0
    assert types["blk.0.ffn_down.weight"] == GGMLQuantizationType.Q8_0
    assert types["output_norm.weight"] == GGMLQuantizationType.F32
    down = next(t for t in reader.tensors if t.name == "blk.1.ffn_down.weight")
    got = dequantize(np.asarray(down.data), GGMLQuantizationType.Q8_0).reshape(-1)
    want = load_file(str(ckpt / "model.safetensors"))["model.layers.1.mlp.down_proj.weight"].float().numpy().reshape(-1)
    step = np.repeat(np.abs(want.reshape(-1, 32)).max(axis=1) / 127, 32)
    assert np.all(np.abs(got - want) <= step * 0.6)  # half a step, plus the f16 rounding of the block scale
