"""Pure tree operations of ASTRO's MCTS (§2.2) over the flat, integer-indexed `SearchTree`.

No torch, no prompt text, no I/O: the driver asks these functions which leaf to expand, hands back the
policy's samples and the checker's verdicts, and these functions update the tree. That keeps the algorithm
testable with a scripted policy and identical across backends (the mctx idea).

Rules, with their sources:
- Selection (ASTRO §2.2, PUCT): from the root, take the child maximising
  ``Q(s,a) + c_puct * P(a|s) * sqrt(N(s)) / (1 + N(s,a))`` until reaching a node without expanded
  children. ``P`` is the step's length-normalised probability ``exp(mean token logprob)``, normalised over
  siblings (ASTRO §2.2; same as OpenR). ``N(s)`` is floored at 1 so priors still order children whose
  parent has no completed visit yet (our choice).
- Unvisited children (our rule): a child with no visits (possible only with ``rollouts=0``, or while a
  selection is pending under virtual loss) is scored with ``Q = unvisited_q``, the middle of the reward
  range, so the prior term decides among unvisited siblings. Ties break towards the lower node id.
- Terminal children are never selected (their value is exact; rStar-Math does the same); a subtree with no
  expandable leaf left is closed, and a tree whose root is closed is finished.
- Expansion: identical step texts among the k samples are merged (first sample kept). A step containing a
  boxed answer (``text.has_boxed``) is terminal, and so is a step after which the model ended its turn; a non-terminal step at
  ``max_depth`` is a terminal without answer (ASTRO §2.1: no answer = wrong).
- Evaluation/backprop (ASTRO §2.2): a new child is evaluated once, with the mean reward of its rollouts
  (or its own reward if terminal). That one evaluation adds one visit and its value to the child and every
  ancestor, so ``visits == evals + sum(children's visits)`` and ``Q = value_sum / visits`` is the running
  mean of the evaluations below a node.
- Grafted rollouts (``keep_rollouts``): finished rollouts are inserted under their child as chains of steps
  with ``source="rollout"`` (shared prefixes merged). They carry no visits and are never selected: data for
  procedure cloning, not search statistics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..answers import as_number, normalize
from ..text import BOXED, STEP_DELIMITER, cut_at_answer, has_boxed, split_steps  # noqa: F401 (re-exported)
from ..types import NO_PARENT, ROOT_ID, Completion, Node, SearchTree, Verdict


def new_tree(problem_id: str, problem: str, answer: str, config_hash: str = "") -> SearchTree:
    """A tree holding only the root (the problem; empty step)."""
    return SearchTree(problem_id=problem_id, problem=problem, answer=answer, config_hash=config_hash,
                      nodes=[Node(id=ROOT_ID, parent=NO_PARENT, depth=0, step="")], stats={"dead_ends": []})


def path_steps(tree: SearchTree, node_id: int) -> list[str]:
    """Step texts from the root's child down to ``node_id`` (what the prompt builder continues)."""
    return [tree.nodes[i].step for i in tree.path(node_id)]


def expanded_children(tree: SearchTree, node_id: int) -> list[int]:
    """Children created by expansion (the ones selection considers), in creation order."""
    nodes = tree.nodes
    return [c for c in nodes[node_id].children if nodes[c].source == "expand"]


def open_nodes(tree: SearchTree) -> set[int]:
    """Node ids whose subtree still contains an expandable leaf (non-terminal, not a dead end)."""
    dead = set(tree.stats.get("dead_ends", ()))
    out: set[int] = set()
    for node in reversed(tree.nodes):  # children always have larger ids than their parent
        if node.terminal or node.source != "expand" or node.id in dead:
            continue
        kids = expanded_children(tree, node.id)
        if not kids or any(c in out for c in kids):
            out.add(node.id)
    return out


def puct_score(tree: SearchTree, parent: int, child: int, c_puct: float, unvisited_q: float,
               virtual: dict[int, int] | None = None, virtual_value: float = -1.0) -> float:
    """PUCT of ``child`` under ``parent`` (module docstring). ``virtual`` counts pending selections per
    node; each acts as one extra visit with reward ``virtual_value`` (virtual loss)."""
    virtual = virtual or {}
    p, c = tree.nodes[parent], tree.nodes[child]
    n_parent = p.visits + virtual.get(parent, 0)
    n_child = c.visits + virtual.get(child, 0)
    w_child = c.value_sum + virtual.get(child, 0) * virtual_value
    q = w_child / n_child if n_child else unvisited_q
    return q + c_puct * c.prior * math.sqrt(max(n_parent, 1)) / (1 + n_child)


