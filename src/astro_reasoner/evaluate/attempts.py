"""What a model does after it reflects: its outputs read as a sequence of attempts (issue 16's analysis).

ASTRO §4.3 counts reflections and backtracks per output; that does not say whether a check *discriminates*. A
model that learned "check, then decide" backtracks after a wrong attempt and goes on after a right one; a model
that learned only the form backtracks after both alike. Here each output is cut at its backtracks (the shared
behaviour counter finds them) into attempts, each attempt's stated answer is judged by the task's verifier (the
last ``\\boxed{}`` or "The answer is ..." in it, as for the final answer), and we report

- for outputs whose FIRST attempt stated a correct answer / did not: how many backtracked after it;
- for outputs that backtracked and stated a later answer: first -> last (correct / not correct) transitions.

Hand-written: no library reads attempts out of a chain of thought.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..types import Verdict

TRANSITIONS = ("correct->correct", "correct->wrong", "wrong->correct", "wrong->wrong")


def split_attempts(text: str) -> list[str]:
    """The output's attempts: its text cut where each backtrack starts (one attempt when it never backtracks).
    The last attempt keeps everything after the last backtrack, its final answer line included."""
    from ..behaviour import analyze_behaviour

    text = text or ""
    cuts, cursor = [], 0
    for ev in analyze_behaviour(text).events:  # events come in text order; locate each to find the cuts
        pos = text.find(ev.text, cursor) if ev.text else -1
        if ev.kind == "backtrack":
            cuts.append(pos if pos >= 0 else cursor)
        if pos >= 0:
            cursor = pos + len(ev.text)
    bounds = [0, *cuts, len(text)]
    return [text[a:b].strip() for a, b in zip(bounds, bounds[1:])]


def _gold_record(sample: Mapping[str, Any]) -> dict[str, Any]:
    """The record the task's gold is built from (an eval sample's ``answer`` is the MODEL's answer)."""
    fields = {k: sample[k] for k in ("task", "numbers", "target") if k in sample}
    return {**fields, "answer": sample["gold"]}


def attempt_verdicts(samples: Sequence[Mapping[str, Any]], checker) -> list[list[Verdict]]:
    """Per sample, the verdict of each attempt's stated answer (UNPARSEABLE: the attempt stated none)."""
    from ..tasks import gold_of

    cut = [split_attempts(str(s.get("text", ""))) for s in samples]
    pairs = [(gold_of(_gold_record(s)), a) for s, attempts in zip(samples, cut) for a in attempts]
    results = iter(checker.check_batch(pairs))
    return [[next(results).verdict for _ in attempts] for attempts in cut]


def summarize(samples: Sequence[Mapping[str, Any]], verdicts: Sequence[Sequence[Verdict]]) -> dict[str, Any]:
    """``first_attempt``: {correct|not_correct: {outputs, backtracked}}; ``transitions`` (first -> last stated
    answer, over outputs with >= 1 backtrack and >= 2 stated answers); ``outputs``."""
    first = {"correct": {"outputs": 0, "backtracked": 0}, "not_correct": {"outputs": 0, "backtracked": 0}}
    moves = dict.fromkeys(TRANSITIONS, 0)
    for s, vs in zip(samples, verdicts):
        backtracked = int(s.get("backtracks", 0) or 0) >= 1 and len(vs) > 1
        group = first["correct" if vs and vs[0] is Verdict.CORRECT else "not_correct"]
        group["outputs"] += 1
        group["backtracked"] += backtracked
        stated = [v for v in vs if v is not Verdict.UNPARSEABLE]
        if backtracked and len(stated) >= 2:
            a, b = (("correct" if v is Verdict.CORRECT else "wrong") for v in (stated[0], stated[-1]))
            moves[f"{a}->{b}"] += 1
    for g in first.values():
        g["backtrack_rate"] = g["backtracked"] / g["outputs"] if g["outputs"] else None
    return {"outputs": len(samples), "first_attempt": first, "transitions": moves}


def attempts_report(samples: Iterable[Mapping[str, Any]], checker) -> dict[str, Any]:
    samples = list(samples)
    return summarize(samples, attempt_verdicts(samples, checker))


def eval_dir_attempts(run: str | Path, checker) -> dict[str, Any]:
    """:func:`attempts_report` of one eval directory's ``samples.jsonl``."""
    from ..io import read_jsonl

    return attempts_report(read_jsonl(Path(run) / "samples.jsonl"), checker)


def attempts_markdown(reports: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Table lines, one row per labelled report (rows whose model never backtracked are left out)."""
    def rate(g: Mapping[str, Any]) -> str:
        r = g.get("backtrack_rate")
        return "–" if r is None else f"{g['backtracked']} / {g['outputs']} ({100 * r:.0f} %)"

    rows = {k: r for k, r in reports.items() if sum(g["backtracked"] for g in r["first_attempt"].values())}
    if not rows:
        return []
    lines = ["| model | backtracked after a correct first attempt | after a first attempt not correct | "
             + " | ".join(TRANSITIONS) + " |", "|" + "---|" * (3 + len(TRANSITIONS))]
    for label, r in rows.items():
        f = r["first_attempt"]
        lines.append(f"| {label} | {rate(f['correct'])} | {rate(f['not_correct'])} | "
                     + " | ".join(str(r["transitions"][t]) for t in TRANSITIONS) + " |")
    return lines
