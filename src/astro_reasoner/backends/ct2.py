"""The ``ct2`` backend: CTranslate2 (int8 CPU kernels) in this process -- a measured candidate engine (issue 12).

CTranslate2 (https://github.com/OpenNMT/CTranslate2) runs a Llama-family HF checkpoint with int8 weights and
its own batched decoder (finished rows leave the batch), and converts an HF checkpoint directory in-process, so
trained checkpoints (SFT/GRPO output directories) work too. Measured (BENCHMARKS.md "Engines"): its decode is
fast per token, but on the search workload (~390-token few-shot prompts, ~30-token steps, n samples per
prompt) it ran at 0.39x the ``hf`` backend per CPU-second, because every sample's prompt is prefilled at
about decode cost per token, while ``hf`` prefills the shared prefix and each distinct prompt once. So it is
an option (``--backend ct2``), not the default.

Design (our choices, with reasons):
- Conversion is cached in ``<cache_root>/ct2/<name>-<key>`` (or the ``cache_dir`` option); the key hashes
  the checkpoint's files (name, size, mtime), the quantization and the CTranslate2 version, so a re-saved
  checkpoint is converted again and an unchanged one never is. Conversion writes to a temporary directory
  renamed into place under a file lock.
- Prompts are rendered and tokenized client-side by the same :class:`PromptTokenizer` as ``hf``/``openai``.
  The token prefix shared by every row of a call (system prompt + few-shot examples) goes in CTranslate2's
  ``static_prompt``, whose model state is computed once and cached across calls (like ``hf``'s shared prefill).
- The ``n`` samples of a prompt are separate rows: CTranslate2's callback stops a whole batch entry, and we
  did not verify that it can stop one of ``num_hypotheses`` samples alone (this duplicates prompt prefill:
  the cost measured above). A per-token callback records each row's token ids and
  log-probs and stops a row once its generated text contains a stop string (checked on the generated text
  only, like ``hf``).
- ``logprob_sum``: CTranslate2 computes the step log-probs with ``log_softmax`` of the raw logits before its
  sampler applies temperature/top-p, so they are the *raw* log-probs the PUCT prior wants (same semantics as
  ``hf``, vLLM and llama.cpp; checked against transformers in tests/test_backend_ct2.py).
- Seeds: CTranslate2's sampler draws from a ``thread_local`` generator seeded once per worker thread from the
  global seed (``ctranslate2.set_random_seed``), so reseeding a live generator has no effect. A seeded call
  therefore sets the seed and starts a fresh ``Generator`` (its worker thread is new); the weights come from
  the page cache (0.4-0.5 CPU-s for SmolLM2-135M, measured), and the cached static prompt is recomputed.
  Unseeded calls reuse one generator.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from ..io import stable_seed
from ..types import Completion, GenParams
from .base import BackendError, validate_params
from .tokenizing import PromptTokenizer, finish_row, load_tokenizer

COMPUTE_TYPES = ("int8", "int8_float32", "int16", "float32")
MIN_STATIC_PROMPT = 8  # shorter shared prefixes are not worth a separate cached state
MARKER = "astro_ct2.json"


class CT2Backend:
    """Policy backed by ``ctranslate2.Generator`` (see module doc)."""

    name = "ct2"
    deterministic = True  # a seeded call runs on a freshly seeded generator (see module doc)

    def __init__(self, model: str, *, compute_type: str = "int8", threads: int | None = None, batch_size: int = 32,
                 chat_template: str | None = None, trust_remote_code: bool = False, cache_dir: str | None = None):
        from ..extras import require

        require("ct2", what="backend 'ct2'")  # one line naming the extra (or use backend hf)
        import ctranslate2
        from ..models import resolve_model

        if compute_type not in COMPUTE_TYPES:
            raise BackendError(f"compute_type={compute_type!r}: use one of {', '.join(COMPUTE_TYPES)}")
        path = resolve_model(model)
        if not Path(path).is_dir():
            raise BackendError(f"backend 'ct2' needs a local checkpoint directory, .gguf file or alias; {model!r} "
                               "resolved to a hub id: download it first (huggingface-cli download) and pass its path")
        self.model_path = path
        self.compute_type = compute_type
        self.dtype = compute_type  # recorded in eval summaries
        self.threads = int(threads or os.environ.get("OMP_NUM_THREADS") or 1)
        self.batch_size = int(batch_size)
        self.ct2_dir = convert_checkpoint(path, compute_type, trust_remote_code=trust_remote_code,
                                          cache_dir=cache_dir)
        self._ct2 = ctranslate2
        tok = load_tokenizer(path, chat_template=chat_template, trust_remote_code=trust_remote_code)
        self.prompts = PromptTokenizer(tok)
        self.eos_ids = _eos_ids(path, tok)
        self._generator = self._new_generator()

    # ------------------------------------------------------------------------------------ Policy API
    def apply_chat_template(self, messages: Sequence[dict[str, str]], continue_text: str = "") -> str:
        return self.prompts.apply_chat_template(messages, continue_text)

    def count_tokens(self, text: str) -> int:
        return self.prompts.count_tokens(text)

    def close(self) -> None:
        self._generator = None

    def generate(self, prompts: Sequence[str], params: GenParams) -> list[list[Completion]]:
        if self._generator is None:
            raise BackendError("this CT2Backend was closed; create a new one")
        validate_params(params)
        encoded = [self.prompts.encode_prompt(p) for p in prompts]
        rows = [(i, j) for i in range(len(prompts)) for j in range(params.n)]
        rows.sort(key=lambda r: -len(encoded[r[0]]))  # less padding inside CTranslate2's batches
        generator = self._generator
        if params.seed is not None:
            self._ct2.set_random_seed(stable_seed(params.seed, "ct2") % (2 ** 32))
            generator = self._new_generator()
        stops = tuple(s for s in params.stop if s)
        ids = [encoded[i] for i, _ in rows]
        done = [self._completion(*row, stops, len(x)) for row, x in zip(self.decode_rows(generator, ids, params), ids)]
        out: list[list[Completion | None]] = [[None] * params.n for _ in prompts]
        for (i, j), comp in zip(rows, done):
            out[i][j] = comp
        return out  # type: ignore[return-value]

    # ------------------------------------------------------------------------------------ internals
    def _new_generator(self):
        return self._ct2.Generator(str(self.ct2_dir), device="cpu", compute_type=self.compute_type,
                                   intra_threads=self.threads, inter_threads=1)

    def decode_rows(self, generator, ids: list[list[int]], params: GenParams) -> list[tuple[list[int], list, int]]:
        """Per row of prompt ids: (generated ids, their raw log-probs, tokens at the stop string or 0)."""
        stops = tuple(s for s in params.stop if s)
        common = _common_prefix(ids)
        static = common if common >= MIN_STATIC_PROMPT else 0
        to_tokens = self.prompts.tok.convert_ids_to_tokens
        starts = [to_tokens(x[static:]) for x in ids]
        tokens: list[list[int]] = [[] for _ in ids]
        logprobs: list[list[float]] = [[] for _ in ids]
        stopped_at = [0] * len(ids)
        window = max((len(s) for s in stops), default=0) + 2  # tokens that can hold a stop string + 1 (as hf)

        def on_token(step) -> bool:
            # called by CTranslate2 for each generated token of each row (batch_id = row in this call)
            r = step.batch_id
            tokens[r].append(step.token_id)
            logprobs[r].append(step.log_prob)
            if stops and step.token_id not in self.eos_ids:
                tail = self.prompts.decode(tokens[r][-window:])
                if any(s in tail for s in stops):
                    stopped_at[r] = len(tokens[r])
                    return True
            return False

        greedy = params.temperature == 0
        kwargs = dict(max_batch_size=self.batch_size, max_length=params.max_tokens, include_prompt_in_result=False,
                      end_token=sorted(self.eos_ids), return_end_token=True, return_scores=True,
                      sampling_topk=1 if greedy else 0, sampling_topp=1.0 if greedy else params.top_p,
                      sampling_temperature=1.0 if greedy else params.temperature, callback=on_token)
        if static:
            kwargs.update(static_prompt=to_tokens(ids[0][:static]), cache_static_prompt=True)
        try:
            generator.generate_batch(starts, **kwargs)
        except (RuntimeError, ValueError) as exc:
            raise BackendError(f"CTranslate2 failed on a batch of {len(ids)} rows (longest prompt "
                               f"{max(map(len, ids))} tokens): {exc}") from exc
        return list(zip(tokens, logprobs, stopped_at))

    def _completion(self, gen: list[int], logprobs: list, stopped_at: int, stops: tuple[str, ...],
                    prompt_tokens: int) -> Completion:
        n, reason, text = finish_row(self.prompts, gen, stopped_at, stops, self.eos_ids)
        return Completion(text=text, tokens=n, logprob_sum=float(sum(x or 0.0 for x in logprobs[:n])),
                          finish_reason=reason, prompt_tokens=prompt_tokens)


def _common_prefix(ids: list[list[int]]) -> int:
    """Length of the token prefix shared by all rows, leaving each row >= 1 token of its own."""
    shortest = min(len(x) for x in ids)
    common = 0
    while common < shortest - 1 and all(x[common] == ids[0][common] for x in ids):
        common += 1
    return common


def _eos_ids(path: str, tok) -> set[int]:
    eos = None
    cfg = Path(path) / "generation_config.json"
    if cfg.is_file():
        eos = json.loads(cfg.read_text()).get("eos_token_id")
    if eos is None:
        eos = tok.eos_token_id
    return set(eos if isinstance(eos, list) else [eos] if eos is not None else [])


# ----------------------------------------------------------------------------------------------- conversion

def checkpoint_key(path: str | Path, compute_type: str) -> str:
    """A short hash of the checkpoint's files (name, size, mtime), the quantization and CTranslate2's version."""
    import ctranslate2

    root = Path(path)
    files = sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
                   for p in root.rglob("*") if p.is_file())
    blob = json.dumps([str(root.resolve()), compute_type, ctranslate2.__version__, files])
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def convert_checkpoint(path: str | Path, compute_type: str = "int8", *, trust_remote_code: bool = False,
                       cache_dir: str | None = None) -> Path:
    """The cached CTranslate2 conversion of the HF checkpoint at ``path`` (converting it first if needed), in
    ``cache_dir`` or ``<cache_root>/ct2``."""
    from ..models import _file_lock, cache_root

    root = Path(cache_dir).expanduser() if cache_dir else cache_root() / "ct2"
    target = root / f"{Path(path).name}-{checkpoint_key(path, compute_type)}"
    if (target / MARKER).is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with _file_lock(root / f".{target.name}.lock"):
        if (target / MARKER).is_file():  # another process converted it while we waited
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=root))
        try:
            _convert(path, tmp / "model", compute_type, trust_remote_code)
            if target.exists():
                shutil.rmtree(target)
            os.rename(tmp / "model", target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert(path, out: Path, compute_type: str, trust_remote_code: bool) -> None:
    import ctranslate2

    t0 = time.perf_counter()
    quantization = "int8" if compute_type.startswith("int8") else compute_type
    try:
        converter = ctranslate2.converters.TransformersConverter(str(path), load_as_float16=False,
                                                                 trust_remote_code=trust_remote_code)
        converter.convert(str(out), quantization=quantization, force=True)
    except Exception as exc:  # noqa: BLE001 - unsupported architecture, bad files...: one message for all
        raise BackendError(f"CTranslate2 cannot convert {path}: {exc}; use backend hf for this model") from exc
    (out / MARKER).write_text(json.dumps({"source": str(path), "quantization": quantization,
                                          "ctranslate2": ctranslate2.__version__,
                                          "seconds": round(time.perf_counter() - t0, 1)}, indent=2))
