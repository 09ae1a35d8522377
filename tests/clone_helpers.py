"""Constructed search trees with known answers for the clone and behaviour tests."""

from __future__ import annotations

import random

from astro_reasoner.types import Node, SearchTree, Verdict

_SUBJECTS = ["Tom", "Anna", "the baker", "each box", "the train", "Maria", "the class", "the farmer", "the store"]
_VERBS = ["has", "buys", "sells", "needs", "gives away", "collects", "bakes", "packs", "loses"]
_ITEMS = ["apples", "cookies", "books", "marbles", "tickets", "pencils", "eggs", "coins", "stamps"]
_FORMS = [
    "{s} {v} {a} {i}, so we compute {a} + {b} = {c}.",
    "Next, {s} {v} {b} more {i}; {a} * {b} = {c}.",
    "We know that {a} {i} cost ${b} each, so the total is {a} * {b} = {c} dollars.",
    "Subtract the {b} {i} that {s} {v}: {a} - {b} = {c}.",
    "Let x be the number of {i}. Then {a}x = {c}, so x = {c}/{a}.",
    "Since {s} {v} {a} {i} per day, in {b} days that is {c} {i}.",
    "Dividing {c} {i} among {b} friends gives {a} each.",
]


def random_step(rng: random.Random) -> str:
    a, b = rng.randint(2, 60), rng.randint(2, 60)
    return rng.choice(_FORMS).format(s=rng.choice(_SUBJECTS), v=rng.choice(_VERBS), i=rng.choice(_ITEMS),
                                     a=a, b=b, c=a * b if rng.random() < 0.5 else a + b)


def build_tree(spec: list[tuple[int, str, str | None]], gold: str = "10", problem_id: str = "p0",
               problem: str = "How many apples are left?", stats: dict | None = None) -> SearchTree:
    """A tree from ``[(parent, step, answer_or_None), ...]`` (node ids 1..n in order; nodes with an answer
    are terminals, CORRECT iff answer == gold, else WRONG; answer "" = UNPARSEABLE). Q = 1 for correct
    terminals and their ancestors share visits so that Q is well defined."""
    nodes = [Node(id=0, parent=-1, depth=0, step="")]
    for i, (parent, step, answer) in enumerate(spec, start=1):
        n = Node(id=i, parent=parent, depth=nodes[parent].depth + 1, step=step)
        if answer is not None:
            n.terminal = True
            n.answer = answer or None
            n.verdict = Verdict.UNPARSEABLE if not answer else (Verdict.CORRECT if answer == gold else Verdict.WRONG)
            n.visits, n.value_sum = 1, (1.0 if answer == gold else -1.0)
        nodes[parent].children.append(i)
        nodes.append(n)
    return SearchTree(problem_id=problem_id, problem=problem, answer=gold, nodes=nodes,
                      stats=dict({"generated_tokens": 400} if stats is None else stats))


def random_tree(rng: random.Random, problem_id: str = "p0", gold: str = "42", max_depth: int = 5,
                n_terminals: int | None = None, dup_prob: float = 0.1) -> SearchTree:
    """A random tree with several correct and wrong terminals; some step texts repeat across branches."""
    spec: list[tuple[int, str, str | None]] = []
    depth = {0: 0}
    inner = [0]
    n_terminals = n_terminals or rng.randint(2, 7)
    texts: list[str] = []
    for t in range(n_terminals):
        parent = rng.choice(inner)
        while depth[parent] < rng.randint(1, max_depth) - 1:
            step = rng.choice(texts) if texts and rng.random() < dup_prob else random_step(rng)
            texts.append(step)
            spec.append((parent, step, None))
            nid = len(spec)
            depth[nid] = depth[parent] + 1
            inner.append(nid)
            parent = nid
        answer = gold if t == 0 or rng.random() < 0.3 else str(rng.randint(1, 99))
        step = random_step(rng).rstrip(".") + f", so the answer is \\boxed{{{answer}}}."
        spec.append((parent, step, answer))
        depth[len(spec)] = depth[parent] + 1
    return build_tree(spec, gold=gold, problem_id=problem_id)
