"""Prompt text for search, rollouts and evaluation (kept out of the search core on purpose).

ASTRO §2.1: a solution is a sequence of steps separated by a blank line ("\\n\\n"), ending with the final
answer in ``\\boxed{}``. The instruction below asks for exactly that; the search then continues a partial
assistant turn (the steps so far) one step at a time with ``"\\n\\n"`` as the stop string.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .text import STEP_DELIMITER  # noqa: F401 (re-exported: the step rule is defined in text.py)
from .types import Problem

# Our wording; the paper does not publish its search prompt. It states the two things the search relies on.
STEP_INSTRUCTION = (
    "Solve the following math problem step by step. Separate the steps with a blank line. "
    "Put the final answer in \\boxed{{}} at the end of the last step.\n\n{problem}"
)

SYSTEM_PROMPT = "You are a helpful assistant that solves math problems carefully."

# Worked examples in the same format (written by us), used when few_shot > 0. Small models such as
# SmolLM2-135M follow the step/boxed format far more often with them. Measured on SmolLM2-135M (20
# synthetic 2-step problems x 4 samples, T=0.5): with the apples example alone the model multiplies
# whatever it sees and 58 % of samples have a boxed answer; with the stickers example (+ and -) first,
# 96-99 % do and accuracy goes from 0-5 % to 5-7.5 %.
FEW_SHOT = (
    (
        "Sara has 15 stickers. She buys 6 more stickers. Then she gives 4 stickers to her friend. "
        "How many stickers does Sara have now?",
        "Sara starts with 15 stickers and buys 6 more, so she has 15 + 6 = 21 stickers."
        "\n\nShe gives away 4 stickers, so she has 21 - 4 = 17 stickers."
        "\n\nThe answer is \\boxed{17}.",
    ),
    (
        "Tom has 3 boxes with 4 apples in each box. He eats 2 apples. How many apples are left?",
        "There are 3 boxes with 4 apples each, so Tom has 3 * 4 = 12 apples."
        "\n\nHe eats 2 apples, so 12 - 2 = 10 apples are left."
        "\n\nThe answer is \\boxed{10}.",
    ),
)


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
