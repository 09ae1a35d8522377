"""Countdown: the exhaustive solver, the step format, the puzzle generator and the prompt.

Step format (one operation per step, the numbers left restated, steps separated by a blank line as in ASTRO
§2.1), then a final step that RECOMPUTES the whole expression one operation at a time and boxes it::

    8 - 2 = 6. Left: 3, 4, 6.

    6 * 3 = 18. Left: 4, 18.

    18 + 4 = 22. Left: 22.

    Check: (8 - 2) * 3 + 4 = 6 * 3 + 4 = 18 + 4 = 22. The answer is \\boxed{(8 - 2) * 3 + 4}.

Why the final step recomputes instead of saying "22 is the target": SmolLM2-135M fine-tuned on solutions
that end by asserting the target learned to assert it whether or not the arithmetic held ("11 + 19 = 10.
... 10 is the target"; measured in issue 16). Here the last line is a chain of single operations on the
expression that is boxed, and never mentions the target: a wrong attempt ends in a visibly different number
("... = 21"), which is what a reflection can react to; the verifier judges the boxed expression itself.

The solver follows the rules of :mod:`.countdown` (whole-number division) and, in addition, never writes a
negative intermediate (the classic rule; the verifier accepts more, so every solver solution verifies).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from ..io import stable_seed
from ..text import join_steps
from ..types import Problem
from .countdown import TASK

PREC = {"+": 1, "-": 1, "*": 2, "/": 2}
SPLITS = {"test": (0, 20), "validation": (20, 30), "train": (30, 100), "all": (0, 100)}  # % of puzzle space
MAX_ATTEMPTS = 2000

SYSTEM_PROMPT = "You are a helpful assistant that solves arithmetic puzzles carefully."
INSTRUCTION = (
    "Use each of the given numbers exactly once, with + - * / and parentheses, to make the target. Do one "
    "operation per step and list the numbers left after it. Separate the steps with a blank line. In the last "
    "step, recompute the whole expression and put it in \\boxed{{}}.\n\n{problem}"
)
EXAMPLE_PUZZLES = (((8, 2, 3, 4), 22), ((4, 9, 3), 21))  # worked examples; their solutions come from the solver


@dataclass(frozen=True)
class Node:
    """An operation of a solution: ``left op right``, computed at step ``index`` with result ``value``."""

    op: str
    left: "int | Node"
    right: "int | Node"
    value: int
    index: int


def _value(e) -> int:
    return e if isinstance(e, int) else e.value


def _ops(a: int, b: int) -> Iterator[tuple[str, int, int, int]]:
    """(op, left, right, result) for the pair, larger operand first; exact (Fraction) whole-number results
    only, never negative."""
    hi, lo = (a, b) if a >= b else (b, a)
    yield "+", hi, lo, hi + lo
    yield "*", hi, lo, hi * lo
    yield "-", hi, lo, hi - lo
    if lo:
        q = Fraction(hi, lo)
        if q.denominator == 1:
            yield "/", hi, lo, int(q)


def _pairs(items: Sequence) -> Iterator[tuple[int, int]]:
    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            yield i, j


def reachable(numbers: Sequence[int]) -> frozenset[int]:
    """Every value an expression using all of ``numbers`` once can take (exhaustive, memoized per call)."""
    memo: dict[tuple[int, ...], frozenset[int]] = {}

    def go(state: tuple[int, ...]) -> frozenset[int]:
        if len(state) == 1:
            return frozenset(state)
        if state not in memo:
            out: set[int] = set()
            for i, j in _pairs(state):
                rest = state[:i] + state[i + 1:j] + state[j + 1:]
                for _, _, _, c in _ops(state[i], state[j]):
                    out |= go(tuple(sorted(rest + (c,))))
            memo[state] = frozenset(out)
        return memo[state]

    return go(tuple(sorted(int(x) for x in numbers)))


def solutions(numbers: Sequence[int], target: int, limit: int | None = None) -> list[Node]:
    """Solutions as expression trees (their root); step ``index`` gives the order of the operations."""
    found: list[Node] = []

    def go(items: list, step: int) -> bool:
        if len(items) == 1:
            if _value(items[0]) == target and isinstance(items[0], Node):
                found.append(items[0])
            return limit is not None and len(found) >= limit
        for i, j in _pairs(items):
            rest = items[:i] + items[i + 1:j] + items[j + 1:]
            a, b = items[i], items[j]
            for op, hi, lo, c in _ops(_value(a), _value(b)):
                left, right = (a, b) if _value(a) == hi else (b, a)
                if go(rest + [Node(op, left, right, c, step)], step + 1):
                    return True
        return False

    go([int(x) for x in numbers], 0)
    return found


def solvable(numbers: Sequence[int], target: int) -> bool:
    return int(target) in reachable(numbers)


# ---- rendering ---------------------------------------------------------------------------------------------

def show(e, done: int = 0) -> tuple[str, int]:
    """(text, precedence) of an expression; operations with index < ``done`` are written as their results
    (the recomputation chain of the final step). A right operand of the same precedence keeps its
    parentheses even where they could go (``4 * 3 + (8 + 2)``), so that every operation of the solution is a
    subexpression of the text and each link of the chain rewrites exactly one of them."""
    if isinstance(e, int):
        return str(e), 3
    if e.index < done:
        return str(e.value), 3
    lt, lp = show(e.left, done)
    rt, rp = show(e.right, done)
    p = PREC[e.op]
    if lp < p:
        lt = f"({lt})"
    if rp <= p:
        rt = f"({rt})"
    return f"{lt} {e.op} {rt}", p


def expression(root: Node) -> str:
    return show(root)[0]


def _operations(root: Node) -> list[Node]:
    out, stack = [], [root]
    while stack:
        n = stack.pop()
        if isinstance(n, Node):
            out.append(n)
            stack += [n.left, n.right]
    return sorted(out, key=lambda n: n.index)


def render_steps(numbers: Sequence[int], root: Node) -> list[str]:
    """The solution in the step format (see the module docstring), one string per step."""
    left = sorted(int(x) for x in numbers)
    steps = []
    for n in _operations(root):
        left.remove(_value(n.left))
        left.remove(_value(n.right))
        left = sorted(left + [n.value])
        steps.append(f"{_value(n.left)} {n.op} {_value(n.right)} = {n.value}. Left: {', '.join(map(str, left))}.")
    chain = " = ".join(show(root, done)[0] for done in range(len(steps) + 1))
    steps.append(f"Check: {chain}. The answer is \\boxed{{{expression(root)}}}.")
    return steps


def direct_solution(numbers: Sequence[int], target: int, rng: random.Random | None = None) -> str:
    """A solver-written direct solution (one attempt, no reflection, no backtracking) in the step format:
    the first solution found, or one drawn with ``rng``. Raises ValueError when there is none."""
    sols = solutions(numbers, target, limit=None if rng else 1)
    if not sols:
        raise ValueError(f"countdown: {list(numbers)} cannot make {target}")
    return join_steps(render_steps(numbers, rng.choice(sols) if rng else sols[0]))


# ---- prompt --------------------------------------------------------------------------------------------------

def statement(numbers: Sequence[int], target: int) -> str:
    """The problem as the prompt shows it: built from the fields, whatever the record's ``problem`` says."""
    return f"Numbers: {', '.join(map(str, numbers))}. Target: {target}."


