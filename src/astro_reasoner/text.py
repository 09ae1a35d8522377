"""Rules on solution text, defined once: what a step is and what counts as a boxed final answer.

Pure string functions (no torch, no prompt text, no I/O), so the search core, procedure cloning, the answer
checker and the behaviour counter all read solution text the same way.

Steps. ASTRO §2.1 separates steps by a blank line. There are two readings, and both are needed:
- :func:`split_steps` (the step rule): split on exactly ``STEP_DELIMITER``. The search generates one step
  at a time with ``STEP_DELIMITER`` as the stop string, so its steps are cut exactly there; splitting a
  rollout any other way would give steps the search itself could never have produced (and would change the
  search trees, which the golden tree test pins).
- :func:`paragraph_spans` (the counter's reading): also a line of only spaces or tabs separates paragraphs.
  The behaviour counter reads free model output and LM-rewritten CoTs, where " \\n" blank lines are common
  and are a step break to a reader; the renderer collapses such breaks inside a step (:func:`one_paragraph`)
  so that a rendered step reads back as exactly one paragraph. Using the exact rule there would change what
  the counter counts in eval outputs and what cloning writes, so the looser reading stays, under its own name.

Final answers. Two questions, two functions:
- :func:`has_boxed` -- does a step *claim* a final answer? The search's terminal rule (ASTRO §2.2: a step
  with a boxed answer ends the solution) and the renderer's "does the final step already carry its box".
  Only ``\\boxed`` counts, because that is what the prompt asks for; it is a cheap test, the checker decides.
- :func:`last_boxed` -- what is the final answer? The content of the last complete ``\\boxed{}`` /
  ``\\fbox{}`` / ``\\boxed x`` (what the checker grades; ``answers.extract_answer`` adds the phrase fallbacks).
"""

from __future__ import annotations

import re

STEP_DELIMITER = "\n\n"
BOXED = "\\boxed"
# A blank line for a reader: a newline, optionally spaces/tabs, a newline (and any whitespace after it).
PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")


# ---- steps ---------------------------------------------------------------------------------------------------

def split_steps(text: str) -> list[str]:
    """Split a solution into steps at ``STEP_DELIMITER``, dropping empty pieces and surrounding whitespace."""
    return [s.strip() for s in text.split(STEP_DELIMITER) if s.strip()]


def join_steps(steps: list[str] | tuple[str, ...]) -> str:
    """Steps back into one solution text (the inverse of :func:`split_steps` for stripped, non-empty steps)."""
    return STEP_DELIMITER.join(steps)


def cut_at_answer(text: str) -> str:
    """The solution up to and including the first step with a boxed answer (the terminal rule applied to
    rollouts: what follows a final answer is not part of the solution)."""
    steps = split_steps(text)
    for i, s in enumerate(steps):
        if has_boxed(s):
            return join_steps(steps[: i + 1])
    return join_steps(steps)


def paragraph_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each non-blank paragraph, separated by :data:`PARAGRAPH_BREAK` (the counter's reading)."""
    spans, start = [], 0
    for m in PARAGRAPH_BREAK.finditer(text):
        spans.append((start, m.start()))
        start = m.end()
    spans.append((start, len(text)))
    return [(s, e) for s, e in spans if text[s:e].strip()]


def one_paragraph(text: str) -> str:
    """``text`` with its paragraph breaks collapsed to single newlines, so the counter reads it as one step."""
    return PARAGRAPH_BREAK.sub("\n", text)


# ---- boxed answers -------------------------------------------------------------------------------------------

def has_boxed(text: str) -> bool:
    """Whether ``text`` claims a final answer (contains ``\\boxed``): the terminal rule of a step."""
    return BOXED in text


# One token per brace, escaped brace/backslash, or box command. ``\\{`` and ``\\}`` are literal braces in LaTeX
# and must not change the nesting depth; ``\\\\`` is a line break, so the brace after it is a real one.
# Linear-time patterns only: the input is model output (1 MB strings, 100k nested braces).
_TOKENS = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])|\\[\\{}]|[{}]")
_BARE_BOX_ARG = re.compile(r"[^\s$]{1,200}")  # ``\boxed 5``: the argument runs to the next space or '$'
_SPACES = re.compile(r"[ \t]*")


def last_boxed(text: str) -> str | None:
    """Content of the last complete ``\\boxed{...}`` / ``\\fbox{...}`` / ``\\boxed x`` in ``text``.

    Returns None when there is none, or when the last box is cut off (an unclosed ``\\boxed{`` after the last
    complete one): an earlier, possibly retracted answer must not stand in for the final one.
    """
    return scan_boxes(text)[0]


def box_content_or_text(text: str) -> str:
    """The last box's content when ``text`` has a complete one, else ``text`` ("\\boxed{5}" given as a gold
    answer or compared as an answer means 5)."""
    if "\\boxed" not in text and "\\fbox" not in text:  # the common case, without a scan
        return text
    return last_boxed(text) or text


def scan_boxes(text: str) -> tuple[str | None, bool]:
    """(last complete box's content or None, whether any box command occurs at all)."""
    n = len(text)
    stack: list[int] = []  # per open brace: start of a box's content, or -1 for an ordinary brace
    box_next = -1  # position of the '{' that opens a box's argument
    best: tuple[int, int, int] | None = None  # (end, content start, content end) of the last complete box
    open_box_at = -1  # start of the latest box seen, complete or not
    for m in _TOKENS.finditer(text):
        tok = m.group()
        if tok[0] == "\\" and len(tok) > 2:  # \boxed or \fbox
            j = _SPACES.match(text, m.end()).end()
            open_box_at = m.start()
            if j < n and text[j] == "{":
                box_next = j
            else:
                arg = _BARE_BOX_ARG.match(text, j)
                if arg:
                    best = (arg.end(), arg.start(), arg.end())
        elif tok == "{":
            stack.append(m.end() if m.start() == box_next else -1)
        elif tok == "}" and stack:
            start = stack.pop()
            if start >= 0 and (best is None or m.end() > best[0]):
                best = (m.end(), start, m.start())
    if best is None or open_box_at >= best[0]:
        return None, open_box_at >= 0
    return text[best[1]:best[2]], True


def unbox(text: str) -> str:
    """Every ``\\boxed{x}`` -> ``x`` with balanced braces (cloning keeps one box, at the end of a CoT).

    Written by hand (a regex cannot balance braces). Unlike :func:`scan_boxes` it counts every brace
    (escaped ones too) and leaves ``\\fbox`` and ``\\boxed x`` alone: that is what the rendered CoTs of
    existing clone outputs were made with, and changing it would change them.
    """
    out, i = [], 0
    while True:
        j = text.find("\\boxed{", i)
        if j < 0:
            out.append(text[i:])
            return "".join(out)
        out.append(text[i:j])
        k, depth = j + len("\\boxed{"), 1
        while k < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[k], 0)
            k += 1
        inner_end = k - 1 if depth == 0 else k
        out.append(text[j + len("\\boxed{"):inner_end])
        i = k
