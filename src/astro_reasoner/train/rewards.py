"""The verifiable reward of ASTRO §3.4 as plain functions in TRL's reward-function form.

TRL calls ``reward(prompts=..., completions=..., completion_ids=..., <dataset columns>=..., trainer_state=...,
log_metric=..., log_extra=...)`` and expects one float per completion. Our dataset column with the gold
answer is ``answer``; problems of a task other than math (``astro_reasoner.tasks``) also have a ``task``
column with the task's fields (Countdown: numbers and target), and the reward reads the gold from both.

Completions are strings (standard data) or ``[{"role": "assistant", "content": ...}]`` (conversational);
``checking.completion_text`` reads both. Checking goes through ``astro_reasoner.checking.Checker``, whose
process pool enforces a hard deadline per check. That is what makes the reward safe wherever TRL runs it: math-verify's own SIGALRM timeouts raise off
the main thread (async reward functions run on a daemon thread) and cannot interrupt big-integer work such
as ``9^{9^{9^9}}``. The checker extracts the *last* ``\\boxed{}``, so a
backtracking CoT that boxes a wrong intermediate answer before the final one is judged on the final one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..checking import AnswerChecker, completion_text
from ..tasks import gold_of
from ..types import Verdict


@dataclass(frozen=True)
class RewardValues:
    """Reward per verdict. ASTRO §3.4: +1 correct, -1 otherwise; unparseable is configurable separately."""

    correct: float = 1.0
    wrong: float = -1.0
    unparseable: float = -1.0

    def of(self, verdict: Verdict | str) -> float:
        v = Verdict(verdict)
        return self.correct if v is Verdict.CORRECT else self.wrong if v is Verdict.WRONG else self.unparseable


def check_completions(checker: AnswerChecker, completions: Sequence[Any], answer: Sequence[str],
                      task: Sequence[dict[str, Any] | None] | None = None) -> list:
    """CheckResults for each (gold, completion) pair, checked in the checker's process pool (or by the task's
    verifier when the ``task`` column names one)."""
    if len(completions) != len(answer) or (task is not None and len(task) != len(answer)):
        raise ValueError(f"{len(completions)} completions but {len(answer)} gold answers"
                         f"{'' if task is None else f' and {len(task)} task fields'}; the dataset columns "
                         "'answer' (and 'task') must hold one value per prompt")
    golds = [str(gold) if not (task and task[i]) else gold_of({"answer": str(gold), "task": task[i]})
             for i, gold in enumerate(answer)]
    return checker.check_batch([(gold, completion_text(c) or "") for gold, c in zip(golds, completions)])


def correctness_reward(prompts: Sequence[Any], completions: Sequence[Any], answer: Sequence[str], *,
                       checker: AnswerChecker | None = None, values: RewardValues = RewardValues(),
                       log_metric=None,
                       task: Sequence[dict[str, Any] | None] | None = None, **kwargs: Any) -> list[float]:
    """+1 / -1 (``values``) per completion: correct vs wrong-or-unparseable against the gold ``answer``.

    ``checker`` is an open ``Checker`` (bind it with ``functools.partial``; TRL names the reward after this
    function). Without one, a Checker is opened for this call only, which costs a process-pool start-up.
    When TRL passes ``log_metric``, the fractions correct and unparseable are logged each step. ``task``:
    the dataset's task column (``None`` entries, or no column, mean math).
    """
    del prompts, kwargs  # part of TRL's calling convention; the reward depends on completion and gold only
    if checker is None:
        from ..checking import Checker

        with Checker() as own:
            results = check_completions(own, completions, answer, task)
    else:
        results = check_completions(checker, completions, answer, task)
    rewards = [values.of(r.verdict) for r in results]
    if log_metric is not None and results:
        log_metric("correct_frac", sum(Verdict(r.verdict) is Verdict.CORRECT for r in results) / len(results))
        log_metric("unparseable_frac",
                   sum(Verdict(r.verdict) is Verdict.UNPARSEABLE for r in results) / len(results))
    return rewards