def examples() -> tuple[tuple[str, str], ...]:
    """Worked examples (problem statement, solution) written by the solver."""
    return tuple((statement(nums, t), direct_solution(nums, t)) for nums, t in EXAMPLE_PUZZLES)


# ---- generator ---------------------------------------------------------------------------------------------

def split_of(numbers: Sequence[int], target: int) -> str:
    """The split a puzzle belongs to, from a stable hash of (sorted numbers, target): train, validation and
    test are disjoint by construction, whatever seeds and sizes are asked for."""
    bucket = stable_seed("countdown-split", *sorted(int(x) for x in numbers), "target", int(target)) % 100
    return next(name for name, (lo, hi) in SPLITS.items() if name != "all" and lo <= bucket < hi)


def validate_options(n: int, counts: Sequence[int], min_number: int, max_number: int, min_target: int,
                     max_target: int, split: str) -> tuple[int, ...]:
    counts = tuple(sorted({int(c) for c in counts}))
    if n < 1:
        raise ValueError(f"n={n}: must be at least 1")
    if not counts or not set(counts) <= {3, 4}:
        raise ValueError(f"counts={list(counts)}: use 3, 4 or both (numbers per puzzle)")
    if not 0 <= min_number <= max_number:
        raise ValueError(f"min_number={min_number}, max_number={max_number}: need 0 <= min_number <= max_number")
    if not 0 <= min_target <= max_target:
        raise ValueError(f"min_target={min_target}, max_target={max_target}: need 0 <= min_target <= max_target")
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: use one of {', '.join(SPLITS)}")
    return counts


