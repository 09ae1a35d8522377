"""The ``openai`` backend: any OpenAI-compatible server (vLLM, SGLang, llama.cpp) via ``POST /v1/completions``.

The prompt is rendered here with the model's own tokenizer (so a partial assistant turn is continued
verbatim) and sent as token ids, which avoids a doubled BOS. Servers
differ; what we learn about each base URL is remembered for the backend's lifetime:
- token-id prompts rejected (llama-cpp-python accepts only strings) -> send the string, minus the BOS text
  when the tokenizer adds a BOS itself (the server will add it);
- ``n > 1`` rejected or silently ignored (llama.cpp) -> n separate requests with seeds
  ``seed, stable_seed(seed, 1), ...`` so the samples differ and stay reproducible.
Every sampling field is sent explicitly (server defaults differ: llama.cpp samples with top_k=40, min_p=0.05,
repeat_penalty=1.1 unless told otherwise). Requests run on a thread pool of ``concurrency`` workers, each
sent to the least-loaded base URL; connection errors, timeouts, 429 and 5xx are retried with exponential
backoff (preferring another URL), then reported as a BackendError naming the URL and the cause.

Reproducibility (``deterministic=True``): every request carries its own seed, and ``cache_prompt: false``
(llama.cpp's C++ server then evaluates the whole prompt each time). A llama.cpp server computes a token's
logits differently depending on how many tokens share its batch (different matrix kernels), so the same
request can give other samples after a prompt-cache hit. llama-cpp-python always reuses the cached prefix,
so it is reproducible only when it evaluates one token per batch: ``--n_batch 1 --n_ubatch 1``
(``LLAMA_CPP_DETERMINISTIC_ARGS``); then the same request gives the same output in any cache state, order or
concurrency. Measured with SmolLM2 Q4_1 on the contract-suite prompts (4 rounds of greedy n=2 + seeded n=2):
default batching gave 3 distinct greedy results and 2 distinct sampled ones, one token per batch gave 1 and 1
(and took ~1.4x the wall time: prompts are evaluated token by token, cached prefixes still reused). vLLM
batches requests together and promises no bitwise reproducibility.

Endpoint: ``base_url`` and ``api_key`` default to ``$OPENAI_BASE_URL`` and ``$OPENAI_API_KEY``, as in the OpenAI
client (without them: ``http://127.0.0.1:8000/v1`` and no key).

``logprob_sum`` is the sum of the sampled tokens' log-probabilities as the server reports them (raw model
distribution for vLLM's default mode and llama.cpp), from the OpenAI ``token_logprobs`` list or llama.cpp's
``content: [{logprob}]`` list.
"""

from __future__ import annotations

import math
import os
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from urllib.parse import urlparse

from ..io import stable_seed
from ..types import Completion, GenParams
from .base import BackendError, validate_params
from .tokenizing import PromptTokenizer, cut_at_stop, load_tokenizer

_RETRY_STATUS = {408, 429, 500, 502, 503, 504}
# llama-cpp-python server flags for bit-reproducible outputs (see the module doc): one token per batch.
LLAMA_CPP_DETERMINISTIC_ARGS = ("--n_batch", "1", "--n_ubatch", "1")


DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"


def default_endpoint(base_url: str | Sequence[str] | None, api_key: str | None
                     ) -> tuple[str | Sequence[str], str | None]:
    """As the OpenAI client does: ``$OPENAI_BASE_URL`` when no base_url is given (else a local server on port
    8000), ``$OPENAI_API_KEY`` when no api_key is given (``api_key=""`` sends none)."""
    if base_url is None:
        base_url = os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
    if api_key is None:
        api_key = os.environ.get("OPENAI_API_KEY") or None
    return base_url, api_key


def normalize_base_url(url: str) -> str:
    """``http://host:port`` -> ``http://host:port/v1``; a URL with a path is kept as given."""
    url = url.strip().rstrip("/")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise BackendError(f"base_url {url!r} is not an http(s) URL; write e.g. http://127.0.0.1:8000/v1")
    return url if parsed.path not in ("", "/") else url + "/v1"


