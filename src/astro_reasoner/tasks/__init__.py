"""Tasks as plug-ins: a task is a problem generator, a prompt (with worked examples) and a verifier.

``math`` is the default (word problems, the step-by-step prompt of :mod:`astro_reasoner.prompts`, the
math-verify checker); ``countdown`` (issue 16) reaches a target with given numbers. A record names its task
in a ``task`` field (none means math): a Problem in ``meta`` (the loaders keep top-level fields there), a
search tree in ``SearchTree.task``, an RL row in its ``task`` column. Every stage reads the task from the
record through the functions below, so that math records take exactly the path they took before tasks
existed: no task fields, the plain answer string as the gold, the math prompt.

- :func:`task_fields` -- ``{}`` for math, else the canonical fields (``{"task", "numbers", "target"}``);
- :func:`gold_of` -- what ``Checker.check_batch`` compares with: the answer string for math, a task gold
  (e.g. :class:`.countdown.CountdownGold`, which the checker hands to the task's verifier) otherwise;
- :func:`prompt_parts` -- the problem statement and prompt configuration for ``prompts.problem_messages``;
- :func:`vote_keys` -- how maj@k groups a problem's answers (None for math: by the checker's equivalence);
- :func:`synthesize` -- the task's generator (``astro data synth --task``);
- :func:`direct_solutions` -- direct solutions for the pipeline's warm start (countdown: the solver's;
  math: the record's worked ``solution``, :mod:`.math_solutions`).
"""

from __future__ import annotations

from typing import Any

from ..io import DataError
from ..types import Problem, SearchTree

TASK_NAMES = ("math", "countdown")
DEFAULT_TASK = "math"


def _source(record: Any) -> tuple[dict[str, Any], Any]:
    """(the mapping that holds the task fields, the answer) of a Problem, SearchTree or dict record."""
    if isinstance(record, Problem):
        return record.meta, record.answer
    if isinstance(record, SearchTree):
        return record.task, record.answer
    if isinstance(record, dict):
        inner = record.get("task")
        return (inner if isinstance(inner, dict) else record), record.get("answer")
    raise TypeError(f"expected a Problem, SearchTree or dict record, got {type(record).__name__}")


def task_name(record: Any) -> str:
    name = _source(record)[0].get("task") or DEFAULT_TASK
    if name not in TASK_NAMES:
        raise DataError(f"unknown task {name!r}; use one of {', '.join(TASK_NAMES)} (or drop the 'task' field "
                        "for math)")
    return str(name)


def task_fields(record: Any) -> dict[str, Any]:
    """The record's task fields, validated (``{}`` for math); raises DataError naming what to fix."""
    src, answer = _source(record)
    name = task_name(record)
    if name == DEFAULT_TASK:
        return {}
    from . import countdown

    return countdown.fields(src, answer)


def gold_of(record: Any, *, verify_steps: bool = False) -> Any:
    """The gold to pass to ``Checker.check_batch`` for this record (the answer string for math).

    ``verify_steps``: a correct final answer also needs every checkable step to hold (Countdown's operation
    steps, ``countdown.check_steps``); math has no checkable step format, so it is ignored there."""
    fields = task_fields(record)
    answer = _source(record)[1]
    if not fields:
        return answer
    from . import countdown

    return countdown.gold(answer, fields, steps=verify_steps)


def problem_from_tree(tree: SearchTree) -> Problem:
    """The problem a search tree was grown for, with its task fields (for prompts built after search)."""
    return Problem(id=tree.problem_id, problem=tree.problem, answer=tree.answer, meta=dict(tree.task))


def prompt_parts(problem: Problem, cfg):
    """(problem statement, PromptConfig) for ``problem``: for math its text and ``cfg`` unchanged; for another
    task the statement built from its fields and the task's own system prompt, instruction and worked
    examples wherever ``cfg`` holds the math defaults (a customized one is kept), with ``cfg.few_shot``."""
    fields = task_fields(problem)
    if not fields:
        return problem.problem, cfg
    from dataclasses import replace

    from . import countdown_solver as cd
    from .math_prompt import FEW_SHOT, STEP_INSTRUCTION, SYSTEM_PROMPT

    examples = cd.examples() if cfg.examples == FEW_SHOT else cfg.examples
    return cd.statement(fields["numbers"], fields["target"]), replace(
        cfg, system=cd.SYSTEM_PROMPT if cfg.system == SYSTEM_PROMPT else cfg.system,
        instruction=cd.INSTRUCTION if cfg.instruction == STEP_INSTRUCTION else cfg.instruction,
        examples=examples, few_shot=min(cfg.few_shot, len(examples)))


def vote_keys(task: str | None, answers: list[str | None], verdicts: list[str]) -> list[Any] | None:
    """maj@k vote keys of one problem's samples (``evaluate.metrics.majority_vote``), or None for math, whose
    answers vote by the checker's value equivalence. Countdown votes by the verifier's notion instead
    (``countdown.vote_key``): a value-equivalent answer can be wrong there."""
    if (task or DEFAULT_TASK) == DEFAULT_TASK:
        return None
    if task == "countdown":
        from .countdown import vote_key

        return [vote_key(a, v) for a, v in zip(answers, verdicts)]
    raise DataError(f"unknown task {task!r}; use one of {', '.join(TASK_NAMES)}")


def synthesize(task: str = DEFAULT_TASK, **options: Any) -> list[Problem]:
    """Problems from the task's generator (math: :func:`astro_reasoner.tasks.math_synth.synthesize`)."""
    if task == DEFAULT_TASK:
        from .math_synth import synthesize as math_synth

        return math_synth(**options)
    if task == "countdown":
        from .countdown_solver import synthesize as countdown_synth

        return countdown_synth(**options)
    raise ValueError(f"task={task!r}: use one of {', '.join(TASK_NAMES)}")


def direct_solutions(problems: list[Problem], per_problem: int = 1,
                     seed: int = 0) -> tuple[list[tuple[Problem, int, str]], dict[str, int]]:
    """((problem, draw index, solution text) of direct solutions, skipped counts by reason) for the warm start,
    each problem by its task: countdown puzzles get ``per_problem`` solver-written solutions, math problems
    their one worked solution (``meta["solution"]``; a problem without a usable one is skipped and counted).
    ``clone.export.direct_row`` makes the SFT rows."""
    from . import math_solutions
    from .countdown_solver import direct_solutions as countdown_solutions

    if per_problem != 1 and any(task_name(p) == DEFAULT_TASK for p in problems):
        raise DataError(f"per_problem={per_problem}: a math problem has one worked solution; use per_problem: 1 "
                        "(train longer with sft.max_steps or num_train_epochs instead)")
    sols = countdown_solutions([p for p in problems if task_name(p) == "countdown"], per_problem, seed)
    math = [p for p in problems if task_name(p) == DEFAULT_TASK]
    if not math:
        return sols, {}
    math_sols, skipped = math_solutions.direct_solutions(math)
    return sols + math_sols, skipped
