"""Trees -> traces: procedure cloning's node sequences (ASTRO §2.2, Algorithm 1).

Algorithm 1, as we implement it:
1. the correct terminal n* is SAMPLED (seed: ``stable_seed(run seed, problem id, trace index)``) among the
   correct terminals that passed self-evaluation (all correct terminals when the filter is off);
2. K wrong terminals are sampled with unique answers; "unique" is decided by the answer checker's
   equivalence ("1/2" and "0.5" are one answer), one random terminal per answer class;
3. the root paths are written one after the other, each new path appended from the DEEPEST node already on
   the written sequence (a backtrack to that node, then only the new part ``l - L``), so no step is written
   twice; the sequence ends with the path to n*.

Per tree (ASTRO §3.3's SFT mix): ``direct_traces`` traces with k = 0 backtracks (the path to n* alone) and
``search_traces`` traces with k >= 1, k drawn from ``max_backtracks``. Direct mode (the baseline) writes one
k = 0 trace per tree.

Choices the paper leaves open (ours, each named where it is made): only WRONG terminals with an answer are
candidates (UNPARSEABLE ones are mostly cut-off text); the paths are written in increasing branch-off depth
from the path to n*, and within one depth in a random depth-first order — in that order the deepest written
node of a new path is always on the path written just before it, so every backtrack returns to an ancestor of
the step where the solver stands (the "go back to where we ..." the renderer writes).
Ablations: ``merge=root`` (every attempt starts over) and ``merge=random`` (a random written ancestor) write
shared steps again by design.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from ..io import stable_seed
from ..types import NO_PARENT, ROOT_ID, Move, Node, SearchTree, Trace, Verdict
from .config import CloneConfig

SameAnswer = Callable[[list[tuple[str, str]]], list[bool]]  # e.g. Checker.equivalent_batch


@dataclass
class LinearizeStats:
    trees: int = 0
    no_correct: int = 0  # trees without a correct terminal: no trace
    no_approved: int = 0  # trees whose correct terminals all failed self-evaluation: no trace
    no_wrong: int = 0  # astro mode: trees without a usable wrong terminal: no k >= 1 trace
    short: int = 0  # traces with fewer backtracks than sampled (not enough distinct wrong answers)
    duplicates: int = 0  # identical traces drawn twice for one tree (dropped)
    traces: int = 0
    backtracks: dict[int, int] = field(default_factory=dict)  # number of backtracks -> traces

    def merge(self, other: "LinearizeStats") -> None:
        for k in ("trees", "no_correct", "no_approved", "no_wrong", "short", "duplicates", "traces"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        for k, v in other.backtracks.items():
            self.backtracks[k] = self.backtracks.get(k, 0) + v


def validate_tree(tree: SearchTree) -> str | None:
    """Why the tree cannot be linearized safely (broken structure), or None if it is fine."""
    if not tree.nodes:
        return "the tree has no nodes"
    for i, n in enumerate(tree.nodes):
        if n.id != i:
            return f"nodes[{i}] has id {n.id} (ids must equal list positions)"
        if i == ROOT_ID and n.parent != NO_PARENT:
            return f"nodes[{ROOT_ID}] (the root) must have parent {NO_PARENT}"
        if i > ROOT_ID and not ROOT_ID <= n.parent < i:
            return f"nodes[{i}] has parent {n.parent}, not an earlier node"
    return None


def normalize_answer(answer: str | None) -> str:
    return "".join((answer or "").split()).lower()


def exact_same(pairs: list[tuple[str, str]]) -> list[bool]:
    """Answer equality without a checker (whitespace and case removed); run_clone passes the checker's."""
    return [normalize_answer(a) == normalize_answer(b) for a, b in pairs]


def answer_classes(nodes: list[Node], same: SameAnswer) -> list[list[Node]]:
    """Group terminals by equivalent answer: a terminal joins the first class whose representative's answer
    the checker accepts as equal to its own (the representative plays the gold); classes in id order."""
    classes: list[list[Node]] = []
    for n in sorted(nodes, key=lambda n: n.id):
        verdicts = same([(c[0].answer or "", n.answer or "") for c in classes]) if classes else []
        hit = next((c for c, ok in zip(classes, verdicts) if ok), None)
        if hit is None:
            classes.append([n])
        else:
            hit.append(n)
    return classes


def wrong_classes(tree: SearchTree, same: SameAnswer) -> list[list[Node]]:
    """The WRONG terminals that carry an answer, one class per distinct answer."""
    return answer_classes([n for n in tree.terminals(Verdict.WRONG) if normalize_answer(n.answer)], same)


