"""A scripted, deterministic policy for search tests (a test double of backends.base.Policy).

Problems are "What is A + B?"; the policy "knows" the sum and is right more often on paths that went
through "use method 0", so the search has a signal to find. Every output is a pure function of
(policy seed, prompt, sample index, the prompt's sampling seed): like a real sampler it changes with the
seed, and like a per-prompt-seeded one it does not depend on the other prompts of the batch. So a resumed
search reproduces an uninterrupted one exactly iff the search seeds each prompt independently of batching.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Sequence

from astro_reasoner.io import stable_hash
from astro_reasoner.types import Completion, GenParams, Problem

Q, A = "<Q>", "\n<A>"


def problems(n: int, start: int = 0) -> list[Problem]:
    out = []
    for i in range(start, start + n):
        a, b = 3 + 7 * i % 40, 5 + 11 * i % 50
        out.append(Problem(id=f"p{i}", problem=f"What is {a} + {b}?", answer=str(a + b), source="scripted"))
    return out


class ScriptedPolicy:
    name = "scripted"
    deterministic = True

    def __init__(self, seed: int = 0, long_rollout_every: int = 11, delay: float = 0.0):
        self.seed, self.delay = seed, delay
        self.long_rollout_every = long_rollout_every
        self.calls: list[tuple[int, int]] = []  # (prompts, n) per generate call

    # -- Policy protocol --------------------------------------------------------------------------------
    def apply_chat_template(self, messages: Sequence[dict[str, str]], continue_text: str = "") -> str:
        # Only the question itself, so that rewording the instruction or few-shot leaves the script unchanged.
        question = re.findall(r"What is \d+ \+ \d+\?", messages[-1]["content"])[-1]
        return Q + question + A + continue_text

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def close(self) -> None:
        pass

    def generate(self, prompts: Sequence[str], params: GenParams) -> list[list[Completion]]:
        self.calls.append((len(prompts), params.n))
        if self.delay:
            time.sleep(self.delay)  # stretches a run so the resume test can kill it mid-way
        if params.seeds is not None:
            assert len(params.seeds) == len(prompts), "GenParams.seeds must hold one seed per prompt"
        return [[self._sample(p, i, params, params.seed if params.seeds is None else params.seeds[j])
                 for i in range(params.n)] for j, p in enumerate(prompts)]

    # -- the script -------------------------------------------------------------------------------------
    def _sample(self, prompt: str, i: int, params: GenParams, seed: int | None) -> Completion:
        # Like a real sampler, the output depends on the seed it is given (per prompt when the caller passes
        # GenParams.seeds, else the call's seed), so a caller whose seeds depend on batching is caught.
        h = int(stable_hash(self.seed, prompt, i, seed)[:12], 16)
        question, _, partial = prompt.rpartition(A)
        a, b = (int(x) for x in re.findall(r"(\d+) \+ (\d+)", question)[-1])
        steps = [s for s in partial.split("\n\n") if s.strip()]
        good = "method 0" in partial
        answer = a + b if (h % 100) < (70 if good else 25) else a + b + 1 + h % 3
        final = f"So the answer is \\boxed{{{answer}}}."
        if params.stop:  # one step
            if len(steps) >= 1 and h % 4 == 0:
                text, reason = final, "eos"
            else:
                text, reason = f"Step {len(steps) + 1}: use method {h % 3}.", "stop"
        else:  # a rollout to the end
            if h % self.long_rollout_every == 0:
                text, reason = " ".join(["and so on"] * 40), "length"  # cut off before an answer
            else:
                extra = [f"Step {len(steps) + j + 1}: add carefully." for j in range(h % 3)]
                text, reason = "\n\n".join(extra + [final]), "eos"
        tokens = max(1, len(text.split()))
        return Completion(text=text, tokens=tokens, logprob_sum=-tokens * (0.2 + (h >> 8) % 7 / 10),
                          finish_reason=reason, prompt_tokens=self.count_tokens(prompt))


def scripted_spec(seed: int):
    """A BackendSpec whose workers build ``ScriptedPolicy(seed)``: Ray runs with a deterministic policy."""
    from dataclasses import dataclass

    from astro_reasoner.search.distributed import BackendSpec

    @dataclass(frozen=True)
    class ScriptedSpec(BackendSpec):
        def build(self):
            return ScriptedPolicy(seed=int(self.model))

    return ScriptedSpec("scripted", str(seed))


# Every search setting spelled out, so that tuning SearchConfig's defaults leaves the golden tree alone.
RESUME_CFG = dict(iterations=5, k=3, rollouts=3, c_puct=1.0, max_depth=12, max_step_tokens=96,
                  max_rollout_tokens=256, temperature=0.8, top_p=0.95, reward_correct=1.0, reward_wrong=-1.0,
                  reward_unparseable=-1.0, early_stop_correct=0, early_stop_wrong=0, keep_rollouts=True,
                  leaves_per_tree=1, batch_size=8, max_active_trees=4, few_shot=1, seed=0)


def main(argv: list[str]) -> int:
    """``python search_helpers.py OUT N [DELAY]`` runs a scripted search into OUT (the resume test kills it)."""
    from astro_reasoner.checking import Checker
    from astro_reasoner.search import SearchConfig, run_search

    out, n, delay = argv[0], int(argv[1]), float(argv[2]) if len(argv) > 2 else 0.0
    cfg = SearchConfig(**RESUME_CFG)
    with Checker(workers=1) as checker:
        run_search(problems(n), out, cfg, policy=ScriptedPolicy(seed=1, delay=delay), checker=checker)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
