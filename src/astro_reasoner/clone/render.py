"""Traces -> natural-language long CoT (ASTRO §2.3).

Steps are written verbatim, one paragraph each (ASTRO §2.1's blank-line step format). After each wrong
terminal come a self-reflection and a backtrack phrase that names the step returned to, restated briefly
(or says we start over, for the root); before the final step a short self-check (astro mode). Phrases come
from ``phrases.yaml`` and are drawn with ``stable_seed(seed, problem id, trace index)``; ``phrases=False``
renders bare markers instead (ablation).

Two edits to the steps, both our choices so that the CoT carries exactly one final answer at its end (a
``\\boxed{}`` mid-way would be read as an answer by extractors and math-verify merges nearby boxes):
- every step except the last loses its ``\\boxed{...}`` wrapper (the content stays);
- if the last step has no ``\\boxed{}`` (the checker found its answer by a fallback), the answer is
  appended to it as " The answer is \\boxed{...}.".
A step's own blank lines are collapsed to single newlines so one step stays one paragraph.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from ..behaviour import ORDINALS, ROOT, Patterns, Phrases, analyze_behaviour, resolve_target
from ..io import stable_seed
from ..types import SearchTree, Trace

_SENTENCE_END = re.compile(r"(?<=[.!?])\s")
BRIEF_WORDS = 12


def unbox(text: str) -> str:
    """``\\boxed{x}`` -> ``x`` with balanced braces (written by hand: a regex cannot balance braces)."""
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


def step_text(tree: SearchTree, node_id: int, *, final: bool) -> str:
    """A node's step as it appears in the CoT (see the module docstring for the two edits)."""
    node = tree.nodes[node_id]
    text = re.sub(r"\n[ \t]*\n\s*", "\n", node.step.strip())
    if not final:
        return unbox(text)
    if "\\boxed{" not in text and node.answer:
        text = f"{text} The answer is \\boxed{{{node.answer}}}.".strip()
    return text


@dataclass(frozen=True)
class Signature:
    """The trace as the behaviour counter should read it back: step texts and moves over step indices."""

    steps: tuple[str, ...]
    moves: tuple[tuple[str, int | None], ...]

    def matches(self, text: str, patterns: Patterns | None = None) -> bool:
        b = analyze_behaviour(text, patterns)
        return tuple(b.steps) == self.steps and tuple(b.moves()) == self.moves


def _walk(trace: Trace, tree: SearchTree) -> list[tuple[str, int, str]]:
    """(kind, index, text): ("step", step index, text) or ("backtrack", target step index or ROOT, "").

    Steps that render empty are skipped; a backtrack to such a step goes to its nearest visible ancestor.
    """
    last_step = max(i for i, m in enumerate(trace.moves) if m.kind == "step")
    out: list[tuple[str, int, str]] = []
    index_of: dict[int, int] = {}  # node id -> latest step index on the current path
    n_steps = 0
    for i, m in enumerate(trace.moves):
        if m.kind == "step":
            text = step_text(tree, m.node, final=i == last_step)
            if text:
                index_of[m.node] = n_steps
                out.append(("step", n_steps, text))
                n_steps += 1
        else:
            node = m.node
            while node > 0 and node not in index_of:
                node = tree.nodes[node].parent
            out.append(("backtrack", index_of[node] if node > 0 else ROOT, ""))
    return out


def trace_signature(trace: Trace, tree: SearchTree) -> Signature:
    walk = _walk(trace, tree)
    return Signature(steps=tuple(t for k, _, t in walk if k == "step"),
                     moves=tuple((k, i) for k, i, _ in walk))


def brief(steps: list[str], target: int, path: list[int], min_score: float = 0.4) -> str:
    """The step ``steps[target]`` restated briefly: its first sentence, at most BRIEF_WORDS words, lengthened
    until the behaviour counter picks it out among the steps on ``path`` (so the backtrack is unambiguous).
    When the step was repeated verbatim on the path, an ordinal says which copy: ' (the first time)'."""
    text = " ".join(steps[target].replace('"', "'").split())
    words = text.split()
    first = _SENTENCE_END.split(text, maxsplit=1)[0].split()
    n = min(len(first) if len(first) >= 3 else len(words), BRIEF_WORDS)
    while True:
        out = " ".join(words[:n]).rstrip(".,;:!?") + (" ..." if n < len(words) else "")
        if resolve_target(out, steps, path, min_score)[0] == target:
            return f'"{out}"'
        if n >= len(words):
            break
        n = min(len(words), n + 4)
    for k in range(1, len(ORDINALS) + 1):
        if resolve_target(out, steps, path, min_score, occurrence=k)[0] == target:
            return f'"{out}" (the {ORDINALS[k - 1]} time)'
    return f'"{out}"'


def render_trace(trace: Trace, tree: SearchTree, phrases: Phrases, *, use_phrases: bool = True,
                 self_check: bool = True, seed: int = 0, patterns: Patterns | None = None) -> str:
    """The CoT text of one trace."""
    rng = random.Random(stable_seed(seed, trace.problem_id, trace.meta.get("trace_index", 0), "phrases"))
    last_used: dict[str, str] = {}

    def phrase(kind: str) -> str:
        if not use_phrases:
            return phrases.bare[kind]
        bank = [p for p in getattr(phrases, kind) if p != last_used.get(kind)] or list(getattr(phrases, kind))
        last_used[kind] = rng.choice(bank)  # never the same phrase twice in a row
        return last_used[kind]

    walk = _walk(trace, tree)
    final_pos = max(i for i, (k, _, _) in enumerate(walk) if k == "step")
    paragraphs: list[str] = []
    steps: list[str] = []
    path: list[int] = []
    for pos, (kind, idx, text) in enumerate(walk):
        if kind == "step":
            if pos == final_pos and self_check:
                paragraphs.append(phrase("self_check"))
            paragraphs.append(text)
            steps.append(text)
            path.append(idx)
            continue
        # A backtrack follows a wrong terminal (ASTRO §2.2): reflect on the mistake, then say where we go.
        paragraphs.append(phrase("reflection"))
        if idx == ROOT:
            paragraphs.append(phrase("backtrack_root"))
            path = []
        else:
            min_score = patterns.min_score if patterns else 0.4
            paragraphs.append(phrase("backtrack").replace('"{step}"', brief(steps, idx, path, min_score)))
            path = path[: path.index(idx) + 1]
    return "\n\n".join(p for p in paragraphs if p.strip())
