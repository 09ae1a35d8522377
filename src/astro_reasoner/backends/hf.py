"""The ``hf`` backend: a transformers causal LM in this process (CPU or GPU).

Design (our choices, with reasons):
- ``model.generate`` (``decoding="generate"``) knows every architecture's cache and input preparation
  (hybrid/sliding caches, Gemma, Qwen3.5 ...), so "any causal LM" holds; our additions are two hooks that
  cost one ``log_softmax`` and one short ``batch_decode`` per step. The faster default for models with a
  standard KV cache is described next.
- The ``n`` samples of a prompt are separate rows; rows are sorted by prompt length (less left padding) and
  run in chunks of ``batch_size``. A row finished by EOS or a stop string gets padding while the others go on.
- ``decoding`` (our addition, default "auto"): "compact" prefills the prefix shared by a chunk's prompts
  once and each distinct prompt once, then decodes in our own loop that drops finished rows from the batch
  (:mod:`.hf_decode`; 2x+ faster on CPU search calls, same outputs up to float rounding); "shared-prefill"
  does the same prefill but lets ``generate`` decode; "generate" is plain ``generate``. "auto" picks
  "compact" unless the model cannot use a ``DynamicCache`` (recurrent/linear attention), then "generate".
- Stop strings are checked on the *generated* text only, per row (``_StopOnStrings``). transformers'
  own ``stop_strings`` also matches a stop string that starts inside the prompt (a prompt ending in "\\n\\n"
  followed by a generated "\\n" would stop at once), which OpenAI-compatible servers never do.
- ``logprob_sum`` is the sum of the sampled tokens' log-probabilities under the model's *raw* distribution
  (temperature 1, no top-p cut), recorded by ``_RawLogprobs`` before the sampling warpers run. It does not
  depend on the sampling settings, and it is what vLLM (default ``logprobs_mode``) and llama.cpp return too.
- Seeds: each chunk is seeded with ``stable_seed(params.seed, chunk)`` (a ``torch.Generator`` in "compact",
  ``torch.random.fork_rng`` around ``generate`` otherwise), so the same call gives the same output and the
  global RNG is left alone. Both draw with ``torch.multinomial`` (same samples until the first row of a chunk
  ends); once "compact" drops rows the later draws differ, so the modes agree exactly only when greedy.
  With ``params.seeds`` (one per prompt) "compact" gives every row its own generator,
  ``stable_seed(seeds[i], sample)``, so a prompt's samples do not depend on the rest of the batch (up to
  float rounding of batched matmuls; a resumed search relies on it); the other modes seed the chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager

from ..io import stable_seed
from ..types import Completion, GenParams
from .base import BackendError, validate_params
from .hf_decode import cache_kwarg, decode, prefill, stop_window, tails_with_stop
from .tokenizing import PromptTokenizer, finish_row, load_tokenizer

DECODING_MODES = ("auto", "compact", "shared-prefill", "generate")


class HFBackend:
    """Policy backed by ``AutoModelForCausalLM`` (see module doc). ``.model`` and ``.tokenizer`` are public."""

    name = "hf"
    deterministic = True  # same seed -> same output (same batch composition; CPU, or GPU with stable kernels)

    def __init__(self, model: str, *, device: str = "auto", dtype: str = "auto", batch_size: int = 16,
                 threads: int | None = None, chat_template: str | None = None, trust_remote_code: bool = False,
                 decoding: str = "auto"):
        import torch
        from transformers import AutoModelForCausalLM

        from ..models import resolve_model

        if decoding not in DECODING_MODES:  # before the model loads: a typo fails in a second
            raise BackendError(f"decoding={decoding!r}: use one of {', '.join(DECODING_MODES)}")
        if threads is not None:
            torch.set_num_threads(int(threads))  # process-wide: torch has no per-model thread count
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype == "auto":  # fp32 on CPU (bf16 matmuls are slow there), bf16 on GPU
            dtype = "bfloat16" if device.startswith("cuda") else "float32"
        path = resolve_model(model)
        self.model_path = path
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        tok = load_tokenizer(path, chat_template=chat_template, trust_remote_code=trust_remote_code)
        try:
            self.model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype),
                                                              trust_remote_code=trust_remote_code)
        except Exception as exc:  # noqa: BLE001
            raise BackendError(f"cannot load model {model!r} ({path}) with transformers: {exc}") from exc
        self.model.to(self.device).eval()
        tok.padding_side = "left"
        self.tokenizer = tok
        self.prompts = PromptTokenizer(tok)
        eos = self.model.generation_config.eos_token_id
        eos = eos if eos is not None else tok.eos_token_id
        self.eos_ids: set[int] = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        pad = tok.pad_token_id if tok.pad_token_id is not None else self.model.generation_config.pad_token_id
        self.pad_id: int = pad if pad is not None else (min(self.eos_ids) if self.eos_ids else 0)
        self.decoding = self._pick_decoding(decoding)

    # ------------------------------------------------------------------------------------ Policy API
    def apply_chat_template(self, messages: Sequence[dict[str, str]], continue_text: str = "") -> str:
        return self.prompts.apply_chat_template(messages, continue_text)

    def count_tokens(self, text: str) -> int:
        return self.prompts.count_tokens(text)

    def close(self) -> None:
        import gc

        import torch

        self.model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def generate(self, prompts: Sequence[str], params: GenParams) -> list[list[Completion]]:
        if self.model is None:
            raise BackendError("this HFBackend was closed; create a new one")
        validate_params(params)
        encoded = [self.prompts.encode_prompt(p) for p in prompts]
        rows = [(i, j) for i in range(len(prompts)) for j in range(params.n)]
        rows.sort(key=lambda r: -len(encoded[r[0]]))  # stable: samples of a prompt stay together
        if params.seeds is not None and len(params.seeds) != len(prompts):
            raise BackendError(f"GenParams.seeds has {len(params.seeds)} seeds for {len(prompts)} prompts")
        out: list[list[Completion | None]] = [[None] * params.n for _ in prompts]
        for chunk_no, start in enumerate(range(0, len(rows), self.batch_size)):
            chunk = rows[start:start + self.batch_size]
            seed: int | list[int] | None = None if params.seed is None else stable_seed(params.seed, chunk_no)
            if params.seeds is not None and self.decoding == "compact":
                # one generator per row, seeded from its prompt's seed and sample index: the row's draws do
                # not depend on the other rows of the batch (the other modes can only seed a whole chunk)
                seed = [stable_seed(params.seeds[i], j) for i, j in chunk]
            for (i, j), comp in zip(chunk, self._generate_rows([encoded[i] for i, _ in chunk], params, seed)):
                out[i][j] = comp
        return out  # type: ignore[return-value]

    # ------------------------------------------------------------------------------------ internals
    def _pick_decoding(self, decoding: str) -> str:
        cacheable = (self.model._supports_default_dynamic_cache() and "mamba" not in type(self.model).__name__.lower()
                     and self.model.generation_config.cache_implementation is None)
        if decoding == "auto":
            return "compact" if cacheable else "generate"
        if decoding != "generate" and not cacheable:
            raise BackendError(f"decoding={decoding!r} needs a model that uses transformers' DynamicCache; "
                               f"{type(self.model).__name__} does not: use decoding=generate (or auto)")
        return decoding

    def _generate_rows(self, ids: list[list[int]], params: GenParams, seed: int | list[int] | None
                       ) -> list[Completion]:
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        stops = tuple(s for s in params.stop if s)
        cache = None
        if self.decoding == "generate":
            width = max(len(x) for x in ids)
            input_ids = torch.tensor([[self.pad_id] * (width - len(x)) + x for x in ids], device=self.device)
            mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=self.device)
        else:
            with torch.no_grad(), self._out_of_memory_hint(len(ids), max(map(len, ids)), params):
                input_ids, mask, cache = prefill(self.model, ids, self.pad_id, self.device)
            if self.decoding == "compact":
                return self._generate_compact(ids, input_ids, mask, cache, params, seed, stops)
        width = input_ids.shape[1]
        recorder = _RawLogprobs()
        stopper = _StopOnStrings(self.prompts, stops, width, len(ids), self.eos_ids)
        sampling = params.temperature > 0
        kwargs = dict(max_new_tokens=params.max_tokens, do_sample=sampling, num_beams=1, num_return_sequences=1,
                      pad_token_id=self.pad_id, eos_token_id=sorted(self.eos_ids),
                      repetition_penalty=1.0, no_repeat_ngram_size=0, typical_p=1.0)
        if sampling:  # top_k=0 switches off transformers' default top-k of 50
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
            if self.model.generation_config.min_p is not None:
                kwargs["min_p"] = 0.0
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.no_grad(), torch.random.fork_rng(devices=devices, enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            with self._out_of_memory_hint(len(ids), width, params):
                seqs = self.model.generate(input_ids=input_ids, attention_mask=mask, **{cache_kwarg(self.model): cache},
                                           logits_processor=LogitsProcessorList([recorder]),
                                           stopping_criteria=StoppingCriteriaList([stopper]) if stops else None,
                                           **kwargs)
        gen = seqs[:, width:]
        logprobs = recorder.per_token(gen).cpu()
        gen_rows = gen.cpu().tolist()
        return [self._completion(gen_rows[r], logprobs[r], stopper.stopped_at[r], stops, len(ids[r]))
                for r in range(len(ids))]

    def _generate_compact(self, ids, input_ids, mask, cache, params: GenParams, seed: int | list[int] | None,
                          stops: tuple[str, ...]) -> list[Completion]:
        import torch

        with torch.no_grad(), self._out_of_memory_hint(len(ids), input_ids.shape[1], params):
            rows = decode(self.model, input_ids, mask, cache, max_tokens=params.max_tokens,
                          temperature=params.temperature, top_p=params.top_p, eos_ids=self.eos_ids, stops=stops,
                          tokenizer=self.prompts.tok, seed=seed)
        return [self._completion(r.tokens, torch.tensor(r.logprobs), r.stopped_at, stops, len(x))
                for r, x in zip(rows, ids)]

    @contextmanager
    def _out_of_memory_hint(self, rows: int, width: int, params: GenParams):
        """Turn torch's out-of-memory error into a BackendError that says which knob to turn."""
        import torch

        try:
            yield
        except torch.OutOfMemoryError as exc:
            raise BackendError(f"out of memory generating a batch of {rows} x {width} prompt tokens "
                               f"+ {params.max_tokens} new; lower batch_size (now {self.batch_size})") from exc

    def _completion(self, gen: list[int], logprobs, stopped_at: int, stops: tuple[str, ...],
                    prompt_tokens: int) -> Completion:
        n, reason, text = finish_row(self.prompts, gen, stopped_at, stops, self.eos_ids)
        return Completion(text=text, tokens=n, logprob_sum=float(logprobs[:n].sum()), finish_reason=reason,
                          prompt_tokens=prompt_tokens)