def synthesize(n: int = 200, seed: int = 0, *, split: str = "train", counts: Sequence[int] = (3, 4),
               min_number: int = 1, max_number: int = 12, min_target: int = 5, max_target: int = 40,
               solutions: bool = True) -> list[Problem]:
    """``n`` distinct solvable puzzles of ``split``: 3 or 4 numbers (``counts``) in [min_number, max_number],
    a target in [min_target, max_target] that the numbers can make (exhaustive search), drawn uniformly among
    the reachable ones. Puzzle ``i`` depends only on (seed, options, i) and the puzzles before it, so a larger
    ``n`` extends a smaller set. ``meta`` holds the task fields and, with ``solutions``, a direct solution.
    """
    counts = validate_options(n, counts, min_number, max_number, min_target, max_target, split)
    want_solution = solutions
    out: list[Problem] = []
    seen: set[tuple] = set()
    for i in range(n):
        for attempt in range(MAX_ATTEMPTS):
            rng = random.Random(stable_seed(seed, TASK, split, counts, min_number, max_number, min_target,
                                            max_target, i, attempt))
            numbers = [rng.randint(min_number, max_number) for _ in range(rng.choice(counts))]
            targets = sorted(t for t in reachable(numbers) if min_target <= t <= max_target)
            if not targets:
                continue
            target = rng.choice(targets)
            key = (tuple(sorted(numbers)), target)
            if key not in seen and (split == "all" or split_of(numbers, target) == split):
                break
        else:
            raise ValueError(f"could not make {n} distinct {split} puzzles with {list(counts)} numbers in "
                             f"{min_number}..{max_number} and targets {min_target}..{max_target}: widen the "
                             "ranges or ask for fewer puzzles")
        seen.add(key)
        pid = f"countdown-{split}-{seed}-{i:05d}"
        meta: dict[str, Any] = {"task": TASK, "numbers": numbers, "target": target, "split": split}
        if want_solution:
            meta["solution"] = direct_solution(numbers, target, random.Random(stable_seed(seed, pid, "solution")))
        out.append(Problem(id=pid, problem=f"Use the numbers {', '.join(map(str, numbers))} to make {target}.",
                           answer=str(target), source=f"synthetic countdown ({split})", meta=meta))
    return out


def direct_solutions(problems: Sequence[Problem], per_problem: int = 1,
                     seed: int = 0) -> list[tuple[Problem, int, str]]:
    """(puzzle, draw index, text) of solver-written direct solutions, ``per_problem`` different draws each
    (``clone.export.direct_row`` makes them SFT rows).

    The warm start of issue 16: SmolLM2-135M gets few single Countdown steps right on its own, which leaves
    search nothing to find, while the paper starts from a model that solves most steps but does not search.
    A short SFT on these solutions (one attempt, no reflection, no backtracking) gives the miniature that
    start; both arms (ASTRO and Direct) then begin from the same warm-started model.
    """
    return [(p, j, direct_solution(p.meta["numbers"], p.meta["target"],
                                   random.Random(stable_seed(seed, p.id, "warmstart", j))))
            for p in problems for j in range(per_problem)]


def to_record(p: Problem) -> dict[str, Any]:
    """A countdown problem in the file shape of issue 16: task, numbers and target as top-level fields."""
    meta = {k: v for k, v in p.meta.items() if k not in ("task", "numbers", "target")}
    return {"id": p.id, "problem": p.problem, "answer": p.answer, "task": TASK, "numbers": p.meta["numbers"],
            "target": p.meta["target"], "source": p.source, "meta": meta}
