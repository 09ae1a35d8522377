"""The one small Protocol every LM backend implements (and every test double too).

A backend turns a batch of already-rendered prompt strings into ``n`` continuations each. Prompt rendering
(chat template + a partial assistant turn to continue) is also the backend's job, because only it knows the
tokenizer; the search core never sees prompt text (it calls a prompt builder that calls this).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ..errors import BackendError  # noqa: F401 (defined in errors.py: models.py raises it too)
from ..types import Completion, GenParams


def validate_params(params: GenParams) -> None:
    """Raise BackendError for sampling parameters no backend can honour. Every backend calls it first, so
    the same bad value gets the same message whichever backend runs (here: it imports no torch)."""
    if params.n < 1:
        raise BackendError(f"GenParams.n must be >= 1, got {params.n}")
    if params.max_tokens < 1:
        raise BackendError(f"GenParams.max_tokens must be >= 1, got {params.max_tokens}")
    if params.temperature < 0:
        raise BackendError(f"GenParams.temperature must be >= 0 (0 = greedy), got {params.temperature}")
    if not 0 < params.top_p <= 1:
        raise BackendError(f"GenParams.top_p must be in (0, 1], got {params.top_p}")
    if isinstance(params.stop, str):
        raise BackendError("GenParams.stop must be a tuple of strings, not one string; write stop=('\\n\\n',)")


@runtime_checkable
class Policy(Protocol):
    """An LM that continues text.

    ``generate(prompts, params)`` returns, for each prompt, ``params.n`` :class:`Completion` objects.
    Stop strings are honoured per sequence and not included in ``Completion.text``; the finish reason says
    which limit ended the continuation. With ``params.seed`` set, the same call returns the same output where
    the backend can promise it (``deterministic`` tells). ``params.seeds`` (one per prompt, optional) seeds each
    prompt on its own, independent of the batch; a backend that cannot do that falls back to ``params.seed``.
    Optional attribute ``queues_requests`` (default False): True when the backend schedules any number of
    prompts itself (a server with continuous batching), so callers send a whole wave in one call instead of
    chunks of ``batch_size``.
    """

    name: str
    deterministic: bool

    def generate(self, prompts: Sequence[str], params: GenParams) -> list[list[Completion]]: ...

    def apply_chat_template(self, messages: Sequence[dict[str, str]], continue_text: str = "") -> str:
        """Render ``messages`` with the model's chat template, opening an assistant turn, then append
        ``continue_text`` verbatim (a partial assistant answer to continue; no whitespace trimming)."""
        ...

    def count_tokens(self, text: str) -> int: ...

    def close(self) -> None: ...
