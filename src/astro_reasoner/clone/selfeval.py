"""Self-evaluation filter (ASTRO §2.3): the LM judges each correct terminal's solution N times.

The paper applies self-evaluation to the correct terminals of the search tree — the solution path n* is
drawn from — not to the rendered long CoT (which deliberately holds wrong attempts, so ASTRO and Direct
CoTs would be judged differently). ``clone.run`` asks for the votes once per correct terminal; n* is then
sampled among the terminals with enough "yes" votes, for astro and direct data alike.

Any ``Policy`` backend works. The N votes are N samples of one short answer to a yes/no question; a vote
that says neither (a weak model rambling) counts as "unknown", which is not a yes. The votes are stored
(``selfeval.jsonl``, and with each example) so the threshold can be changed later without asking the LM
again.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..io import stable_seed
from ..types import GenParams

if TYPE_CHECKING:  # annotations only: the protocols every backend / checker (and test double) implements
    from ..backends.base import Policy

QUESTION = """Here is a math problem and a proposed solution.

Problem:
{problem}

Proposed solution:
{cot}

Is the proposed solution correct, and is it a clear, high-quality step-by-step solution? \
Answer with a single word: yes or no."""

SYSTEM = "You are a careful grader of math solutions."

_VOTE = re.compile(r"\b(yes|yeah|yep|no|nope|not correct|not right|incorrect|correct|wrong|right|true|false)\b")
_YES = {"yes", "yeah", "yep", "correct", "right", "true"}


def parse_vote(text: str) -> str:
    """"yes", "no" or "unknown" from a free-form reply: the first yes/no-like word decides
    ("**Yes.**" -> yes, "The answer is: no" -> no, "Not correct" -> no, "incorrect" -> no)."""
    m = _VOTE.search(re.sub(r"[*_`#>]", " ", text or "").lower())
    if not m:
        return "unknown"
    return "yes" if m.group(1) in _YES else "no"


def selfeval_prompt(policy, problem: str, cot: str) -> str:
    messages = [{"role": "system", "content": SYSTEM},
                {"role": "user", "content": QUESTION.format(problem=problem, cot=cot)}]
    return policy.apply_chat_template(messages)


def selfeval_batch(policy: Policy, items: Sequence[dict], *, votes: int, temperature: float, max_tokens: int,
                   seed: int) -> list[list[str]]:
    """J votes for each of ``items`` (dicts with ``problem``, ``cot``, ``key``)."""
    if not items:
        return []
    prompts = [selfeval_prompt(policy, it["problem"], it["cot"]) for it in items]
    params = GenParams(n=votes, max_tokens=max_tokens, temperature=temperature,
                       seed=stable_seed(seed, "selfeval", *[it["key"] for it in items]))
    outs = policy.generate(prompts, params)
    return [[parse_vote(c.text) for c in comps] for comps in outs]