class _RawLogprobs:
    """A logits processor that records log p(sampled token) under the raw distribution.

    transformers runs custom processors before the sampling warpers (temperature, top-k, top-p), so the
    scores seen here are the model's own. The token sampled at step t is only visible at step t+1 (as the
    last input id), so each call gathers the previous step's value; ``per_token`` adds the final step's.
    """

    def __init__(self):
        self.values: list = []
        self.last = None

    def __call__(self, input_ids, scores):
        import torch

        if self.last is not None:
            self.values.append(self.last.gather(1, input_ids[:, -1:]).squeeze(1))
        self.last = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def per_token(self, gen):
        """[batch, generated] log-probs of ``gen`` (the generated ids)."""
        import torch

        if self.last is not None and len(self.values) < gen.shape[1]:
            self.values.append(self.last.gather(1, gen[:, -1:]).squeeze(1))
            self.last = None
        if not self.values:
            return torch.zeros(gen.shape)
        return torch.stack(self.values, dim=1)


class _StopOnStrings:
    """Per-row stopping on stop strings in the generated text only (see module doc).

    At each step, each unfinished row decodes its last few generated tokens (enough to hold any stop string
    plus the newest token, which may carry text after the stop string) and checks for a stop string. Rows
    that ended with EOS are skipped. ``stopped_at[r]`` is the number of generated tokens at the stop, or 0.
    """

    def __init__(self, prompts: PromptTokenizer, stops: tuple[str, ...], prompt_width: int, batch: int,
                 eos_ids: set[int]):
        self.prompts, self.stops, self.width, self.eos_ids = prompts, stops, prompt_width, eos_ids
        self.window = stop_window(stops)
        self.stopped_at = [0] * batch
        self.ended = [False] * batch

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        generated = input_ids.shape[1] - self.width
        last = input_ids[:, -1].tolist()
        todo = []
        for r, tok in enumerate(last):
            if not self.ended[r]:
                if tok in self.eos_ids:
                    self.ended[r] = True
                else:
                    todo.append(r)
        if todo:
            lo = self.width + max(0, generated - self.window)
            for r, hit in zip(todo, tails_with_stop(self.prompts.tok, input_ids[todo, lo:].tolist(), self.stops)):
                if hit:
                    self.stopped_at[r] = generated
                    self.ended[r] = True
        return torch.tensor([s > 0 for s in self.stopped_at], device=input_ids.device)
