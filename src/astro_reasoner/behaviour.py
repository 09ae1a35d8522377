"""The behaviour counter: steps, self-reflections, self-checks and backtracks in any chain-of-thought text.

Shared by procedure cloning (to verify that a rendered or LM-rewritten CoT still encodes its trace), RL
logging and evaluation (ASTRO §4 counts self-reflections and backtracks in model outputs and correlates them
with accuracy). Hand-written because no library parses this: the text is split into paragraphs (ASTRO §2.1:
steps are separated by a blank line) and sentences; each sentence is classified by the phrase banks and cue
patterns of ``phrases.yaml`` (one file for the renderer and the counter); a run of reflective sentences
is one reflection — it counts whether it ends in doubt and a backtrack or in a confirmation (then it is also
a self-check: the solution goes on, ASTRO §2.3); a backtrack is resolved to the earlier step it restates by fuzzy token
matching against the steps on the current path (a backtrack in ASTRO returns to an ancestor, §2.2).

Conventions: ``Backtrack.target`` is an index into ``Behaviour.steps``; ``ROOT`` (-1) means "start over from
the problem"; ``None`` means the text went back without saying where.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher

from .phrases import CUE_KINDS, PHRASE_KINDS, Phrases, load_phrases, phrase_file_stamp
from .text import paragraph_spans  # the counter's paragraph reading (see text.py for why not split_steps)

__all__ = ["ROOT", "Backtrack", "Behaviour", "Event", "Patterns", "Phrases", "analyze_behaviour", "load_patterns",
           "load_phrases", "resolve_target", "similarity"]

ROOT = -1

_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|[ \t]*\n\s*")
_QUOTED = re.compile(r"\"[^\"\n]*\"|\u201c[^\u201d\n]*\u201d")
_TOKEN = re.compile(r"\d+(?:\.\d+)?|[a-z]+|[=+\-*/^<>]")
# Function words carry no information about which step was meant.
_STOP = frozenset(
    "a an the we i you it its is are was were be been to of and or so that this then there here which where "
    "what when let lets s us our my me have had has with for from by as at on in into can will would should "
    "now first next just".split())


@dataclass(frozen=True)
class Patterns:
    """Compiled counter patterns: cue regexes plus every bank phrase's sentences as exact patterns."""

    cues: dict[str, tuple[re.Pattern, ...]]
    exact: tuple[tuple[frozenset, re.Pattern], ...]  # (flags, sentence regex; backtracks capture `step`)
    min_score: float = 0.4


def _exact_pattern(sentence: str) -> re.Pattern:
    """A bank sentence as a regex: ``{step}`` captures the restated step, ``{answer}`` matches any answer."""
    def words(chunk: str) -> str:
        return r"\s+".join(re.escape(w) for w in chunk.split())

    parts = [r".*?".join(words(c) for c in chunk.split("{answer}")) for chunk in sentence.split("{step}")]
    return re.compile(r"\s*" + r"(?P<step>.*?)".join(parts) + r"\s*", re.IGNORECASE)


def load_patterns(path: str | None = None, min_score: float = 0.4) -> Patterns:
    """The counter's default patterns, derived from the same file as the phrase banks."""
    return _load_patterns(None if path is None else str(path), phrase_file_stamp(path), min_score)


@functools.lru_cache(maxsize=16)
def _load_patterns(path: str | None, _mtime: int, min_score: float) -> Patterns:
    ph = load_phrases(path)
    cues = {k: tuple(re.compile(rx, re.IGNORECASE) for rx in ph.patterns[k]) for k in CUE_KINDS}
    # The neutral question only reflects; what follows it decides: doubt (-> backtrack) or confirmation.
    flags_of = {"reflection": frozenset({"reflect"}), "doubt": frozenset({"mistake"}),
                "confirm": frozenset({"confirm"}), "final_answer": frozenset({"confirm"}),
                "backtrack": frozenset({"backtrack"}), "backtrack_root": frozenset({"restart"})}
    exact: list[tuple[frozenset, re.Pattern]] = []
    for kind in PHRASE_KINDS:
        for phrase in (*getattr(ph, kind), ph.bare[kind]):
            for s, e in _sentence_spans(phrase):
                exact.append((flags_of[kind], _exact_pattern(phrase[s:e])))
    return Patterns(cues=cues, exact=tuple(exact), min_score=min_score)


