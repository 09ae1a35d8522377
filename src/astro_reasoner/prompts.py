"""Prompt text for search, rollouts and evaluation (kept out of the search core on purpose).

ASTRO §2.1: a solution is a sequence of steps separated by a blank line ("\\n\\n"), ending with the final
answer in ``\\boxed{}``. The instruction below asks for exactly that; the search then continues a partial
assistant turn (the steps so far) one step at a time with ``"\\n\\n"`` as the stop string.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .tasks.math_prompt import FEW_SHOT, STEP_INSTRUCTION, SYSTEM_PROMPT  # the math task's prompt (re-exported)
from .text import STEP_DELIMITER  # noqa: F401 (re-exported: the step rule is defined in text.py)
from .types import Problem

__all__ = ["FEW_SHOT", "STEP_DELIMITER", "STEP_INSTRUCTION", "SYSTEM_PROMPT", "PromptBuilder", "PromptConfig",
           "problem_messages", "steps_prefix"]


@dataclass(frozen=True)
class PromptConfig:
    system: str | None = SYSTEM_PROMPT
    instruction: str = STEP_INSTRUCTION
    few_shot: int = 2  # number of worked examples from FEW_SHOT put before the problem as chat turns
    examples: tuple[tuple[str, str], ...] = field(default=FEW_SHOT)


def problem_messages(problem: str | Problem, cfg: PromptConfig = PromptConfig()) -> list[dict[str, str]]:
    """Chat messages that ask for a step-by-step solution of ``problem`` (no assistant turn yet).

    ``problem`` is the problem text (math), or a Problem record: then its task decides the statement and the
    prompt (``astro_reasoner.tasks.prompt_parts``; a math record gets exactly what its text would get).
    """
    if isinstance(problem, Problem):
        from .tasks import prompt_parts

        problem, cfg = prompt_parts(problem, cfg)
    msgs: list[dict[str, str]] = []
    if cfg.system:
        msgs.append({"role": "system", "content": cfg.system})
    for q, a in cfg.examples[: max(0, cfg.few_shot)]:
        msgs.append({"role": "user", "content": cfg.instruction.format(problem=q)})
        msgs.append({"role": "assistant", "content": a})
    msgs.append({"role": "user", "content": cfg.instruction.format(problem=problem)})
    return msgs


def steps_prefix(steps: Sequence[str]) -> str:
    """The partial assistant text for a path of steps: each step followed by the delimiter."""
    return "".join(s + STEP_DELIMITER for s in steps)


class PromptBuilder:
    """Builds backend prompt strings for (problem, steps so far). Used by search, baselines and eval."""

    def __init__(self, policy, cfg: PromptConfig = PromptConfig()):
        self.policy = policy
        self.cfg = cfg

    def messages(self, problem: str | Problem) -> list[dict[str, str]]:
        return problem_messages(problem, self.cfg)

    def continuation(self, problem: str | Problem, steps: Sequence[str] = ()) -> str:
        """Prompt whose continuation is the next step (or the rest of the solution) after ``steps``."""
        return self.policy.apply_chat_template(self.messages(problem), steps_prefix(steps))