def select_leaf(tree: SearchTree, c_puct: float, unvisited_q: float, *,
                virtual: dict[int, int] | None = None, virtual_value: float = -1.0) -> int | None:
    """The leaf to expand next (a node without expanded children), or None if the tree is exhausted."""
    opened = open_nodes(tree)
    if ROOT_ID not in opened:
        return None
    node = ROOT_ID
    while True:
        kids = [c for c in expanded_children(tree, node) if c in opened]
        if not kids:
            return node
        node = max(kids, key=lambda c: (puct_score(tree, node, c, c_puct, unvisited_q, virtual,
                                                   virtual_value), -c))


def add_virtual(tree: SearchTree, leaf: int, virtual: dict[int, int]) -> None:
    """Count one pending selection on the root->leaf path (virtual loss)."""
    node = leaf
    while node >= ROOT_ID:  # up to and including the root
        virtual[node] = virtual.get(node, 0) + 1
        node = tree.nodes[node].parent


@dataclass(frozen=True)
class Expansion:
    """The children an expansion created: all of them, and those that need the answer checker."""

    children: list[int]
    to_check: list[int]  # terminal children with an answer to verify
    to_simulate: list[int]  # non-terminal children (they get rollouts)


def add_children(tree: SearchTree, parent: int, samples: Sequence[Completion], max_depth: int) -> Expansion:
    """Expand ``parent`` with the policy's samples (deduplicated, priors normalised over siblings).

    A parent for which every sample is empty becomes a dead end (recorded in ``tree.stats['dead_ends']``,
    never selected again).
    """
    p = tree.nodes[parent]
    assert not p.terminal and not expanded_children(tree, parent), "only unexpanded non-terminal leaves"
    seen: dict[str, Completion] = {}
    for s in samples:
        text = s.text.strip()
        if text and text not in seen:
            seen[text] = s
    if not seen:
        tree.stats.setdefault("dead_ends", []).append(parent)
        return Expansion([], [], [])
    # Length-normalised log-probabilities -> normalised priors (computed stably around the max).
    means = {t: s.logprob_sum / max(s.tokens, 1) for t, s in seen.items()}
    top = max(means.values())
    weights = {t: math.exp(m - top) for t, m in means.items()}
    total = sum(weights.values())
    children, to_check, to_simulate = [], [], []
    for text, s in seen.items():
        node = Node(id=len(tree.nodes), parent=parent, depth=p.depth + 1, step=text,
                    prior=weights[text] / total, logprob_sum=s.logprob_sum, step_tokens=s.tokens,
                    finish_reason=s.finish_reason)
        if has_boxed(text) or s.finish_reason == "eos":
            node.terminal = True
            to_check.append(node.id)
        elif node.depth >= max_depth:
            node.terminal, node.verdict, node.finish_reason = True, Verdict.UNPARSEABLE, "depth_limit"
        else:
            to_simulate.append(node.id)
        tree.nodes.append(node)
        p.children.append(node.id)
        children.append(node.id)
    return Expansion(children, to_check, to_simulate)


def set_verdict(tree: SearchTree, node_id: int, verdict: Verdict, answer: str | None) -> None:
    node = tree.nodes[node_id]
    node.verdict, node.answer = verdict, answer


def backprop(tree: SearchTree, node_id: int, value: float) -> None:
    """Record one evaluation with ``value`` at ``node_id`` and add it to every ancestor's statistics."""
    tree.nodes[node_id].evals += 1
    node = node_id
    while node >= ROOT_ID:  # up to and including the root
        n = tree.nodes[node]
        n.visits += 1
        n.value_sum += value
        node = n.parent