@dataclass(frozen=True)
class Backtrack:
    target: int | None  # index into Behaviour.steps; ROOT (-1) = start over; None = unresolved
    after: int  # number of steps written before this backtrack
    restated: str  # the text naming the step returned to ("" for a restart)
    score: float  # match score of ``restated`` against the chosen step


@dataclass(frozen=True)
class Event:
    kind: str  # "step" | "reflection" | "self_check" | "backtrack"
    text: str


@dataclass
class Behaviour:
    steps: list[str] = field(default_factory=list)
    # Every reflective moment (ASTRO §2.3): a check that ends in doubt and a backtrack, or in a confirmation
    # and the solution goes on ("But wait, are we solving the problem correctly so far? Hmm... Our solution
    # seems to be correct so far.").
    reflections: int = 0
    self_checks: int = 0  # the reflections that confirm the work and continue (a subset of ``reflections``)
    backtracks: list[Backtrack] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    @property
    def doubts(self) -> int:
        """Reflections that found (or suspected) a mistake."""
        return self.reflections - self.self_checks

    def counts(self) -> dict[str, int]:
        return {"steps": len(self.steps), "reflections": self.reflections, "backtracks": len(self.backtracks)}

    def moves(self) -> list[tuple[str, int | None]]:
        """The recovered trace: ``("step", i)`` per step, ``("backtrack", target)`` per backtrack."""
        out: list[tuple[str, int | None]] = []
        i = b = 0
        for ev in self.events:
            if ev.kind == "step":
                out.append(("step", i))
                i += 1
            elif ev.kind == "backtrack":
                out.append(("backtrack", self.backtracks[b].target))
                b += 1
        return out


# ----------------------------------------------------------------------------------------------- splitting

def _mask_quotes(text: str) -> str:
    """Blank out double-quoted spans (same length) so cue patterns and sentence breaks skip them."""
    return _QUOTED.sub(lambda m: m.group()[0] + " " * (len(m.group()) - 2) + m.group()[-1], text)


def _sentence_spans(par: str) -> list[tuple[int, int]]:
    masked = _mask_quotes(par)
    spans, start = [], 0
    for m in _SENTENCE_BREAK.finditer(masked):
        if par[start:m.start()].strip():
            spans.append((start, m.start()))
        start = m.end()
    if par[start:].strip():
        spans.append((start, len(par.rstrip())))
    return spans


# --------------------------------------------------------------------------------------------- matching

@functools.lru_cache(maxsize=8192)  # a pure function; steps are matched again at every later backtrack
def _tokens(text: str) -> tuple[str, ...]:
    return tuple(t for t in _TOKEN.findall(text.lower()) if t not in _STOP)


def _weight(tok: str) -> float:
    return 2.0 if tok[0].isdigit() else (1.0 if tok[0].isalpha() else 0.5)  # numbers identify steps best


@functools.lru_cache(maxsize=8192)
def _bag(tokens: tuple[str, ...]) -> Counter:
    return Counter(tokens)


def _weighted(r: tuple[str, ...]) -> tuple[list[tuple[str, int, float]], float]:
    want = [(t, n, _weight(t)) for t, n in _bag(r).items()]
    return want, sum(n * w for _, n, w in want)


def _recall(want: list[tuple[str, int, float]], total: float, c: tuple[str, ...]) -> float:
    """Weighted share of the restated tokens found in the candidate step (multiset overlap)."""
    have = _bag(c)
    return sum(min(n, have[t]) * w for t, n, w in want) / total


def _prefix(r: tuple[str, ...], c: tuple[str, ...]) -> float:
    return SequenceMatcher(None, r, c[: len(r)], autojunk=False).ratio()


