"""LM backends behind one Protocol (``base.Policy``), built by name with ``make_backend``.

Kinds: ``hf`` (transformers in this process), ``llamacpp`` (llama.cpp's C++ server, started and stopped
here; the fast CPU engine, see BENCHMARKS.md "Engines"), ``ct2`` (CTranslate2 int8 in this process; a candidate CPU engine
that is not faster than ``hf`` on the search workload, see BENCHMARKS.md "Engines") and ``openai`` (any
OpenAI-compatible server). Heavy imports (torch, transformers, httpx) happen when a backend is built, not when this package is imported.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from .base import BackendError, Policy

if TYPE_CHECKING:
    from .ct2 import CT2Backend
    from .hf import HFBackend
    from .llamacpp import LlamaServerBackend
    from .openai_http import OpenAIBackend

__all__ = ["BackendError", "Policy", "HFBackend", "CT2Backend", "OpenAIBackend", "LlamaServerBackend",
           "make_backend", "BACKEND_KINDS"]

BACKEND_KINDS = ("auto", "hf", "llamacpp", "ct2", "openai")


def resolve_kind(kind: str) -> str:
    """``auto`` -> ``llamacpp`` when a llama-server binary is installed (``make setup`` builds one), else ``hf``:
    the faster CPU engine for search, evaluation and the difficulty filter (BENCHMARKS.md, "Engines")."""
    if kind != "auto":
        return kind
    from .llamacpp import find_llama_server

    return "llamacpp" if find_llama_server() is not None else "hf"


def _backend_class(kind: str):
    if kind == "hf":
        from .hf import HFBackend

        return HFBackend
    if kind == "ct2":
        from .ct2 import CT2Backend

        return CT2Backend
    if kind == "openai":
        from .openai_http import OpenAIBackend

        return OpenAIBackend
    if kind == "llamacpp":
        from .llamacpp import LlamaServerBackend

        return LlamaServerBackend
    raise BackendError(f"unknown backend kind {kind!r}; choose one of {', '.join(BACKEND_KINDS)}")


def backend_options(kind: str) -> dict[str, Any]:
    """The options ``make_backend(kind, ...)`` accepts, with their defaults."""
    params = inspect.signature(_backend_class(resolve_kind(kind)).__init__).parameters
    return {n: p.default for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def make_backend(kind: str, model: str, **options: Any) -> Policy:
    """Build a backend: ``make_backend("hf", "smollm2-135m", batch_size=32)``,
    ``make_backend("openai", "smollm2-135m", base_url=["http://h1:8000/v1", "http://h2:8000/v1"])``.

    Option names and types are checked here so a typo in a config file fails before any model loads.
    ``kind="auto"`` picks ``llamacpp`` if its server binary is installed, else ``hf`` (``resolve_kind``).
    """
    kind = resolve_kind(kind)
    cls = _backend_class(kind)
    allowed = backend_options(kind)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        from ..config import did_you_mean

        raise BackendError(f"unknown option(s) {did_you_mean(unknown, allowed)} for backend {kind!r}; "
                           f"valid options: {', '.join(sorted(allowed))}")
    for key, value in options.items():
        _check_option(kind, key, value, allowed[key])
    if not model:
        raise BackendError(f"backend {kind!r} needs a model (a path, hub id, .gguf file or alias such as smollm2-135m)")
    return cls(model, **options)


def _check_option(kind: str, key: str, value: Any, default: Any) -> None:
    where = f"backend {kind!r} option {key}={value!r}"
    if key in ("batch_size", "concurrency", "threads", "parallel", "ctx_per_slot") and value is not None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BackendError(f"{where}: must be a positive integer")
    elif key in ("timeout", "backoff", "min_p") and (isinstance(value, bool) or not isinstance(value, (int, float))
                                                       or value < 0):
        raise BackendError(f"{where}: must be a non-negative number")
    elif key in ("max_retries", "top_k") and value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                              or value < (-1 if key == "top_k" else 0)):
        raise BackendError(f"{where}: must be an integer >= {-1 if key == 'top_k' else 0}")
    elif key == "base_url" and not (isinstance(value, str) or (isinstance(value, (list, tuple)) and value
                                                               and all(isinstance(v, str) for v in value))):
        raise BackendError(f"{where}: must be a URL or a non-empty list of URLs")
    elif key == "device" and not (isinstance(value, str) and (value in ("auto", "cpu", "mps")
                                                              or value.startswith("cuda"))):
        raise BackendError(f"{where}: use auto, cpu, cuda, cuda:N or mps")
    elif key == "outtype" and value not in ("q8_0", "f32", "f16"):
        raise BackendError(f"{where}: use q8_0, f32 or f16")
    elif key == "compute_type" and value not in ("int8", "int8_float32", "int16", "float32"):
        raise BackendError(f"{where}: use int8, int8_float32, int16 or float32")
    elif key == "dtype" and value not in ("auto", "float32", "bfloat16", "float16"):
        raise BackendError(f"{where}: use auto, float32, bfloat16 or float16")
    elif isinstance(default, bool) and not isinstance(value, bool):
        raise BackendError(f"{where}: must be true or false")


def __getattr__(name: str):  # lazy exports: `from astro_reasoner.backends import HFBackend`
    if name == "HFBackend":
        return _backend_class("hf")
    if name == "CT2Backend":
        return _backend_class("ct2")
    if name == "OpenAIBackend":
        return _backend_class("openai")
    if name == "LlamaServerBackend":
        return _backend_class("llamacpp")
    raise AttributeError(name)
