"""The one small Protocol every LM backend implements (and every test double too).

A backend turns a batch of already-rendered prompt strings into ``n`` continuations each. Prompt rendering
(chat template + a partial assistant turn to continue) is also the backend's job, because only it knows the
tokenizer; the search core never sees prompt text (it calls a prompt builder that calls this).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ..types import Completion, GenParams


class BackendError(RuntimeError):
    """A backend failed in a way the caller should report (bad model path, server down, OOM...)."""


@runtime_checkable
class Policy(Protocol):
    """An LM that continues text.

    ``generate(prompts, params)`` returns, for each prompt, ``params.n`` :class:`Completion` objects.
    Stop strings are honoured per sequence and not included in ``Completion.text``; the finish reason says
    which limit ended the continuation. With ``params.seed`` set, the same call returns the same output where
    the backend can promise it (``deterministic`` tells). ``params.seeds`` (one per prompt, optional) seeds each
    prompt on its own, independent of the batch; a backend that cannot do that falls back to ``params.seed``.
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