def similarity(restated: str, step: str) -> float:
    """How well ``restated`` names ``step``: weighted token recall (0.8) + in-order prefix match (0.2)."""
    r, c = _tokens(restated), _tokens(step)
    return 0.8 * _recall(*_weighted(r), c) + 0.2 * _prefix(r, c) if r else 0.0


def resolve_target(restated: str, steps: Sequence[str], path: Sequence[int], min_score: float = 0.4,
                   occurrence: int | None = None) -> tuple[int | None, float]:
    """The step ``restated`` names: best match on the current ``path``, else the best earlier step anywhere,
    else None. Ties go to the deepest candidate, or to the ``occurrence``-th (1-based) when the text says
    which one ("the first time we wrote it"): a step a model repeated verbatim can only be told apart so."""
    r = _tokens(restated)
    if not r:
        return None, 0.0
    want, total = _weighted(r)
    for candidates in (list(path), list(range(len(steps)))):
        if not candidates:
            continue
        recall = {idx: 0.8 * _recall(want, total, _tokens(steps[idx])) for idx in candidates}
        floor = max(recall.values())  # the prefix term adds at most 0.2: skip hopeless candidates
        scored = [(recall[idx] + 0.2 * _prefix(r, _tokens(steps[idx])), idx) for idx in candidates
                  if recall[idx] + 0.2 >= floor - 1e-9]
        best_score = max(s for s, _ in scored)
        tied = [idx for s, idx in scored if s >= best_score - 1e-9]
        if best_score >= min_score:
            pick = tied[occurrence - 1] if occurrence and occurrence <= len(tied) else tied[-1]
            return pick, best_score
    return None, 0.0


ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
_OCCURRENCE = re.compile(r"\((?:the )?(" + "|".join(ORDINALS) + r") time\b", re.IGNORECASE)


def _restated_text(sentence: str, cue_end: int, cues: dict[str, tuple[re.Pattern, ...]]) -> str:
    quoted = [m.group()[1:-1] for m in _QUOTED.finditer(sentence)]
    if quoted:
        return max(quoted, key=len)
    rest = sentence[cue_end:].strip()
    for rx in cues["filler"]:
        rest = rx.sub("", rest).strip()
    return rest.strip(" .,:;!?")


# ------------------------------------------------------------------------------------------------ analysis

@dataclass
class _Unit:
    kind: str  # "plain" | "flag" | "backtrack"
    par: int
    start: int
    end: int
    flags: frozenset = frozenset()
    restated: str = ""
    root: bool = False
    occurrence: int | None = None


def _occurrence(sentence: str) -> int | None:
    m = _OCCURRENCE.search(sentence)
    return ORDINALS.index(m.group(1).lower()) + 1 if m else None


def _classify(par_idx: int, par: str, s: int, e: int, P: Patterns) -> list[_Unit]:
    sent = par[s:e]
    masked = _mask_quotes(sent)
    flags: set[str] = set()
    for fl, rx in P.exact:
        m = rx.fullmatch(sent)
        if m:
            if "backtrack" in fl or "restart" in fl:
                step = (m.groupdict().get("step") or "").strip()
                return [_Unit("backtrack", par_idx, s, e, restated=step, root="restart" in fl,
                              occurrence=_occurrence(masked))]
            flags |= fl
    if not flags:
        if any(rx.search(masked) for rx in P.cues["restart"]):
            return [_Unit("backtrack", par_idx, s, e, root=True)]
        for rx in P.cues["backtrack"]:
            m = rx.search(masked)
            if m:
                out = []
                before = masked[: m.start()]
                pre = {k for k in ("reflect", "mistake") if any(r.search(before) for r in P.cues[k])}
                if pre:  # "Hmm, that's wrong, so let's go back to ..." -> a reflection, then the backtrack
                    out.append(_Unit("flag", par_idx, s, s + m.start(), flags=frozenset(pre)))
                out.append(_Unit("backtrack", par_idx, s + (m.start() if pre else 0), e,
                                 restated=_restated_text(sent, m.end(), P.cues), occurrence=_occurrence(masked)))
                return out
        flags = {k for k in ("reflect", "mistake", "check", "confirm") if any(r.search(masked) for r in P.cues[k])}
    return [_Unit("flag" if flags else "plain", par_idx, s, e, flags=frozenset(flags))]


