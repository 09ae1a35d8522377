"""Client-side prompt rendering and tokenization shared by the ``hf`` and ``openai`` backends.

Both backends render the chat template themselves (so a partial assistant turn is continued verbatim, with
no whitespace trimming) and turn the rendered string into token ids without
doubling the BOS: a rendered chat template usually starts with the BOS text already, and tokenizing it
again with special tokens on would prepend a second one.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from .base import BackendError


def load_tokenizer(path: str, *, chat_template: str | None = None, trust_remote_code: bool = False):
    """``AutoTokenizer.from_pretrained(path)``, with errors turned into BackendError and an optional chat
    template override (a Jinja string or a path to a ``.jinja`` file) for models that ship none."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception as exc:  # noqa: BLE001 - OSError/ValueError/... all mean "cannot load this tokenizer"
        raise BackendError(f"cannot load the tokenizer of {path!r}: {exc}") from exc
    if chat_template:
        template_path = Path(chat_template).expanduser()
        if len(chat_template) < 4096 and template_path.suffix == ".jinja":
            if not template_path.is_file():
                raise BackendError(f"chat_template file {template_path} does not exist")
            chat_template = template_path.read_text()
        tok.chat_template = chat_template
    return tok


class PromptTokenizer:
    """Renders chat prompts and tokenizes them the way the model expects (no doubled BOS)."""

    def __init__(self, tokenizer):
        self.tok = tokenizer
        # transformers reconfigures the Rust tokenizer's padding/truncation on each call; concurrent calls
        # from the openai backend's worker threads can then fail with "Already borrowed".
        self._lock = threading.Lock()
        # The special tokens the tokenizer puts in front of a text by itself (usually [BOS] or nothing).
        with_special = tokenizer("a", add_special_tokens=True).input_ids
        plain = tokenizer("a", add_special_tokens=False).input_ids
        cut = len(with_special) - len(plain)
        self.prefix_ids: list[int] = with_special[:cut] if cut > 0 and with_special[cut:] == plain else []
        self.prefix_text = tokenizer.decode(self.prefix_ids) if self.prefix_ids else ""

    def apply_chat_template(self, messages: Sequence[dict[str, str]], continue_text: str = "") -> str:
        if not getattr(self.tok, "chat_template", None):
            raise BackendError(f"the tokenizer of {self.tok.name_or_path!r} has no chat template; use an "
                               "instruct/chat model or pass the backend option chat_template=<jinja string or "
                               "path to a .jinja file>")
        rendered = self.tok.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
        return rendered + continue_text  # verbatim: no trimming of the partial assistant turn

    def encode_prompt(self, text: str) -> list[int]:
        """Token ids for a prompt: the tokenizer's own prefix (BOS) unless the text already starts with it."""
        with self._lock:
            ids = self.tok(text, add_special_tokens=False).input_ids
        if self.prefix_ids and ids[: len(self.prefix_ids)] != self.prefix_ids:
            ids = self.prefix_ids + ids
        return ids

    def strip_prefix_text(self, text: str) -> str:
        """The prompt as a string for a server that adds the BOS itself (when it sees a string prompt, a
        server tokenizes with special tokens on, like this tokenizer does)."""
        if self.prefix_text and text.startswith(self.prefix_text):
            return text[len(self.prefix_text):]
        return text

    def count_tokens(self, text: str) -> int:
        with self._lock:
            return len(self.tok(text, add_special_tokens=False).input_ids)

    def decode(self, ids: Sequence[int]) -> str:
        with self._lock:
            return self.tok.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the first occurrence of any stop string, and whether one was found."""
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return (text[: min(hits)], True) if hits else (text, False)


def finish_row(prompts: "PromptTokenizer", gen: Sequence[int], stopped_at: int, stops: Sequence[str],
               eos_ids) -> tuple[int, str, str]:
    """(counted tokens, finish reason, text) of one generated row, the rule every in-process backend shares:
    a stop string completed at generated token ``stopped_at`` -> "stop" (text cut before it); else the first
    EOS -> "eos" (counted, not returned); else "length"."""
    if stopped_at:
        text, _ = cut_at_stop(prompts.decode(gen[:stopped_at]), stops)
        return stopped_at, "stop", text
    eos_at = next((k for k, t in enumerate(gen) if t in eos_ids), None)
    if eos_at is not None:
        return eos_at + 1, "eos", prompts.decode(gen[:eos_at])
    return len(gen), "length", prompts.decode(gen)