def graft_rollout(tree: SearchTree, node_id: int, text: str, verdict: Verdict, answer: str | None,
                  finish_reason: str) -> int | None:
    """Insert a finished rollout under ``node_id`` as a chain of ``source="rollout"`` steps, merging with
    earlier grafted chains that share a prefix. Returns the terminal node id (None for an empty rollout)."""
    steps = split_steps(text)
    if not steps:
        return None
    node = node_id
    for i, step in enumerate(steps):
        last = i == len(steps) - 1
        match = next((c for c in tree.nodes[node].children
                      if tree.nodes[c].source == "rollout" and tree.nodes[c].step == step
                      and tree.nodes[c].terminal == last), None)
        if match is None:
            parent = tree.nodes[node]
            child = Node(id=len(tree.nodes), parent=node, depth=parent.depth + 1, step=step, prior=0.0,
                         source="rollout", terminal=last, finish_reason=finish_reason if last else "stop")
            if last:
                child.verdict, child.answer = verdict, answer
            tree.nodes.append(child)
            parent.children.append(child.id)
            match = child.id
        node = match
    return node


def terminal_counts(tree: SearchTree) -> tuple[int, int]:
    """(correct, not correct) terminals with a verdict, grafted rollouts included."""
    correct = wrong = 0
    for n in tree.nodes:
        if n.terminal and n.verdict is not None:
            if n.verdict == Verdict.CORRECT:
                correct += 1
            else:
                wrong += 1
    return correct, wrong


def answer_key(answer: str | None) -> str:
    """Key under which two extracted answers count as the same: the checker's normal form, and for plain
    numbers their exact value ("1/2", "0.5" and "\\frac{1}{2}" share one key). Empty for no answer."""
    if not answer or not answer.strip():
        return ""
    norm = normalize(answer)
    value = as_number(norm)
    return f"={value}" if value is not None else norm


def early_stop_counts(tree: SearchTree) -> tuple[int, int]:
    """(correct terminals, distinct wrong answers) among EXPANDED terminals: what early stop counts.

    Grafted rollouts and answerless terminals (cut-off text, depth limit) are left out: grafted chains hang
    under the first iteration's children, so counting them stopped real trees after one iteration (issue 11),
    and procedure cloning needs wrong terminals with distinct answers to backtrack from.
    """
    correct = 0
    wrong: set[str] = set()
    for n in tree.nodes:
        if n.source != "expand" or not n.terminal or n.verdict is None:
            continue
        if n.verdict == Verdict.CORRECT:
            correct += 1
        elif n.verdict == Verdict.WRONG and answer_key(n.answer):
            wrong.add(answer_key(n.answer))
    return correct, len(wrong)


def validate_tree(tree: SearchTree, reward_range: tuple[float, float] | None = None) -> list[str]:
    """Structural and statistical invariants; returns a list of problems (empty = valid)."""
    errs: list[str] = []
    nodes = tree.nodes
    if not nodes or nodes[ROOT_ID].parent != NO_PARENT or nodes[ROOT_ID].depth != 0:
        return [f"{tree.problem_id}: node {ROOT_ID} must be the root (parent {NO_PARENT}, depth 0)"]
    for i, n in enumerate(nodes):
        where = f"{tree.problem_id} node {i}"
        if n.id != i:
            errs.append(f"{where}: id {n.id} != position {i}")
        if i and not (0 <= n.parent < i):
            errs.append(f"{where}: parent {n.parent} must be an earlier node")
            continue
        if i and (i not in nodes[n.parent].children or n.depth != nodes[n.parent].depth + 1):
            errs.append(f"{where}: not linked under its parent {n.parent} at depth parent+1")
        child_visits = sum(nodes[c].visits for c in n.children)
        if n.visits != n.evals + child_visits:
            errs.append(f"{where}: visits {n.visits} != evals {n.evals} + children's visits {child_visits}")
        if n.terminal and n.verdict is None:
            errs.append(f"{where}: terminal without a verdict")
        if n.terminal and n.source == "expand" and any(nodes[c].source == "expand" for c in n.children):
            errs.append(f"{where}: terminal node was expanded")
        if reward_range and n.visits:
            lo, hi = reward_range
            if not (lo - 1e-9 <= n.q <= hi + 1e-9):
                errs.append(f"{where}: Q {n.q:.4f} outside the reward range [{lo}, {hi}]")
        if n.source == "rollout" and (n.visits or n.evals):
            errs.append(f"{where}: grafted rollout node must carry no visits")
    kids = [c for c in nodes[ROOT_ID].children if nodes[c].source == "expand"]
    if kids:
        total = sum(nodes[c].prior for c in kids)
        if abs(total - 1.0) > 1e-6:
            errs.append(f"{tree.problem_id}: root children's priors sum to {total:.6f}, not 1")
    return errs
