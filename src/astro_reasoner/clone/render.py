"""Traces -> natural-language long CoT (ASTRO §2.3).

Steps are written verbatim, one paragraph each (ASTRO §2.1's blank-line step format). Every check starts
with a NEUTRAL question ("But wait, are we solving the problem correctly so far? Hmm…"), and what
follows decides (astro mode, phrases from ``phrases.yaml``):
- after a wrong terminal: an admission ("I'm not sure if we're solving the problem correctly so far.") and a
  backtrack phrase that names the step returned to, restated briefly ("Let's go back to where we had
  \"...\""), or says we restart, for the root;
- after an intermediate step whose node has a high Q-value (``q_threshold``): "Our solution seems to be
  correct so far." and the path continues;
- right AFTER the final correct step: the check, the confirmation, then the final answer in ``\\boxed{}``.
Phrases are drawn with ``stable_seed(seed, problem id, trace index)``; ``use_phrases=False`` renders bare
markers instead (ablation: no checks, the final step keeps its own box). Direct mode (``reflect=False``)
writes the steps alone.

Two edits to the steps, both our choices so that the CoT carries exactly one final answer at its end (a
``\\boxed{}`` mid-way would be read as an answer by extractors and math-verify merges nearby boxes):
- steps lose their ``\\boxed{...}`` wrapper (the content stays), except the final step when no final-answer
  phrase follows it;
- if that final step has no ``\\boxed`` (``text.has_boxed``, the search's terminal rule; the checker found its
  answer by a fallback), the answer is appended to it as " The answer is \\boxed{...}".
A step's own blank lines are collapsed to single newlines so one step stays one paragraph.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from ..behaviour import ORDINALS, ROOT, Patterns, Phrases, analyze_behaviour, resolve_target
from ..io import stable_seed
from ..text import has_boxed, join_steps, one_paragraph, unbox
from ..types import SearchTree, Trace

_SENTENCE_END = re.compile(r"(?<=[.!?])\s")
BRIEF_WORDS = 12


def step_text(tree: SearchTree, node_id: int, *, final: bool) -> str:
    """A node's step as it appears in the CoT (see the module docstring for the two edits)."""
    node = tree.nodes[node_id]
    text = one_paragraph(node.step.strip())
    if not final:
        return unbox(text)
    if not has_boxed(text) and node.answer:
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


@dataclass(frozen=True)
class _Item:
    kind: str  # "step" | "backtrack"
    index: int  # step index; for a backtrack the target step index, or ROOT
    text: str = ""
    node: int = 0


def _walk(trace: Trace, tree: SearchTree, box_final: bool) -> list[_Item]:
    """The trace over step indices. Steps that render empty are skipped; a backtrack to such a step goes to
    its nearest visible ancestor."""
    last_step = max(i for i, m in enumerate(trace.moves) if m.kind == "step")
    out: list[_Item] = []
    index_of: dict[int, int] = {}  # node id -> latest step index
    n_steps = 0
    for i, m in enumerate(trace.moves):
        if m.kind == "step":
            text = step_text(tree, m.node, final=box_final and i == last_step)
            if text:
                index_of[m.node] = n_steps
                out.append(_Item("step", n_steps, text, m.node))
                n_steps += 1
        else:
            node = m.node
            while node > 0 and node not in index_of:
                node = tree.nodes[node].parent
            out.append(_Item("backtrack", index_of[node] if node > 0 else ROOT, "", m.node))
    return out


def _boxes_final(reflect: bool, use_phrases: bool) -> bool:
    """Whether the final step keeps its box (no final-answer phrase after it)."""
    return not (reflect and use_phrases)


def trace_signature(trace: Trace, tree: SearchTree, *, reflect: bool = True, use_phrases: bool = True) -> Signature:
    walk = _walk(trace, tree, _boxes_final(reflect, use_phrases))
    return Signature(steps=tuple(it.text for it in walk if it.kind == "step"),
                     moves=tuple((it.kind, it.index) for it in walk))


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


def high_q(tree: SearchTree, node_id: int, q_threshold: float, q_min_visits: int) -> bool:
    """An intermediate node whose value estimate is high: reflect, confirm and continue (ASTRO §2.3)."""
    n = tree.nodes[node_id]
    return not n.terminal and n.visits >= q_min_visits and n.q >= q_threshold


def render_trace(trace: Trace, tree: SearchTree, phrases: Phrases, *, use_phrases: bool = True,
                 reflect: bool = True, seed: int = 0, patterns: Patterns | None = None,
                 q_threshold: float = 0.5, q_min_visits: int = 2) -> str:
    """The CoT text of one trace (``reflect=False``: the Direct baseline, steps only)."""
    rng = random.Random(stable_seed(seed, trace.problem_id, trace.meta.get("trace_index", 0), "phrases"))
    last_used: dict[str, str] = {}

    def phrase(kind: str) -> str:
        if not use_phrases:
            return phrases.bare[kind]
        bank = [p for p in getattr(phrases, kind) if p != last_used.get(kind)] or list(getattr(phrases, kind))
        last_used[kind] = rng.choice(bank)  # never the same phrase twice in a row
        return last_used[kind]

    def check(verdict: str) -> str:  # the neutral question, then the verdict: one paragraph
        return " ".join(p for p in (phrase("reflection"), phrase(verdict)) if p)

    box_final = _boxes_final(reflect, use_phrases)
    walk = _walk(trace, tree, box_final)
    final_pos = max(i for i, it in enumerate(walk) if it.kind == "step")
    paragraphs: list[str] = []
    steps: list[str] = []
    path: list[int] = []
    for pos, it in enumerate(walk):
        if it.kind == "step":
            paragraphs.append(it.text)
            steps.append(it.text)
            path.append(it.index)
            nxt = walk[pos + 1] if pos + 1 < len(walk) else None
            if not reflect:
                continue
            if pos == final_pos:  # check AFTER the final step, confirm, then the final answer
                paragraphs.append(check("confirm"))
                if not box_final:
                    answer = tree.nodes[it.node].answer or tree.answer
                    paragraphs.append(phrase("final_answer").replace("{answer}", answer))
            elif nxt is not None and nxt.kind == "step" and high_q(tree, it.node, q_threshold, q_min_visits):
                paragraphs.append(check("confirm"))
            continue
        # A backtrack follows a wrong terminal (ASTRO §2.2): the check ends in doubt, then we say where we go.
        paragraphs.append(check("doubt"))
        if it.index == ROOT:
            paragraphs.append(phrase("backtrack_root"))
            path = []
        else:
            min_score = patterns.min_score if patterns else 0.4
            paragraphs.append(phrase("backtrack").replace('"{step}"', brief(steps, it.index, path, min_score)))
            path = path[: path.index(it.index) + 1] if it.index in path else [it.index]
    return join_steps([p for p in paragraphs if p.strip()])


def render_path(tree: SearchTree, node_id: int) -> str:
    """The plain solution path to one node (what self-evaluation judges: ASTRO §2.3)."""
    texts = [step_text(tree, n, final=i == len(tree.path(node_id)) - 1) for i, n in enumerate(tree.path(node_id))]
    return join_steps([t for t in texts if t])
