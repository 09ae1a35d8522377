"""Final-answer extraction from a completion, and the cheap normal forms the checker's fast paths use.

ASTRO traces box intermediate answers before they backtrack ("... \\boxed{5}. But wait, ..."), so only the
**last** ``\\boxed{}`` counts (ASTRO §2.2-2.3). math-verify cannot be trusted with that on its own: two boxes
close together are merged into a set, so we extract the last box ourselves.

Everything here is a linear-time scan with regular expressions that cannot backtrack catastrophically: the
input is model output (1 MB strings, 100k nested braces). Nothing is ever evaluated.
"""

from __future__ import annotations

import re
from fractions import Fraction

from .text import box_content_or_text, last_boxed, scan_boxes

__all__ = ["as_number", "extract_answer", "last_boxed", "normalize", "sanitize"]  # last_boxed: see text.py

# Fallbacks when there is no box (our choice of phrases; they cover the common instruction-tuned styles).
# Each pattern matches the phrase only; the answer is the rest of its line (so that a later phrase on the same
# line is still found).
_FALLBACKS = (
    re.compile(r"####[ \t]*"),  # GSM8K
    re.compile(r"(?i)(?:final answer|the answer)[ \t]*(?:is\b|:|=)[ \t:]*"),
    re.compile(r"(?im)^[ \t*#]*answer[ \t*]*:[ \t*]*"),
)
_REST_OF_LINE = re.compile(r"[^\n]{1,300}")
_SENTENCE_END = re.compile(r"\.(?:\s|$)|;|, so\b|, which\b")
_NUMBER_THEN_WORDS = re.compile(r"^(\$?[+-]?(?:\d[\d,]*)?\.?\d+)\s+[A-Za-z][A-Za-z \-]*$")
_MATH_SPAN = re.compile(r"^\$\$?([^$]{1,300})\$|^\\\(([^\n]{1,300}?)\\\)|^\\\[([^\n]{1,300}?)\\\]")

_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_NESTED_UNBOX = 8  # ``\boxed{\boxed{5}}`` is unwrapped at most this many times


def sanitize(text: str) -> str:
    """Replace lone surrogates (e.g. ``'\\ud800'``, invalid UTF-8 decoded with surrogateescape) by U+FFFD.

    They cannot be written to a UTF-8 JSONL file and crash some parsers; the rest of the text is kept.
    """
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)


def _clean_fallback(s: str) -> str | None:
    s = s.strip().strip("*").strip()
    m = _MATH_SPAN.match(s)
    if m:
        s = next(g for g in m.groups() if g is not None)
    else:
        end = _SENTENCE_END.search(s)
        if end:
            s = s[: end.start()]
    s = s.strip().rstrip(".,;:!").strip().strip("*").strip()
    words = _NUMBER_THEN_WORDS.match(s)  # "18 dollars" -> "18" (our choice: units as words carry no value)
    if words:
        s = words.group(1)
    return s or None


def extract_answer(text: str) -> str | None:
    """The final answer of a completion: the last ``\\boxed{}`` (nested braces kept), else the last
    "the answer is ..." / "final answer: ..." / "#### N" phrase; None when there is none.
    """
    if not isinstance(text, str):
        raise TypeError(f"extract_answer expects a str, got {type(text).__name__}")
    ans, has_box = scan_boxes(text)
    if ans is None:
        if has_box:  # the last box is cut off: no final answer (see last_boxed)
            return None
        last = None  # the phrase that occurs last wins, as for boxes
        for pat in _FALLBACKS:
            for m in pat.finditer(text):
                if last is None or m.start() > last.start():
                    last = m
        rest = _REST_OF_LINE.match(text, last.end()) if last else None
        ans = _clean_fallback(rest.group()) if rest else None
        if ans is None:
            return None
    for _ in range(MAX_NESTED_UNBOX):  # \boxed{\boxed{5}} -> 5
        inner = last_boxed(ans) if "\\boxed" in ans or "\\fbox" in ans else None
        if inner is None:
            break
        ans = inner
    ans = sanitize(ans.strip())
    return ans or None


# ---- normal forms for the fast paths -------------------------------------------------------------------------

_DROP = re.compile(r"\\left(?![A-Za-z])|\\right(?![A-Za-z])|\\[!,;: ]|\\displaystyle|\\\$|\$|\s+")
_FRAC_ALIAS = re.compile(r"\\[dt]frac(?![A-Za-z])")
_NUMBER = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[+-]?\.\d+")
_FRACTION = re.compile(r"([+-]?)\\frac\{([+-]?\d{1,50})\}\{([+-]?\d{1,50})\}|([+-]?\d{1,50})/(\d{1,50})")
MAX_NUMBER_CHARS = 60  # longer digit strings go to math-verify (int parsing is quadratic in the digits)


def normalize(answer: str) -> str:
    """A meaning-preserving normal form: no spaces, no ``$``, no ``\\left``/``\\right``, ``\\dfrac``→``\\frac``,
    no trailing period. Two answers with the same normal form are equal.
    """
    s = answer.strip()
    s = box_content_or_text(s)
    s = _FRAC_ALIAS.sub(r"\\frac", _DROP.sub("", s)).replace("{,}", ",")
    s = s.rstrip(".")
    if s.startswith("{") and s.endswith("}") and last_boxed("\\boxed" + s) == s[1:-1]:
        s = s[1:-1]  # "{5}" -> "5", but only when the outer braces match each other ("{1}{2}" stays)
    return s


def as_number(norm: str) -> Fraction | None:
    """The exact value of a plain number in normal form ("1,000", "-2.50", ".5", "\\frac{3}{4}", "7/2")."""
    if len(norm) > MAX_NUMBER_CHARS:
        return None
    if _NUMBER.fullmatch(norm):
        return Fraction(norm.replace(",", ""))
    m = _FRACTION.fullmatch(norm)
    if m:
        sign, num, den = (m.group(1), m.group(2), m.group(3)) if m.group(2) else ("", m.group(4), m.group(5))
        if int(den) == 0:
            return None
        value = Fraction(int(num), int(den))
        return -value if sign == "-" else value
    return None
