"""The records that flow between stages.

Every record is a dataclass (frozen, except the CoT record that a clone run fills in step by step) that
converts to and from plain JSON (``to_json`` / ``from_json``), so stage boundaries are JSONL files, never
pickles. Every record carries its problem id.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any


class Verdict(str, enum.Enum):
    """The answer checker's verdict on one completion against one gold answer."""

    CORRECT = "correct"
    WRONG = "wrong"
    UNPARSEABLE = "unparseable"  # no final answer could be extracted from the completion

    # A str subclass, so JSON writes the bare value and a member equals its value ("correct"). str() and
    # format() give the value too (as enum.StrEnum does, which Python 3.10 lacks): otherwise f-strings would
    # write "Verdict.CORRECT" on 3.12+.
    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    # Enum hashes by member name; hashing as the value keeps a member and its string interchangeable as dict
    # keys and in sets (counts keyed by "correct", phrase banks), consistent with their equality.
    __hash__ = str.__hash__


# Positions in a search tree's flat node list: the root is always the first node, and its parent is "none"
# (walks up a path stop when the parent index drops below the root).
ROOT_ID = 0
NO_PARENT = -1


@dataclass(frozen=True)
class Problem:
    id: str
    problem: str
    answer: str
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def task(self) -> str:
        """The task this problem belongs to (``meta["task"]``; none means math, see ``astro_reasoner.tasks``)."""
        return str(self.meta.get("task") or "math")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Problem":
        return cls(id=str(d["id"]), problem=d["problem"], answer=str(d["answer"]),
                   source=d.get("source", ""), meta=dict(d.get("meta") or {}))


@dataclass(frozen=True)
class GenParams:
    """Sampling parameters for one backend call (the same for every prompt in the call).

    ``seeds`` (optional, one per prompt of the call): prompt i's samples are drawn from random streams seeded
    by ``seeds[i]`` alone, whatever else is in the batch, so a caller that batches differently (a resumed
    search) gets the same samples. Backends (or modes) that cannot seed per prompt use ``seed``.
    """

    n: int = 1
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    seeds: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Completion:
    """One continuation returned by a backend.

    ``text`` excludes the matched stop string; ``finish_reason`` is ``"stop"`` (a stop string matched),
    ``"length"`` (max_tokens reached) or ``"eos"`` (the model ended its turn).
    ``logprob_sum`` is the sum of the sampled tokens' log-probabilities (the PUCT prior comes from it).
    """

    text: str
    tokens: int
    logprob_sum: float
    finish_reason: str
    prompt_tokens: int = 0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Completion":
        return cls(**d)


@dataclass
class Node:
    """One node of a search tree. A tree is a flat list; ``nodes[ROOT_ID]`` is the root (the problem, step "").

    ``value_sum / visits`` is Q. ``evals`` counts the evaluations made at this node itself (its own
    rollouts or terminal checks), so that ``visits == evals + sum(child.visits)`` holds for every node.
    Mutable because search updates visits and values in place; trees are written out only when finished.
    """

    id: int
    parent: int  # NO_PARENT for the root
    depth: int
    step: str
    prior: float = 1.0
    logprob_sum: float = 0.0
    step_tokens: int = 0
    visits: int = 0
    value_sum: float = 0.0
    evals: int = 0
    terminal: bool = False
    answer: str | None = None
    verdict: Verdict | None = None  # set on terminals, else None
    finish_reason: str = ""
    source: str = "expand"  # "expand" (sampled as a candidate step) or "rollout" (grafted from a rollout)
    children: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Trees read back from JSON carry the plain string; an unknown one is a ValueError (a malformed record).
        if self.verdict is not None and not isinstance(self.verdict, Verdict):
            self.verdict = Verdict(self.verdict)

    @property
    def q(self) -> float:
        return self.value_sum / self.visits if self.visits else 0.0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Node":
        return cls(**d)


@dataclass
class SearchTree:
    problem_id: str
    problem: str
    answer: str
    nodes: list[Node]
    config_hash: str = ""
    stats: dict[str, Any] = field(default_factory=dict)
    task: dict[str, Any] = field(default_factory=dict)  # the problem's task fields; empty for math (tasks/)

    def path(self, node_id: int) -> list[int]:
        """Node ids from the root's first child down to ``node_id`` (the root itself is excluded)."""
        out: list[int] = []
        while node_id > ROOT_ID:
            out.append(node_id)
            node_id = self.nodes[node_id].parent
        return out[::-1]

    def terminals(self, verdict: Verdict | None = None) -> list[Node]:
        return [n for n in self.nodes if n.terminal and (verdict is None or n.verdict == verdict)]

    def to_json(self) -> dict[str, Any]:
        return {"problem_id": self.problem_id, "problem": self.problem, "answer": self.answer,
                **({"task": self.task} if self.task else {}),  # math trees stay as they were
                "config_hash": self.config_hash, "stats": self.stats,
                "nodes": [n.to_json() for n in self.nodes]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "SearchTree":
        return cls(problem_id=str(d["problem_id"]), problem=d["problem"], answer=str(d["answer"]),
                   nodes=[Node.from_json(n) for n in d["nodes"]], config_hash=d.get("config_hash", ""),
                   stats=dict(d.get("stats") or {}), task=dict(d.get("task") or {}))


@dataclass(frozen=True)
class Move:
    """A procedure-cloning move: ``step`` into ``node`` or ``backtrack`` to ``node`` (ASTRO §2.2)."""

    kind: str  # "step" | "backtrack"
    node: int

    def to_json(self) -> list[Any]:
        return [self.kind, self.node]

    @classmethod
    def from_json(cls, d: Any) -> "Move":
        if isinstance(d, dict):
            return cls(kind=d["kind"], node=int(d["node"]))
        return cls(kind=d[0], node=int(d[1]))


@dataclass(frozen=True)
class Trace:
    problem_id: str
    moves: tuple[Move, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"problem_id": self.problem_id, "moves": [m.to_json() for m in self.moves], "meta": self.meta}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Trace":
        return cls(problem_id=str(d["problem_id"]), moves=tuple(Move.from_json(m) for m in d["moves"]),
                   meta=dict(d.get("meta") or {}))


@dataclass
class CotRecord:
    """One rendered trace of a clone run: a line of ``cots.jsonl`` (ASTRO §2.3). ``template`` is the CoT as
    rendered from the tree, ``cot`` what is trained on (the template, or its LM rewrite when accepted);
    ``final_answer``/``verdict`` are the re-check of ``cot`` (every exported CoT must be CORRECT), ``length`` its
    size in the run's length unit; ``kept`` False with ``drop`` the reason ("recheck", "too_long")."""

    key: str  # "<problem_id>#<trace_index>": the resume key
    problem_id: str
    trace_index: int
    mode: str  # "astro" | "direct"
    n_backtracks: int
    template: str
    roundtrip: bool  # the template reads back to the trace's moves (render.Signature)
    cot: str
    rewritten: bool = False
    rewrite_reason: str | None = None
    votes: list[str] = field(default_factory=list)  # self-evaluation votes of its correct terminal
    kept: bool = True
    drop: str | None = None
    final_answer: str | None = None
    verdict: Verdict | None = None
    length: int = 0

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["verdict"] = self.verdict.value if self.verdict is not None else None
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "CotRecord":
        names = {f.name for f in dataclasses.fields(cls)}
        rec = cls(**{k: v for k, v in d.items() if k in names})
        rec.verdict = Verdict(d["verdict"]) if d.get("verdict") is not None else None
        rec.votes = list(rec.votes or [])
        return rec