class _Server:
    def __init__(self, url: str):
        self.url = url
        self.inflight = 0
        self.token_ids: bool | None = None  # None = not known yet
        self.multi_n: bool | None = None
        self.top_k_off = -1  # "no top-k": -1 for vLLM/SGLang; llama-cpp-python rejects -1 and wants 0
        self.model: str | None = None


class _RequestFailed(Exception):
    def __init__(self, server: _Server, status: int | None, cause: str):
        super().__init__(cause)
        self.server, self.status, self.cause = server, status, cause


class OpenAIBackend:
    """Policy talking to one or more OpenAI-compatible servers (see module doc)."""

    name = "openai"
    deterministic = False  # the class default (Policy protocol); __init__ sets the instance's
    queues_requests = True  # the thread pool and the server's own batching schedule any number of prompts

    def __init__(self, model: str, *, base_url: str | Sequence[str] | None = None,
                 tokenizer: str | None = None, server_model: str | None = None, api_key: str | None = None,
                 concurrency: int = 8, timeout: float = 300.0, max_retries: int = 4, backoff: float = 0.5,
                 top_k: int | None = None, min_p: float = 0.0, deterministic: bool = False,
                 chat_template: str | None = None):
        import httpx

        from ..models import resolve_model

        base_url, api_key = default_endpoint(base_url, api_key)
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if not urls:
            raise BackendError("openai backend needs at least one base_url")
        self.servers = [_Server(normalize_base_url(u)) for u in urls]
        self.model_name = model
        self.server_model = server_model
        self.deterministic = bool(deterministic)  # true for llama.cpp with a seed; vLLM batching is not bitwise
        self.concurrency, self.max_retries, self.backoff = int(concurrency), int(max_retries), float(backoff)
        self.top_k, self.min_p = (None if top_k is None else int(top_k)), float(min_p)
        self.prompts = PromptTokenizer(load_tokenizer(resolve_model(tokenizer or model), chat_template=chat_template))
        self._special_ids = set(self.prompts.tok.all_special_ids)  # an EOS in llama-server's log-prob list
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)), headers=headers,
                                    limits=httpx.Limits(max_connections=self.concurrency * len(self.servers)))
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="astro-openai")
        self._lock = threading.Lock()
        self._rr = 0
        self._closed = False

    # ------------------------------------------------------------------------------------ Policy API
    def apply_chat_template(self, messages: Sequence[dict[str, str]], continue_text: str = "") -> str:
        return self.prompts.apply_chat_template(messages, continue_text)

    def count_tokens(self, text: str) -> int:
        return self.prompts.count_tokens(text)

    def close(self) -> None:
        self._closed = True
        self._pool.shutdown(wait=True)
        self._client.close()

    def generate(self, prompts: Sequence[str], params: GenParams) -> list[list[Completion]]:
        if self._closed:
            raise BackendError("this OpenAIBackend was closed; create a new one")
        validate_params(params)
        # Once any server has shown it cannot do n > 1, send one request per sample from the start (in
        # parallel); otherwise one request per prompt asks for all n.
        split = params.n > 1 and any(s.multi_n is False for s in self.servers)
        jobs = [(i, list(range(params.n)) if not split else [j]) for i in range(len(prompts))
                for j in (range(params.n) if split else [0])]
        if params.seeds is not None and len(params.seeds) != len(prompts):
            raise BackendError(f"GenParams.seeds has {len(params.seeds)} seeds for {len(prompts)} prompts")
        # Per-prompt seeds: each prompt's requests are seeded as a one-prompt call with seed=seeds[i].
        per = [params if params.seeds is None else replace(params, seed=params.seeds[i], seeds=None)
               for i in range(len(prompts))]
        futures = [self._pool.submit(self._samples, prompts[i], per[i], samples) for i, samples in jobs]
        out: list[list[Completion]] = [[] for _ in prompts]
        for (i, _), fut in zip(jobs, futures):
            out[i].extend(fut.result())
        return out

    # ------------------------------------------------------------------------------------ internals
    def _samples(self, prompt: str, params: GenParams, samples: list[int]) -> list[Completion]:
        """Completions for sample indices ``samples`` of one prompt (falls back to one request each)."""
        ids = self.prompts.encode_prompt(prompt)
        got = self._request(prompt, ids, params, samples[0], len(samples))
        for j in samples[len(got):]:  # the server returned fewer choices than asked: n unsupported
            got += self._request(prompt, ids, params, j, 1)
        return got[: len(samples)]

    def _request(self, prompt: str, ids: list[int], params: GenParams, sample: int, n: int) -> list[Completion]:
        body = {"max_tokens": params.max_tokens, "temperature": params.temperature, "top_p": params.top_p,
                "min_p": self.min_p, "n": n, "stop": list(params.stop), "logprobs": 1,
                "stream": False, "echo": False, "presence_penalty": 0.0, "frequency_penalty": 0.0,
                "repetition_penalty": 1.0, "repeat_penalty": 1.0}  # both spellings: vLLM/SGLang and llama.cpp
        if params.seed is not None:
            body["seed"] = params.seed if sample == 0 else stable_seed(params.seed, sample)
        if self.deterministic:
            body["cache_prompt"] = False  # llama.cpp C++ server: no KV reuse across requests (module doc)
        last: _RequestFailed | None = None
        for attempt in range(self.max_retries + 1):
            server = self._pick(avoid=last.server if last else None)
            try:
                data = self._post(server, body, prompt, ids)
            except _RequestFailed as exc:
                if n > 1 and exc.status is not None and 400 <= exc.status < 500 and exc.status != 429:
                    exc.server.multi_n = False  # e.g. older llama.cpp: "Only one completion choice is allowed"
                    return []  # the caller asks again, one sample per request
                if exc.status is not None and exc.status not in _RETRY_STATUS:
                    raise BackendError(f"{exc.server.url}/completions rejected the request "
                                       f"(HTTP {exc.status}): {exc.cause} [{_describe(body, ids, prompt)}]") from None
                last = exc
                if attempt < self.max_retries:
                    time.sleep(self.backoff * 2 ** attempt * (1 + 0.25 * random.random()))
                continue
            choices = sorted(data.get("choices") or [], key=lambda c: c.get("index", 0))
            if n > 1 and len(choices) < n:
                server.multi_n = False
            elif n > 1:
                server.multi_n = True
            if not choices:
                raise BackendError(f"{server.url}/completions returned no choices: {str(data)[:300]}")
            usage = data.get("usage") or {}
            return [self._completion(c, params.stop, usage if len(choices) == 1 else {}, len(ids), server,
                                     params.max_tokens) for c in choices[:n]]
        assert last is not None
        raise BackendError(f"{last.server.url}/completions failed after {self.max_retries + 1} attempts: "
                           f"{last.cause} [{_describe(body, ids, prompt)}]. Is the server running and reachable? "
                           "Check the base_url option, or raise timeout/max_retries for a slow server; finished "
                           "work is kept and the same command resumes.")

    def _pick(self, avoid: _Server | None) -> _Server:
        with self._lock:
            pool = [s for s in self.servers if s is not avoid] or self.servers
            self._rr += 1
            least = min(s.inflight for s in pool)
            tied = [s for s in pool if s.inflight == least]
            return tied[self._rr % len(tied)]

    def _post(self, server: _Server, body: dict, prompt: str, ids: list[int]) -> dict:
        import httpx

        with self._lock:
            server.inflight += 1
        try:
            if server.model is None:
                server.model = self._discover_model(server)
            body = dict(body, model=server.model, top_k=server.top_k_off if self.top_k is None else self.top_k)
            resp = self._send(server, body, prompt, ids)
            if body["top_k"] == -1 and self.top_k is None and _rejected(resp, "top_k"):
                server.top_k_off = 0
                resp = self._send(server, dict(body, top_k=0), prompt, ids)
        except httpx.TimeoutException as exc:
            raise _RequestFailed(server, None, f"timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise _RequestFailed(server, None, f"{type(exc).__name__}: {exc}") from None
        finally:
            with self._lock:
                server.inflight -= 1
        if resp.status_code >= 400:
            # llama-cpp-python reports request validation errors as HTTP 500: do not retry those
            status = 400 if _rejected(resp, "") else resp.status_code
            raise _RequestFailed(server, status, resp.text[:500])
        try:
            return resp.json()
        except ValueError:
            raise _RequestFailed(server, 502, f"response is not JSON: {resp.text[:200]!r}") from None

    def _send(self, server: _Server, body: dict, prompt: str, ids: list[int]):
        """POST with a token-id prompt, or the string when this server has rejected token ids."""
        if server.token_ids is not False:
            resp = self._client.post(f"{server.url}/completions", json=dict(body, prompt=ids))
            if server.token_ids is not True and _rejected(resp, "prompt"):
                server.token_ids = False  # e.g. llama-cpp-python: the prompt must be a string
            else:
                if resp.status_code < 400:
                    server.token_ids = True
                return resp
        return self._client.post(f"{server.url}/completions",
                                 json=dict(body, prompt=self.prompts.strip_prefix_text(prompt)))

    def _discover_model(self, server: _Server) -> str:
        """The name to ask ``server`` for: ``server_model`` or our model name, which the server must serve.

        A server that serves another model is an error, never a silent substitute: the pipeline evaluates
        each checkpoint with that checkpoint, and a base model answering for a trained one would corrupt
        every table (issue: the right model, always). A server without ``/v1/models`` is asked by name."""
        import httpx

        want = self.server_model or self.model_name
        try:
            resp = self._client.get(f"{server.url}/models")
        except httpx.TimeoutException as exc:
            raise _RequestFailed(server, None, f"timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise _RequestFailed(server, None, f"{type(exc).__name__}: {exc}") from None
        if resp.status_code in _RETRY_STATUS:
            raise _RequestFailed(server, resp.status_code, f"GET /models: HTTP {resp.status_code}: {resp.text[:200]}")
        try:
            ids = [str(m["id"]) for m in resp.json().get("data", [])] if resp.status_code == 200 else []
        except (ValueError, AttributeError, KeyError, TypeError):
            ids = []
        if not ids or want in ids:
            return want
        raise BackendError(f"{server.url} does not serve model {want!r}; it serves: {', '.join(ids)}. Start the "
                           f"server with this model under this name (llama-cpp-python: --model_alias; vLLM: "
                           f"--served-model-name), or name the served model with the backend option "
                           f"server_model=<one of the above> if it really is the same model")

    def _completion(self, choice: dict, stops: Sequence[str], usage: dict, prompt_len: int,
                    server: _Server, max_tokens: int) -> Completion:
        text = choice.get("text") or ""
        tokens, logprob_sum, token_text = _parse_logprobs(choice.get("logprobs"))
        if logprob_sum is None and stops and choice.get("finish_reason") == "stop":
            # llama-server sends no log-probs when the token that completed a stop string came first (it withholds
            # stop-string tokens), or when only bytes of an unfinished UTF-8 character precede it. An empty sample
            # is dropped by callers; a non-empty one gets a floor of -20 nats per token (a negligible prior)
            # rather than a guess that could make it look likely.
            n = max(1, int(usage.get("completion_tokens") or 0), self.count_tokens(text) + 1 if text else 1)
            return Completion(text=text, tokens=n, logprob_sum=-20.0 * (n - 1), finish_reason="stop",
                              prompt_tokens=int(usage.get("prompt_tokens") or prompt_len))
        if logprob_sum is None or not math.isfinite(logprob_sum):
            raise BackendError(f"{server.url}/completions returned no usable logprobs ({choice.get('logprobs')!r:.200}); "
                               "the search needs them for its priors - start the server with logprobs enabled "
                               "(llama-cpp-python: logits_all=True, the default)")
        text, trimmed = cut_at_stop(text, stops)  # a server told to keep stop strings in the output
        reason = choice.get("finish_reason") or "stop"
        if reason != "length":
            matched = choice.get("stop_reason", choice.get("matched_stop"))  # vLLM / SGLang
            if isinstance(matched, str) or trimmed:
                reason = "stop"
            elif matched is not None or "stop_reason" in choice or "matched_stop" in choice:
                reason = "eos"  # a token id or null: ended by EOS
            elif token_text is not None:
                # llama-cpp-python (and older llama-server) list the token carrying the stop string; today's
                # llama-server withholds it from the log-probs, and lists an EOS token (a special id, empty text)
                rest = token_text[len(text):] if token_text.startswith(text) else ""
                if any(s and s in rest for s in stops):
                    reason = "stop"
                elif stops and _is_llama_server(choice) and _last_id(choice) not in self._special_ids:
                    reason = "stop"
                    tokens += 1  # the withheld stop-string token was generated, so it counts
                else:
                    reason = "eos"
            else:
                reason = "stop" if stops else "eos"
        # per-choice count when the log-probs give one: llama-server's usage covers only one of n choices
        n_tokens = (tokens if token_text is not None and tokens else usage.get("completion_tokens")) or tokens \
            or self.count_tokens(text)
        if reason == "length":
            # A length finish generated exactly max_tokens. llama-server leaves a token whose bytes end inside a
            # multi-byte character out of its log-prob list (it sends text only at character boundaries), so
            # the list can be shorter than what was generated (a fresh-clone CI run: 12 listed of 16).
            n_tokens = max(int(n_tokens), max_tokens)
        return Completion(text=text, tokens=int(n_tokens), logprob_sum=float(logprob_sum), finish_reason=reason,
                          prompt_tokens=int(usage.get("prompt_tokens") or prompt_len))


def _describe(body: dict, ids: list[int], prompt: str) -> str:
    """The failed request in one line: its sampling fields and where the prompt ends."""
    tail = prompt[-60:].replace("\n", "\\n")
    return (f"request: n={body.get('n')} max_tokens={body.get('max_tokens')} temperature={body.get('temperature')} "
            f"seed={body.get('seed')} prompt of {len(ids)} tokens ending {tail!r}")


def _rejected(resp, field: str) -> bool:
    """Did the server refuse the request as invalid (mentioning ``field``)? 400/422, or a 500 carrying a
    validation error (llama-cpp-python)."""
    if resp.status_code in (400, 422) or (resp.status_code == 500 and "validation error" in resp.text):
        return field in resp.text
    return False


def _is_llama_server(choice: dict) -> bool:
    lp = choice.get("logprobs")
    return isinstance(lp, dict) and isinstance(lp.get("content"), list)


def _last_id(choice: dict) -> int | None:
    """The id of the last token in a llama.cpp-style log-prob list, if any."""
    items = (choice.get("logprobs") or {}).get("content") if isinstance(choice.get("logprobs"), dict) else None
    return items[-1].get("id") if isinstance(items, list) and items and isinstance(items[-1], dict) else None


def _parse_logprobs(lp) -> tuple[int, float | None, str | None]:
    """(token count, sum of sampled-token logprobs, concatenated token texts) from either format."""
    if not isinstance(lp, dict):
        return 0, None, None
    if isinstance(lp.get("token_logprobs"), list):  # OpenAI legacy: vLLM, SGLang, llama-cpp-python
        values = [v for v in lp["token_logprobs"] if v is not None]
        toks = lp.get("tokens")
        return len(lp["token_logprobs"]), float(sum(values)), "".join(toks) if isinstance(toks, list) else None
    if isinstance(lp.get("content"), list):  # llama.cpp server (C++): chat-style entries
        items = lp["content"]
        return (len(items), float(sum(float(it.get("logprob", 0.0)) for it in items)),
                "".join(str(it.get("token", "")) for it in items))
    return 0, None, None
