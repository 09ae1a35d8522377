"""Synthetic arithmetic word problems: the embedded default data set (written by us, no download).

Each problem is a short story about one quantity that changes ``steps`` times (1-6) by +, -, * or /, with
exact integer results at every step, and asks for the final amount. Problem ``i`` of a set depends only on
(seed, steps, i) and the problems before it, so a larger ``n`` extends a smaller set. The optional reference
solution has one step per operation, separated by a blank line (the step delimiter, ASTRO §2.1), and ends with
``\\boxed{}`` like the few-shot example in :mod:`astro_reasoner.prompts`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..io import stable_seed
from ..text import join_steps
from ..types import Problem

OPS = "+-*/"
MAX_VALUE = 1_000_000  # no intermediate amount grows beyond this (our choice: small models, readable numbers)
MAX_ATTEMPTS = 1000

# Names with the pronouns the templates need (subject, object, possessive).
PEOPLE = (("Mia", "she", "her", "her"), ("Leo", "he", "him", "his"), ("Ava", "she", "her", "her"),
          ("Omar", "he", "him", "his"), ("Zoe", "she", "her", "her"), ("Ravi", "he", "him", "his"),
          ("Lena", "she", "her", "her"), ("Sam", "he", "him", "his"), ("Nora", "she", "her", "her"),
          ("Kenji", "he", "him", "his"))


@dataclass(frozen=True)
class Story:
    name: str
    unit: str
    start: str
    moves: dict[str, tuple[str, ...]]  # op -> sentence variants; {k} is the operand
    question: str


STORIES = (
    Story("marbles", "marbles", "{Name} has {n} marbles.", {
        "+": ("{Sub} wins {k} more marbles in a game.", "A friend gives {obj} {k} marbles.",
              "{Sub} finds {k} marbles under the sofa."),
        "-": ("{Sub} gives {k} marbles to {pos} brother.", "{Sub} loses {k} marbles at school."),
        "*": ("{Sub} trades with a collector and ends up with {k} times as many marbles.",),
        "/": ("{Sub} splits the marbles into {k} equal bags and keeps only one bag.",),
    }, "How many marbles does {Name} have now?"),
    Story("bakery", "cupcakes", "A bakery has {n} cupcakes on its shelves.", {
        "+": ("The baker makes {k} more cupcakes.", "A delivery brings {k} more cupcakes."),
        "-": ("Customers buy {k} cupcakes.", "{k} cupcakes are sent to a school fair."),
        "*": ("For a festival, the baker keeps baking until there are {k} times as many cupcakes.",),
        "/": ("The cupcakes are packed equally into {k} boxes, and only one box stays in the shop.",),
    }, "How many cupcakes are in the shop now?"),
    Story("savings", "dollars", "{Name} has {n} dollars in a piggy bank.", {
        "+": ("{Sub} earns {k} dollars walking dogs.", "{Pos} aunt gives {obj} {k} dollars.",
              "{Sub} sells old toys for {k} dollars."),
        "-": ("{Sub} spends {k} dollars on a book.", "{Sub} pays {k} dollars for a concert ticket.",
              "{Sub} buys a gift for {k} dollars."),
        "*": ("After a good year of odd jobs, {pos} savings grow to {k} times the amount.",),
        "/": ("{Sub} shares the money equally among {k} people, {obj}self included, and keeps {pos} share.",),
    }, "How many dollars does {Name} have now?"),
    Story("library", "books", "A school library has {n} books.", {
        "+": ("It receives {k} donated books.", "The librarian buys {k} new books."),
        "-": ("{k} books are lent out and not yet returned.", "{k} old books are given away."),
        "*": ("After a donation drive, the library has {k} times as many books.",),
        "/": ("The books are shared equally among {k} classrooms, and the library keeps one share.",),
    }, "How many books does the library have now?"),
    Story("farm", "chickens", "{Name} keeps {n} chickens on a farm.", {
        "+": ("{Sub} buys {k} more chickens.", "{k} chicks hatch and join the flock."),
        "-": ("{Sub} sells {k} chickens at the market.", "{k} chickens move to a neighbour's farm."),
        "*": ("Over the next year the flock grows to {k} times its size.",),
        "/": ("{Sub} splits the flock into {k} equal groups and sells all but one group.",),
    }, "How many chickens does {Name} have now?"),
    Story("tank", "liters", "A water tank holds {n} liters of water.", {
        "+": ("{k} liters of rain fall into it.", "A hose adds {k} liters."),
        "-": ("{k} liters are used to water the garden.", "{k} liters leak out."),
        "*": ("It is refilled until it holds {k} times as much water.",),
        "/": ("The water is poured equally into {k} barrels, and only one barrel is kept.",),
    }, "How many liters of water are there now?"),
)

LINKS = ("", "", "Then ", "Later, ", "After that, ", "Next, ")  # variety between later sentences

EXPLAIN = {  # one solution step per operation
    "+": "Adding {k} {unit} gives {a} + {k} = {b} {unit}.",
    "-": "Taking away {k} {unit} leaves {a} - {k} = {b} {unit}.",
    "*": "{k} times as many is {a} * {k} = {b} {unit}.",
    "/": "One of {k} equal shares is {a} / {k} = {b} {unit}.",
}


def _operands(rng: random.Random, ops: list[str], lo: int, hi: int, max_factor: int) -> list[int] | None:
    """Start value and operands with exact integer results, or None (the caller draws again).

    Divisions are planned ahead: a + or - step (and the start) makes the amount a multiple of the product of
    the divisors that follow before the next + or - (multiplications keep that property).
    """
    steps = len(ops)
    divisors = [rng.randint(2, max_factor) if op == "/" else 1 for op in ops]
    need = [1] * (steps + 1)  # need[j]: the amount before step j must be a multiple of this
    for j in range(steps - 1, -1, -1):
        need[j] = divisors[j] * (need[j + 1] if ops[j] in "*/" else 1)

    def multiple(base: int, mod: int, low: int, high: int) -> int:
        """A random number >= max(1, low) congruent to base (mod mod), within [low, high] when possible."""
        first = base % mod or mod
        if first < low:
            first += -(-(low - first) // mod) * mod  # ceil division: the first one >= low
        last = max(first, first + (high - first) // mod * mod) if high >= first else first
        return rng.randrange(first, last + 1, mod)

    value = multiple(0, need[0], lo, hi)
    out = [value]
    for j, op in enumerate(ops):
        after = need[j + 1]
        if op == "+":
            k = multiple(-value, after, lo, hi)
            value += k
        elif op == "-":
            k = multiple(value, after, lo, min(hi, value - after))
            if value - k < after:  # cannot take away and keep a positive multiple
                return None
            value -= k
        elif op == "*":
            k = rng.randint(2, max_factor)
            value *= k
        else:
            k = divisors[j]
            value //= k
        if value > MAX_VALUE:
            return None
        out.append(k)
    return out


def _render(rng: random.Random, story: Story, ops: list[str], nums: list[int]) -> tuple[str, str, int]:
    name, sub, obj, pos = rng.choice(PEOPLE)
    fill = dict(Name=name, Sub=sub.capitalize(), sub=sub, obj=obj, pos=pos, Pos=pos.capitalize())
    sentences = [story.start.format(n=nums[0], **fill)]
    steps = []
    value = nums[0]
    for j, (op, k) in enumerate(zip(ops, nums[1:])):
        sentence = rng.choice(story.moves[op]).format(k=k, **fill)
        link = rng.choice(LINKS) if j else ""
        sentences.append(link + sentence[0].lower() + sentence[1:] if link else sentence)
        new = {"+": value + k, "-": value - k, "*": value * k, "/": value // k}[op]
        step = EXPLAIN[op].format(k=k, a=value, b=new, unit=story.unit)
        if not steps:
            step = f"We start with {value} {story.unit}. " + step
        steps.append(step)
        value = new
    sentences.append(story.question.format(**fill))
    steps.append(f"The answer is \\boxed{{{value}}}.")
    text = " ".join(s[0].upper() + s[1:] for s in sentences)
    return text, join_steps(steps), value


def validate_options(steps: int, n: int, ops: str, min_value: int, max_value: int, max_factor: int) -> str:
    """The canonical ops string; raises ValueError naming the bad option and a fix."""
    if not 1 <= steps <= 6:
        raise ValueError(f"steps={steps}: must be between 1 and 6")
    if n < 1:
        raise ValueError(f"n={n}: must be at least 1")
    bad = sorted(set(ops) - set(OPS + "x÷ ,"))
    if bad or not ops.strip():
        raise ValueError(f"ops={ops!r}: use a non-empty combination of + - * / (e.g. '+-*/' or '+-')")
    if not 1 <= min_value <= max_value:
        raise ValueError(f"min_value={min_value}, max_value={max_value}: need 1 <= min_value <= max_value")
    if max_factor < 2:
        raise ValueError(f"max_factor={max_factor}: must be at least 2 (the smallest factor/divisor is 2)")
    return "".join(o for o in OPS if o in ops.replace("x", "*").replace("÷", "/"))


def synthesize(steps: int = 2, n: int = 200, seed: int = 0, *, ops: str = OPS, min_value: int = 2,
               max_value: int = 50, max_factor: int = 5, solutions: bool = True, **unknown) -> list[Problem]:
    """``n`` distinct word problems of ``steps`` operations each, drawn from ``ops`` ("+-*/").

    The start amount and the amounts added or taken away lie in [min_value, max_value] where divisibility
    allows; factors and divisors lie in [2, max_factor]. ``meta`` holds the story, the operations
    (``[["start", 12], ["+", 5], ...]``) and, with ``solutions``, the reference solution.

    The math task's generator; ``astro_reasoner.tasks.synthesize(task=...)`` picks a task's (Countdown:
    ``tasks.countdown_solver.synthesize``, with its own options such as ``split``, ``counts``, ``max_number``).
    """
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(sorted(unknown))} for math problems; the options "
                         "are steps, n, seed, ops, min_value, max_value, max_factor, solutions (or set "
                         "task: countdown)")
    ops = validate_options(steps, n, ops, min_value, max_value, max_factor)
    problems: list[Problem] = []
    seen: set[str] = set()
    for i in range(n):
        for attempt in range(MAX_ATTEMPTS):
            rng = random.Random(stable_seed(seed, "synth", steps, ops, min_value, max_value, max_factor, i,
                                            attempt))
            story = rng.choice(STORIES)
            chosen = [rng.choice(ops) for _ in range(steps)]
            nums = _operands(rng, chosen, min_value, max_value, max_factor)
            if nums is None:
                continue
            text, solution, answer = _render(rng, story, chosen, nums)
            if text not in seen:
                break
        else:
            raise ValueError(f"could not make {n} distinct problems with steps={steps}, ops={ops!r}, values "
                             f"{min_value}..{max_value}, factors up to {max_factor}: widen the value range, "
                             "allow more operations, or ask for fewer problems")
        seen.add(text)
        meta = {"story": story.name, "steps": steps,
                "ops": [["start", nums[0]]] + [[op, k] for op, k in zip(chosen, nums[1:])]}
        if solutions:
            meta["solution"] = solution
        problems.append(Problem(id=f"synth-s{steps}-{seed}-{i:05d}", problem=text, answer=str(answer),
                                source=f"synthetic ({steps}-step arithmetic)", meta=meta))
    return problems