def _run_kind(run: list[_Unit], followed_by_backtrack: bool) -> str | None:
    flags = frozenset().union(*(u.flags for u in run))
    if "mistake" in flags or (followed_by_backtrack and flags & {"reflect", "check"}):
        return "reflection"
    if flags & {"reflect", "check"} and "confirm" in flags:
        return "self_check"
    if "reflect" in flags:
        return "reflection"
    return None  # only "check" or only "confirm" cues: ordinary step content ("Let's check: 3 + 4 = 7.")


def analyze_behaviour(text: str, patterns: Patterns | None = None) -> Behaviour:
    """Find the steps, reflections, self-checks and backtracks of ``text`` (see the module docstring)."""
    P = patterns or load_patterns()
    units: list[_Unit] = []
    pars = paragraph_spans(text or "")
    for pi, (ps, pe) in enumerate(pars):
        par = text[ps:pe]
        for s, e in _sentence_spans(par):
            units.extend(_classify(pi, par, s, e, P))
    # Within a paragraph, plain sentences between two reflective ones belong to the same reflection
    # ("Hmm, hold on. He eats 2 apples, not 5. I made a mistake.").
    flagged = [k for k, u in enumerate(units) if u.kind == "flag"]
    for a, b in zip(flagged, flagged[1:]):
        between = units[a + 1:b]
        if between and units[a].par == units[b].par and all(u.kind == "plain" for u in between):
            for u in between:
                u.kind = "flag"
    # Decide each run of flagged sentences: a reflection, a self-check, or plain step content.
    i = 0
    while i < len(units):
        if units[i].kind != "flag":
            i += 1
            continue
        j = i
        while j < len(units) and units[j].kind == "flag":
            j += 1
        kind = _run_kind(units[i:j], j < len(units) and units[j].kind == "backtrack")
        for u in units[i:j]:
            u.kind = kind or "plain"
        if kind:
            units[i].flags = frozenset({"first"})
        i = j

    out = Behaviour()
    path: list[int] = []
    prev: _Unit | None = None
    step_start = 0
    for u in units:
        par = text[pars[u.par][0]:pars[u.par][1]]
        if u.kind == "plain":
            if prev is not None and prev.kind == "plain" and prev.par == u.par:  # same paragraph: same step
                out.steps[-1] = par[step_start:u.end].strip()
                out.events[-1] = Event("step", out.steps[-1])
            else:
                step_start = u.start
                out.steps.append(par[u.start:u.end].strip())
                out.events.append(Event("step", out.steps[-1]))
                path.append(len(out.steps) - 1)
        elif u.kind in ("reflection", "self_check"):
            if "first" in u.flags:
                out.reflections += 1
                out.self_checks += u.kind == "self_check"
                out.events.append(Event(u.kind, par[u.start:u.end].strip()))
            else:
                out.events[-1] = Event(u.kind, out.events[-1].text + " " + par[u.start:u.end].strip())
        else:  # backtrack
            if u.root:
                target, score = ROOT, 1.0
            else:
                target, score = resolve_target(u.restated, out.steps, path, P.min_score, u.occurrence)
            if prev is not None and prev.kind == "backtrack" and out.backtracks:
                # "Let's go back to X. From there, let's try another way." is one backtrack, not two.
                last = out.backtracks[-1]
                if last.target is None and target is not None:
                    out.backtracks[-1] = Backtrack(target, last.after, u.restated, score)
                    path[:] = _truncate(path, target)
            else:
                out.backtracks.append(Backtrack(target, len(out.steps), u.restated, score))
                out.events.append(Event("backtrack", par[u.start:u.end].strip()))
                if target is not None:
                    path[:] = _truncate(path, target)
        prev = u
    return out


def _truncate(path: list[int], target: int) -> list[int]:
    if target == ROOT:
        return []
    return path[: path.index(target) + 1] if target in path else [target]  # off the path: lineage unknown

