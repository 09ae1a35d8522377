"""The eval sample: one line of an eval directory's ``samples.jsonl``.

A typed record like those in ``types.py``, kept here because its keys are the eval stage's file format (and
its behaviour counts come from ``behaviour_stats``). ``to_json`` writes exactly the keys, in exactly the
order, that eval has always written, so files written before this class existed load, resume and compare
byte for byte with new ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..types import Verdict
from .behaviour_stats import COUNT_KEYS

# The fixed keys, in the order they are written; behaviour counts and task fields follow them.
_FIXED = ("dataset", "problem_id", "sample", "seed", "problem", "gold", "text", "tokens", "finish_reason",
          "answer", "verdict")


@dataclass(frozen=True)
class EvalSample:
    """Sample ``sample`` of problem ``problem_id`` of ``dataset``, with its checked verdict.

    ``counts``: the behaviour counts (steps, reflections, backtracks) at the time of writing; the summary
    recounts them from ``text``, so a changed counter never mixes old and new counts. ``task_fields``: the
    problem's task fields (``{}`` for math, which writes none).
    """

    dataset: str
    problem_id: str
    sample: int
    seed: int | None  # the backend call's seed (stable_seed of the call's key)
    problem: str
    gold: str
    text: str
    tokens: int
    finish_reason: str
    answer: str | None
    verdict: Verdict
    counts: dict[str, int] = field(default_factory=dict)
    task_fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.verdict, Verdict):  # a plain string from JSON; an unknown one is a ValueError
            object.__setattr__(self, "verdict", Verdict(self.verdict))

    @property
    def task(self) -> str | None:
        """The task name in the task fields (None for math), as ``tasks.vote_keys`` takes it."""
        return self.task_fields.get("task")

    @property
    def correct(self) -> bool:
        return self.verdict is Verdict.CORRECT

    def to_json(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "problem_id": self.problem_id, "sample": self.sample, "seed": self.seed,
                "problem": self.problem, "gold": self.gold, "text": self.text, "tokens": self.tokens,
                "finish_reason": self.finish_reason, "answer": self.answer, "verdict": self.verdict.value,
                **self.counts, **self.task_fields}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "EvalSample":
        # Every key that is neither fixed nor a count is a task field, so whatever a task wrote comes back.
        return cls(**{k: d[k] for k in _FIXED},
                   counts={k: d[k] for k in COUNT_KEYS if k in d},
                   task_fields={k: v for k, v in d.items() if k not in _FIXED and k not in COUNT_KEYS})
