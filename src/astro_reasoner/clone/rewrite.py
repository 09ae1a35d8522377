"""Optional LM rewrite of a template CoT into fluent prose (ASTRO §2.3), kept only if it stays faithful.

Any ``Policy`` backend works. A rewrite is accepted only if (1) the checker still finds the correct final
answer in it and (2) the behaviour counter finds the same number of backtracks as the trace has; otherwise
the template rendering is kept and the rejection is counted with its reason (ASTRO does not say how it
checks its rewrites; these two tests are our choice: they are what SFT on the data relies on).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..behaviour import Patterns, analyze_behaviour
from ..io import stable_seed
from ..types import GenParams, Verdict

if TYPE_CHECKING:  # annotations only: the protocols every backend / checker (and test double) implements
    from ..backends.base import Policy
    from ..checking import AnswerChecker

REWRITE_INSTRUCTION = """Rewrite the following step-by-step solution of a math problem as fluent, natural \
prose, as if one person were thinking aloud while solving it.

Rules:
- Keep the content of every step, including the calculations that later turn out to be wrong.
- Keep every moment where the solver stops to check the work so far, and what follows it: either doubt and \
going back to an earlier step (say which earlier step you return to, quoting it briefly), or the confirmation \
that the solution is correct so far, after which the solution goes on.
- Keep the final check and confirmation before the final answer.
- Do not add new steps or calculations and do not change any number or the final answer.
- Separate paragraphs with a blank line and end with the final answer in \\boxed{{}}, as in the original.
- Output only the rewritten solution.

Problem:
{problem}

Solution:
{cot}"""

SYSTEM = "You are an expert writer of clear mathematical solutions."


@dataclass(frozen=True)
class RewriteResult:
    text: str  # the accepted rewrite, or the template when rejected
    accepted: bool
    reason: str  # "accepted" | "wrong answer (...)" | "backtracks N != M" | "empty"


def rewrite_prompt(policy, problem: str, cot: str) -> str:
    messages = [{"role": "system", "content": SYSTEM},
                {"role": "user", "content": REWRITE_INSTRUCTION.format(problem=problem, cot=cot)}]
    return policy.apply_chat_template(messages)


def rewrite_batch(policy: Policy, checker: AnswerChecker, items: Sequence[dict], *, temperature: float,
                  max_tokens: int | None, seed: int, patterns: Patterns | None = None) -> list[RewriteResult]:
    """Rewrite ``items`` (dicts with ``problem``, ``answer`` (gold), ``cot``, ``n_backtracks``, ``key``)."""
    if not items:
        return []
    budget = max_tokens or max(int(1.5 * policy.count_tokens(it["cot"])) + 64 for it in items)
    prompts = [rewrite_prompt(policy, it["problem"], it["cot"]) for it in items]
    params = GenParams(n=1, max_tokens=budget, temperature=temperature,
                       seed=stable_seed(seed, "rewrite", *[it["key"] for it in items]))
    outs = policy.generate(prompts, params)
    texts = [o[0].text.strip() if o else "" for o in outs]
    checks = checker.check_batch([(it["answer"], t) for it, t in zip(items, texts)])
    results = []
    for it, text, chk in zip(items, texts, checks):
        if not text:
            results.append(RewriteResult(it["cot"], False, "empty"))
            continue
        if chk.verdict is not Verdict.CORRECT:
            results.append(RewriteResult(it["cot"], False, f"final answer {chk.verdict.value} ({chk.answer!r})"))
            continue
        n_bt = len(analyze_behaviour(text, patterns).backtracks)
        if n_bt != it["n_backtracks"]:
            results.append(RewriteResult(it["cot"], False, f"backtracks {n_bt} != {it['n_backtracks']}"))
            continue
        results.append(RewriteResult(text, True, "accepted"))
    return results
