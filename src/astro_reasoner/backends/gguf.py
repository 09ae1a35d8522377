"""HF Llama checkpoint -> GGUF file, so a llama.cpp server can serve *that* checkpoint (pipeline ``server:``).

``hf_to_gguf(hf_dir)`` writes the checkpoint's own weights (F32 by default: the exact numbers the ``hf``
backend evaluates; ``outtype="f16"`` halves the file; ``outtype="q8_0"`` stores 2-D weights as llama.cpp's
8-bit blocks, quantized with the ``gguf`` package's own reference implementation, for the ``llamacpp``
engine: int8 dot products run ~2x faster than f32 on AVX2) and its own tokenizer (byte-level BPE vocabulary,
merges, special tokens, chat template) in the layout llama.cpp's ``convert_hf_to_gguf.py`` writes for the
``llama`` architecture (tensor names, Q/K row permutation). Written by hand with the ``gguf`` package because
that converter is a script of the llama.cpp repository, not an installable library; this covers the
Llama-architecture checkpoints this project trains (SmolLM2, the tiny test Llama) and refuses others with
the fix (use llama.cpp's converter, or vLLM which serves HF checkpoints directly).

The result is cached next to the weights (``<hf_dir>/model-<outtype>.gguf``; in ``$ASTRO_CACHE/gguf`` when
the checkpoint is read-only) with a fingerprint of the source files, so each checkpoint is converted once.
When llama-cpp-python is installed, the written vocabulary is checked against the HF tokenizer on sample
texts (the prompts are sent to llama.cpp as strings, so both sides must tokenize identically).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ..io import file_mode
from .base import BackendError

CONVERTER_VERSION = 1
OUTTYPES = ("f32", "f16", "q8_0")
_LAYER_TENSORS = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
                  "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                  "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
                  "post_attention_layernorm": "ffn_norm"}
_SOURCE_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
                 "model.safetensors", "model.safetensors.index.json")


def hf_to_gguf(hf_dir: str | Path, out_path: str | Path | None = None, *, outtype: str = "f32") -> Path:
    """The GGUF file for the HF checkpoint ``hf_dir`` (a directory or a model alias), converting once."""
    from ..io import stable_hash
    from ..models import _file_lock, cache_root, resolve_model

    if outtype not in OUTTYPES:
        raise BackendError(f"hf_to_gguf: outtype {outtype!r}; use one of {', '.join(OUTTYPES)}")
    src = Path(resolve_model(str(hf_dir)))
    if not (src / "config.json").is_file():
        raise BackendError(f"hf_to_gguf: {src} is not a local checkpoint directory (no config.json)")
    files = [src / n for n in _SOURCE_FILES if (src / n).exists()] + sorted(src.glob("model-*.safetensors"))
    fingerprint = stable_hash("hf_to_gguf", CONVERTER_VERSION, outtype,
                              [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files])
    if out_path is None:
        out = src / f"model-{outtype}.gguf"
        if not os.access(src, os.W_OK):
            out = cache_root() / "gguf" / f"{src.name}-{fingerprint[:16]}-{outtype}.gguf"
    else:
        out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    stamp = out.with_name(out.name + ".json")
    with _file_lock(out.with_name(out.name + ".lock")):
        if out.is_file() and stamp.is_file() and _read(stamp).get("fingerprint") == fingerprint:
            return out
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=out.name + ".", suffix=".tmp")
        os.fchmod(fd, file_mode())  # mkstemp makes 0600; the GGUF beside a checkpoint honours the umask like it
        os.close(fd)
        try:
            _write_gguf(src, Path(tmp), outtype)
            check_gguf_tokenizer(Path(tmp), src)
            os.replace(tmp, out)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        stamp.write_text(json.dumps({"fingerprint": fingerprint, "source": str(src), "outtype": outtype}))
    return out


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _pre_tokenizer(tok_json: dict) -> str:
    """llama.cpp's name for the checkpoint's pre-tokenizer (which regex splits text before BPE)."""
    pre = tok_json.get("pre_tokenizer") or {}
    parts = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [p.get("type") for p in parts]
    if kinds == ["ByteLevel"] and parts[0].get("use_regex", True):
        return "gpt-2"  # llama.cpp spells GPT-2 splitting "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and parts[0].get("individual_digits") and parts[1].get("use_regex", True):
        return "smollm"  # SmolLM/SmolLM2: each digit alone, then GPT-2 splitting (llama.cpp LLAMA_VOCAB_PRE_TYPE_SMOLLM)
    raise BackendError(f"hf_to_gguf: pre-tokenizer {kinds} is not one this converter knows (GPT-2 byte-level, "
                       "SmolLM); convert with llama.cpp's convert_hf_to_gguf.py or serve the checkpoint with vLLM")


def _write_gguf(src: Path, out: Path, outtype: str) -> None:
    import gguf
    import numpy as np
    from transformers import AutoTokenizer

    cfg = json.loads((src / "config.json").read_text())
    if cfg.get("model_type") != "llama" and "LlamaForCausalLM" not in (cfg.get("architectures") or []):
        raise BackendError(f"hf_to_gguf: {src} is a {cfg.get('model_type')!r} model; only Llama-architecture "
                           "checkpoints are converted here (use llama.cpp's convert_hf_to_gguf.py, or vLLM)")
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) not in ("default", None):
        raise BackendError(f"hf_to_gguf: rope type {rope.get('rope_type')!r} is not supported here; use llama.cpp's "
                           "convert_hf_to_gguf.py")
    tok_json = json.loads((src / "tokenizer.json").read_text())
    if (tok_json.get("model") or {}).get("type") != "BPE":
        raise BackendError(f"hf_to_gguf: {src}'s tokenizer is not byte-level BPE; use llama.cpp's converter")
    tok = AutoTokenizer.from_pretrained(str(src))
    weights = _load_weights(src)
    n_head, n_kv, hidden = cfg["num_attention_heads"], cfg.get("num_key_value_heads") or cfg["num_attention_heads"], \
        cfg["hidden_size"]
    head_dim = cfg.get("head_dim") or hidden // n_head

    w = gguf.GGUFWriter(str(out), "llama")
    w.add_name(src.name)
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg.get("max_position_embeddings", 2048))
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_layer_norm_rms_eps(cfg.get("rms_norm_eps", 1e-5))
    w.add_rope_freq_base(float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0))))
    w.add_rope_dimension_count(head_dim)
    w.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                     "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[outtype])

    # vocabulary: ids in order, padded to the embedding size (llama.cpp wants one token per embedding row)
    vocab = tok.get_vocab()
    n_vocab = max(cfg["vocab_size"], max(vocab.values()) + 1)
    names = [f"[PAD{i}]" for i in range(n_vocab)]
    types = [gguf.TokenType.UNUSED] * n_vocab
    added = {t.content: t for t in tok.added_tokens_decoder.values()}
    for text, i in vocab.items():
        names[i] = text
        types[i] = (gguf.TokenType.CONTROL if added[text].special else gguf.TokenType.USER_DEFINED) \
            if text in added else gguf.TokenType.NORMAL
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(_pre_tokenizer(tok_json))
    w.add_token_list(names)
    w.add_token_types(types)
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in tok_json["model"].get("merges", [])])
    for setter, token_id in ((w.add_bos_token_id, tok.bos_token_id), (w.add_eos_token_id, tok.eos_token_id),
                             (w.add_pad_token_id, tok.pad_token_id), (w.add_unk_token_id, tok.unk_token_id)):
        if token_id is not None:
            setter(int(token_id))
    with_special = tok("a", add_special_tokens=True).input_ids
    w.add_add_bos_token(len(with_special) > len(tok("a", add_special_tokens=False).input_ids))
    w.add_add_eos_token(False)
    if tok.chat_template:
        w.add_chat_template(tok.chat_template)

    def put(name: str, x: np.ndarray) -> None:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim == 2 and outtype == "f16":
            x = x.astype(np.float16)
        elif x.ndim == 2 and outtype == "q8_0" and x.shape[1] % 32 == 0:  # Q8_0 blocks hold 32 values of a row
            q = gguf.GGMLQuantizationType.Q8_0
            w.add_tensor(name, gguf.quants.quantize(x, q), raw_dtype=q)
            return
        w.add_tensor(name, x)

    def permute(x: np.ndarray, heads: int) -> np.ndarray:  # llama.cpp's rotary layout (its converter's permute)
        return x.reshape(heads, 2, x.shape[0] // heads // 2, *x.shape[1:]).swapaxes(1, 2).reshape(x.shape)

    emb = weights.pop("model.embed_tokens.weight")
    if emb.shape[0] < n_vocab:
        emb = np.concatenate([emb, np.zeros((n_vocab - emb.shape[0], emb.shape[1]), emb.dtype)])
    put("token_embd.weight", emb)
    put("output_norm.weight", weights.pop("model.norm.weight"))
    head = weights.pop("lm_head.weight", None)
    if head is not None and not cfg.get("tie_word_embeddings", False):
        put("output.weight", head)  # absent = tied: llama.cpp then reuses token_embd
    for i in range(cfg["num_hidden_layers"]):
        for hf_name, g_name in _LAYER_TENSORS.items():
            x = weights.pop(f"model.layers.{i}.{hf_name}.weight")
            if g_name == "attn_q":
                x = permute(x, n_head)
            elif g_name == "attn_k":
                x = permute(x, n_kv)
            put(f"blk.{i}.{g_name}.weight", x)
    leftover = [k for k in weights if not k.endswith("rotary_emb.inv_freq")]
    if leftover:
        raise BackendError(f"hf_to_gguf: {src} has tensors a plain Llama does not ({leftover[:4]}); use llama.cpp's "
                           "converter")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _load_weights(src: Path) -> dict:
    """All tensors as float32 numpy arrays (torch reads bf16, which numpy cannot)."""
    from safetensors.torch import load_file

    shards = sorted(src.glob("model-*.safetensors")) or [src / "model.safetensors"]
    if not shards[0].is_file():
        raise BackendError(f"hf_to_gguf: {src} has no model.safetensors (save the checkpoint with safetensors)")
    out = {}
    for shard in shards:
        out.update({k: v.float().numpy() for k, v in load_file(str(shard)).items()})
    return out


def check_gguf_tokenizer(path: Path, hf_dir: Path) -> None:
    """Raise BackendError if llama.cpp tokenizes sample texts differently from the HF tokenizer (only when
    llama-cpp-python is installed; otherwise there is nothing here to check with)."""
    try:
        import llama_cpp
    except ImportError:
        return
    from transformers import AutoTokenizer

    from ..models import ROUND_TRIP_TEXTS

    hf = AutoTokenizer.from_pretrained(str(hf_dir))
    vocab = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
    try:
        for text in ROUND_TRIP_TEXTS:
            ours = vocab.tokenize(text.encode(), add_bos=False, special=True)
            theirs = hf(text, add_special_tokens=False).input_ids
            if ours != theirs:
                raise BackendError(f"hf_to_gguf: llama.cpp tokenizes {text[:40]!r} as {ours[:12]}..., the checkpoint's "
                                   f"tokenizer as {theirs[:12]}...; this tokenizer needs llama.cpp's own converter")
    finally:
        vocab.close()
