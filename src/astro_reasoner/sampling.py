"""Sample and check: the one core that evaluation, the RL difficulty filter and best-of-N share.

Each of them sends a batch of prompts to the policy in one ``generate`` call, checks every completion against
the gold of the record it was drawn for (in one ``check_batch`` call, so the checker's workers see the whole
batch at once), and then does its own bookkeeping with the verdicts. Only that core lives here: each caller
keeps its own outer loop (which problems, which batches, which seed key, what it writes), because those are
what differ: eval resumes by missing sample indices, the filter by problem, best-of-N stops per problem at a
token budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .tasks import gold_of
from .types import Completion, GenParams, Verdict

if TYPE_CHECKING:  # annotations only: the protocols every backend / checker (and test double) implements
    from .backends.base import Policy
    from .checking import AnswerChecker


@dataclass(frozen=True)
class CheckedSample:
    """One completion with the checker's verdict on it and the answer the checker extracted."""

    completion: Completion
    verdict: Verdict
    answer: str | None

    @property
    def correct(self) -> bool:
        return self.verdict is Verdict.CORRECT

    @property
    def text(self) -> str:
        return self.completion.text

    @property
    def tokens(self) -> int:
        return self.completion.tokens

    @property
    def finish_reason(self) -> str:
        return self.completion.finish_reason

    @property
    def prompt_tokens(self) -> int:
        return self.completion.prompt_tokens


def sample_and_check(policy: Policy, checker: AnswerChecker, items: Sequence[Any], prompts: Sequence[str],
                     params: GenParams) -> list[list[CheckedSample]]:
    """``params.n`` samples for each prompt (one ``policy.generate`` call), each checked against the gold of
    ``items[i]`` (a Problem, an rl.jsonl row or a SearchTree: anything ``tasks.gold_of`` reads, so a task's
    own verifier decides); returns the checked samples per prompt, in order.

    ``params`` carries the caller's seed: each caller derives it with ``stable_seed`` from its own key (and
    eval writes it into its records), so seeding stays with the caller.
    """
    if len(items) != len(prompts):
        raise ValueError(f"sample_and_check: {len(items)} items but {len(prompts)} prompts; give one per item")
    outs = policy.generate(list(prompts), params)
    # One checker call for the whole batch: the pool checks in parallel and its caches see every sample.
    results = iter(checker.check_batch([(gold_of(item), c.text) for item, comps in zip(items, outs)
                                        for c in comps]))
    # Verdict(...) accepts a member or its string, so a checker (or test double) may return either.
    return [[CheckedSample(c, Verdict(res.verdict), res.answer) for c, res in zip(comps, results)]
            for comps in outs]
