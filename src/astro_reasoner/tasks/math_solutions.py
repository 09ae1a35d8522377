"""Math word problems with a worked solution (GSM8K's ``solution``) as direct SFT rows for the warm start.

GSM8K writes a solution as one computation per line with calculator annotations, and the loaders keep it in
``Problem.meta["solution"]`` (a ``"... #### 72"`` answer is split there too)::

    Natalia sold 48/2 = <<48/2=24>>24 clips in May.
    Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.

:func:`solution_steps` turns it into the step format of the math prompt (``tasks.math_prompt.STEP_INSTRUCTION`` and its
worked examples ``FEW_SHOT``): one step per line, steps separated by a blank line, the ``<<...>>``
annotations removed, and a final step ``The answer is \\boxed{72}.`` with the gold answer::

    Natalia sold 48/2 = 24 clips in May.

    Natalia sold 48+24 = 72 clips altogether in April and May.

    The answer is \\boxed{72}.

A solution is usable only when its last line states the gold answer as a number (GSM8K: 20 of 7,473 train
solutions do not, e.g. they end at $0.49 for the answer 49, or at 64 for 66): a solution ending elsewhere
would teach a boxed answer that does not follow from the steps. A solution already in our format (its last
step boxes the gold answer, e.g. ``astro data synth`` output) is kept as it is.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from ..text import STEP_DELIMITER, last_boxed
from ..types import Problem

_ANNOTATION = re.compile(r"<<[^<>]*>>")  # GSM8K's calculator annotations: "<<48/2=24>>"
_NUMBER = re.compile(r"(?<![\d.])-?\d[\d,]*(?:\.\d+)?")  # "1,200.50", "-3"; "40-10" gives 40 and 10
SKIP_REASONS = ("no_solution", "answer_not_in_last_step")


def _number(text: str) -> Fraction | None:
    try:
        return Fraction(text.replace(",", ""))
    except (ValueError, ZeroDivisionError):
        return None


def _states(line: str, answer: str) -> bool:
    """Whether ``line`` contains the number ``answer`` (numerically: "1,200.00" states 1200)."""
    gold = _number(answer.strip())
    return gold is not None and any(_number(m) == gold for m in _NUMBER.findall(line))


def solution_steps(solution: Any, answer: str) -> tuple[str | None, str | None]:
    """(the solution in our step format, None) or (None, the reason it is unusable: one of SKIP_REASONS)."""
    if not isinstance(solution, str) or not solution.strip():
        return None, "no_solution"
    text = _ANNOTATION.sub("", solution.split("####")[0])  # a raw GSM8K answer: reasoning, then "#### 72"
    lines = [" ".join(line.split()) for line in text.splitlines()]
    steps = [line for line in lines if line]
    if not steps:
        return None, "no_solution"
    boxed = last_boxed(steps[-1])
    if boxed is not None:  # already ends with a boxed answer: keep it when it is the gold one
        value = _number(boxed.strip())
        ok = boxed.strip() == answer.strip() or value is not None and value == _number(answer.strip())
        return (STEP_DELIMITER.join(steps), None) if ok else (None, "answer_not_in_last_step")
    if not _states(steps[-1], answer):
        return None, "answer_not_in_last_step"
    return STEP_DELIMITER.join([*steps, f"The answer is \\boxed{{{answer.strip()}}}."]), None


def direct_solutions(problems: Sequence[Problem]) -> tuple[list[tuple[Problem, int, str]], dict[str, int]]:
    """((problem, 0, solution text), skipped counts by reason): one direct solution per problem whose
    ``meta["solution"]`` is usable (no reflection, no backtracking; ``clone.export.direct_row`` makes the rows)."""
    sols: list[tuple[Problem, int, str]] = []
    skipped = dict.fromkeys(SKIP_REASONS, 0)
    for p in problems:
        text, why = solution_steps(p.meta.get("solution"), p.answer)
        if text is None:
            skipped[why] += 1
            continue
        sols.append((p, 0, text))
    return sols, skipped
