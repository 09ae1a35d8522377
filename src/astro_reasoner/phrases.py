"""The phrase banks file (``phrases.yaml``): loading and checking it.

One file feeds both the renderer (``clone.render``: the neutral reflection question, doubt, confirmation,
backtrack and final-answer phrases, bare markers for the ``phrases=false`` ablation; ASTRO §2.3) and the
behaviour counter (``behaviour``: its cue patterns, plus every bank phrase as an exact pattern). Every bank
names its source in ``sources``. Edit the packaged file, or pass your own with ``phrases_file=PATH``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from .config import ConfigError, safe_load
from .text import PARAGRAPH_BREAK

PHRASE_KINDS = ("reflection", "doubt", "confirm", "backtrack", "backtrack_root", "final_answer")
CUE_KINDS = ("reflect", "mistake", "check", "confirm", "backtrack", "restart", "filler")


@dataclass(frozen=True)
class Phrases:
    """The phrase banks of ``phrases.yaml`` (rendering) and its ``patterns`` section (counting)."""

    reflection: tuple[str, ...]  # neutral check question (never the verdict)
    doubt: tuple[str, ...]  # admission after a wrong terminal, before a backtrack
    confirm: tuple[str, ...]  # "Our solution seems to be correct so far."
    backtrack: tuple[str, ...]
    backtrack_root: tuple[str, ...]
    final_answer: tuple[str, ...]  # closes the CoT after the final check: ... \\boxed{{answer}}
    bare: dict[str, str]
    patterns: dict[str, tuple[str, ...]]
    sources: dict[str, str]
    source: str = ""


def _phrases_error(where: str, msg: str) -> ConfigError:
    return ConfigError(f"{where}: {msg}; see the comments at the top of the packaged phrases.yaml")


def phrase_file_stamp(path: str | None) -> int:
    """Modification time of a phrase file, part of the cache key so an edited file is read again."""
    return Path(path).stat().st_mtime_ns if path is not None and Path(path).exists() else 0


def load_phrases(path: str | None = None) -> Phrases:
    """Read and check a phrase file (default: the packaged ``phrases.yaml``)."""
    return _load_phrases(None if path is None else str(path), phrase_file_stamp(path))


@functools.lru_cache(maxsize=16)
def _load_phrases(path: str | None, _mtime: int) -> Phrases:
    if path is None:
        text = resources.files("astro_reasoner").joinpath("phrases.yaml").read_text(encoding="utf-8")
        where = "phrases.yaml (packaged)"
    else:
        p = Path(path)
        if not p.exists():
            raise _phrases_error(str(p), "phrase file not found")
        text, where = p.read_text(encoding="utf-8"), str(p)
    try:
        data = safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise _phrases_error(where, f"not valid YAML ({exc})") from None
    banks: dict[str, tuple[str, ...]] = {}
    for kind in PHRASE_KINDS:
        bank = data.get(kind)
        if not isinstance(bank, list) or not bank or not all(isinstance(s, str) and s.strip() for s in bank):
            raise _phrases_error(where, f"'{kind}' must be a non-empty list of phrases")
        for s in bank:
            if PARAGRAPH_BREAK.search(s):  # the counter's paragraph break: the phrase would split a step
                raise _phrases_error(where, f"phrase {s!r} contains a blank line (it would split a step)")
            if kind == "backtrack" and "\"{step}\"" not in s:
                raise _phrases_error(where, f"backtrack phrase {s!r} needs the quoted slot \"{{step}}\"")
            if kind == "final_answer" and "\\boxed{{answer}}" not in s:
                raise _phrases_error(where, f"final_answer phrase {s!r} needs the slot \\boxed{{{{answer}}}}")
        banks[kind] = tuple(s.strip() for s in bank)
    bare = data.get("bare") or {}
    if not isinstance(bare, dict) or set(bare) != set(PHRASE_KINDS):
        raise _phrases_error(where, f"'bare' must map exactly {', '.join(PHRASE_KINDS)} to markers")
    if "\"{step}\"" not in (bare["backtrack"] or ""):
        raise _phrases_error(where, "bare.backtrack needs the quoted slot \"{step}\"")
    pats = data.get("patterns") or {}
    patterns: dict[str, tuple[str, ...]] = {}
    for kind in CUE_KINDS:
        items = pats.get(kind) or []
        if not isinstance(items, list):
            raise _phrases_error(where, f"patterns.{kind} must be a list of regexes")
        for rx in items:
            try:
                re.compile(rx)
            except re.error as exc:
                raise _phrases_error(where, f"patterns.{kind}: bad regex {rx!r} ({exc})") from None
        patterns[kind] = tuple(items)
    sources = data.get("sources") or {}
    missing = [k for k in PHRASE_KINDS if not str(sources.get(k) or "").strip()] if isinstance(sources, dict) \
        else list(PHRASE_KINDS)
    if missing:  # every bank says where it comes from (the paper, or ours)
        raise _phrases_error(where, f"'sources' must name the source of every bank; missing: {', '.join(missing)}")
    return Phrases(**banks, bare={k: str(v or "") for k, v in bare.items()}, patterns=patterns,
                   sources={k: str(sources[k]) for k in PHRASE_KINDS}, source=where)


