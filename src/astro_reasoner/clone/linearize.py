"""Trees -> traces: procedure cloning's node sequences (ASTRO §2.2, Algorithm 1).

A trace visits up to ``max_backtracks`` incorrect terminals and ends at a correct one: root -> wrong 1,
backtrack to the node where the next path branches off, -> wrong 2, ..., -> correct terminal. Backtracks
happen only at terminal nodes (ASTRO §2.2). The Direct baseline is the correct path alone.

Choices the paper leaves open (ours, each named where it is made):
- the correct terminal is the one with the highest Q among correct terminals; ties -> fewer steps, then the
  lower node id (deterministic);
- incorrect terminals are WRONG terminals with an answer (UNPARSEABLE ones are mostly cut-off text); one per
  distinct answer (highest Q, then fewer steps); when there are more answers than backtracks we prefer
  different branch-off depths from the correct path (round-robin over depths, random within a depth);
- the wrong terminals are visited in increasing branch-off depth, so each attempt shares more of the final
  solution than the last (a trace that "gets closer"), with random order within a depth.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ..io import stable_seed
from ..types import Move, Node, SearchTree, Trace, Verdict
from .config import CloneConfig


@dataclass
class LinearizeStats:
    trees: int = 0
    no_correct: int = 0  # trees without a correct terminal: no trace
    no_wrong: int = 0  # astro mode: trees without a usable wrong terminal: traces have no backtrack
    short: int = 0  # traces with fewer backtracks than sampled (not enough distinct wrong answers)
    duplicates: int = 0  # identical traces drawn twice for one tree (dropped)
    traces: int = 0
    backtracks: dict[int, int] = field(default_factory=dict)  # number of backtracks -> traces

    def merge(self, other: "LinearizeStats") -> None:
        for k in ("trees", "no_correct", "no_wrong", "short", "duplicates", "traces"):
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
        if i == 0 and n.parent != -1:
            return "nodes[0] (the root) must have parent -1"
        if i > 0 and not 0 <= n.parent < i:
            return f"nodes[{i}] has parent {n.parent}, not an earlier node"
    return None


def normalize_answer(answer: str | None) -> str:
    """Key for "distinct wrong answers": whitespace and case removed (our choice; cheap and conservative)."""
    return "".join((answer or "").split()).lower()


def pick_correct(tree: SearchTree) -> Node | None:
    """The correct terminal with the highest Q; ties -> fewer steps, then the lower id."""
    correct = tree.terminals(Verdict.CORRECT)
    return max(correct, key=lambda n: (n.q, -n.depth, -n.id)) if correct else None


def wrong_candidates(tree: SearchTree) -> list[Node]:
    """One WRONG terminal per distinct answer (the highest Q, then fewer steps, then the lower id)."""
    best: dict[str, Node] = {}
    for n in tree.terminals(Verdict.WRONG):
        if not normalize_answer(n.answer):
            continue
        key = normalize_answer(n.answer)
        if key not in best or (n.q, -n.depth, -n.id) > (best[key].q, -best[key].depth, -best[key].id):
            best[key] = n
    return sorted(best.values(), key=lambda n: n.id)


def shared_prefix(a: list[int], b: list[int]) -> int:
    """Number of leading nodes two root paths share (= depth of their lowest common ancestor)."""
    k = 0
    while k < len(a) and k < len(b) and a[k] == b[k]:
        k += 1
    return k


def choose_wrong(tree: SearchTree, correct: Node, k: int, rng: random.Random) -> list[Node]:
    """Up to ``k`` wrong terminals, spread over branch-off depths, ordered by increasing branch-off depth."""
    cpath = tree.path(correct.id)
    by_depth: dict[int, list[Node]] = {}
    for n in wrong_candidates(tree):
        by_depth.setdefault(shared_prefix(tree.path(n.id), cpath), []).append(n)
    groups = [by_depth[d] for d in sorted(by_depth)]
    for g in groups:
        rng.shuffle(g)
    order = list(range(len(groups)))
    rng.shuffle(order)
    chosen: list[Node] = []
    while len(chosen) < k and any(groups):
        for gi in order:  # round-robin: a second pick from a depth only after every depth had one
            if groups[gi] and len(chosen) < k:
                chosen.append(groups[gi].pop())
    rank = {n.id: rng.random() for n in chosen}
    return sorted(chosen, key=lambda n: (shared_prefix(tree.path(n.id), cpath), rank[n.id]))


def sample_backtracks(cfg: CloneConfig, rng: random.Random) -> int:
    spec = cfg.max_backtracks
    if isinstance(spec, int):
        return spec
    counts, weights = zip(*sorted(spec.items()))
    return rng.choices(counts, weights=weights, k=1)[0]


def build_moves(tree: SearchTree, targets: list[Node], merge: str, rng: random.Random) -> list[Move]:
    """root -> targets[0], backtrack, -> targets[1], ... (ASTRO §2.2). ``merge`` picks the node returned to:
    the lowest common ancestor with the next path (lca), the root, or a random common ancestor."""
    moves: list[Move] = []
    cur: list[int] = []
    for i, t in enumerate(targets):
        tpath = tree.path(t.id)
        start = 0
        if i > 0:
            lca = shared_prefix(cur, tpath)
            start = {"lca": lca, "root": 0}.get(merge, None)
            if start is None:  # random: any node on the shared prefix, the root included
                start = rng.randint(0, lca)
            moves.append(Move("backtrack", tpath[start - 1] if start > 0 else 0))
        moves.extend(Move("step", nid) for nid in tpath[start:])
        cur = tpath
    return moves


def linearize_tree(tree: SearchTree, cfg: CloneConfig) -> tuple[list[Trace], LinearizeStats]:
    """All traces of one tree under ``cfg`` (empty when it has no correct terminal)."""
    st = LinearizeStats(trees=1)
    correct = pick_correct(tree)
    if correct is None:
        st.no_correct = 1
        return [], st
    n_wrong = len(wrong_candidates(tree)) if cfg.mode == "astro" else 0
    if cfg.mode == "astro" and n_wrong == 0:
        st.no_wrong = 1
    traces: list[Trace] = []
    seen: set[tuple[Move, ...]] = set()
    n_traces = cfg.traces_per_tree if cfg.mode == "astro" else 1  # Direct has exactly one path per tree
    for t in range(n_traces):
        rng = random.Random(stable_seed(cfg.seed, tree.problem_id, t, "linearize"))
        requested = sample_backtracks(cfg, rng) if cfg.mode == "astro" else 0
        wrong = choose_wrong(tree, correct, requested, rng) if requested else []
        moves = tuple(build_moves(tree, [*wrong, correct], cfg.merge, rng))
        if moves in seen:
            st.duplicates += 1
            continue
        seen.add(moves)
        if len(wrong) < requested:
            st.short += 1
        st.backtracks[len(wrong)] = st.backtracks.get(len(wrong), 0) + 1
        traces.append(Trace(tree.problem_id, moves, meta={
            "mode": cfg.mode, "trace_index": t, "n_backtracks": len(wrong), "requested_backtracks": requested,
            "correct_node": correct.id, "wrong_nodes": [n.id for n in wrong], "merge": cfg.merge}))
    st.traces = len(traces)
    return traces, st