def correct_candidates(tree: SearchTree, approved: set[int] | None) -> list[Node]:
    """Correct terminals n* may be drawn from: those self-evaluation approved, or all when it is off."""
    return [n for n in tree.terminals(Verdict.CORRECT) if approved is None or n.id in approved]


def shared_prefix(a: list[int], b: list[int]) -> int:
    """Number of leading nodes two root paths share (= depth of their lowest common ancestor)."""
    k = 0
    while k < len(a) and k < len(b) and a[k] == b[k]:
        k += 1
    return k


def choose_wrong(tree: SearchTree, correct: Node, classes: list[list[Node]], k: int,
                 rng: random.Random) -> list[Node]:
    """Up to ``k`` wrong terminals with pairwise distinct answers (Algorithm 1), in writing order: increasing
    branch-off depth from the path to n*, then a random depth-first order (see the module docstring)."""
    picked = [rng.choice(c) for c in rng.sample(classes, min(k, len(classes)))]
    cpath = tree.path(correct.id)
    rank: dict[int, float] = {}  # a random rank per node: sorting paths by ranks is a random DFS order

    def key(n: Node) -> tuple:
        p = tree.path(n.id)
        return (shared_prefix(p, cpath), [rank.setdefault(x, rng.random()) for x in p])

    return sorted(picked, key=key)


def sample_backtracks(spec, rng: random.Random) -> int:
    if isinstance(spec, int):
        return spec
    counts, weights = zip(*sorted(spec.items()))
    return rng.choices(counts, weights=weights, k=1)[0]


def build_moves(tree: SearchTree, targets: list[Node], merge: str, rng: random.Random) -> list[Move]:
    """root -> targets[0], backtrack, -> targets[1], ... (ASTRO §2.2, Algorithm 1). With ``merge="deepest"``
    each new path continues from its deepest node already written (nothing is written twice); ``root``
    starts over, ``random`` returns to a random written ancestor (ablations)."""
    moves: list[Move] = []
    written: set[int] = set()
    for i, t in enumerate(targets):
        tpath = tree.path(t.id)
        start = 0
        if i > 0:
            # Written nodes form whole root paths, so the written part of tpath is a prefix of it.
            deepest = next((j for j in range(len(tpath), 0, -1) if tpath[j - 1] in written), 0)
            start = {"deepest": deepest, "root": 0}.get(merge)
            if start is None:  # random: any written ancestor, the root included
                start = rng.randint(0, deepest)
            moves.append(Move("backtrack", tpath[start - 1] if start > 0 else 0))
        moves.extend(Move("step", nid) for nid in tpath[start:])
        written.update(tpath)
    return moves


def linearize_tree(tree: SearchTree, cfg: CloneConfig, *, same: SameAnswer = exact_same,
                   approved: set[int] | None = None) -> tuple[list[Trace], LinearizeStats]:
    """All traces of one tree under ``cfg`` (empty when it has no usable correct terminal).

    ``same`` decides answer equivalence (``Checker.equivalent_batch``); ``approved`` holds the ids of the
    correct terminals that passed self-evaluation (None: the filter is off)."""
    st = LinearizeStats(trees=1)
    if not tree.terminals(Verdict.CORRECT):
        st.no_correct = 1
        return [], st
    correct = correct_candidates(tree, approved)
    if not correct:
        st.no_approved = 1
        return [], st
    classes = wrong_classes(tree, same) if cfg.mode == "astro" else []
    if cfg.mode == "astro":
        plan = [0] * cfg.direct_traces + [None] * (cfg.search_traces if classes else 0)
        st.no_wrong = int(not classes)
    else:
        plan = [0]  # Direct baseline: exactly one path per tree
    traces: list[Trace] = []
    seen: set[tuple[Move, ...]] = set()
    for t, fixed in enumerate(plan):
        rng = random.Random(stable_seed(cfg.seed, tree.problem_id, t, "linearize"))
        n_star = rng.choice(correct)
        requested = fixed if fixed is not None else sample_backtracks(cfg.max_backtracks, rng)
        wrong = choose_wrong(tree, n_star, classes, requested, rng) if requested else []
        moves = tuple(build_moves(tree, [*wrong, n_star], cfg.merge, rng))
        if moves in seen:
            st.duplicates += 1
            continue
        seen.add(moves)
        if len(wrong) < requested:
            st.short += 1
        st.backtracks[len(wrong)] = st.backtracks.get(len(wrong), 0) + 1
        traces.append(Trace(tree.problem_id, moves, meta={
            "mode": cfg.mode, "trace_index": t, "n_backtracks": len(wrong), "requested_backtracks": requested,
            "kind": "direct" if fixed == 0 else "search", "correct_node": n_star.id,
            "wrong_nodes": [n.id for n in wrong], "merge": cfg.merge}))
    st.traces = len(traces)
    return traces, st
