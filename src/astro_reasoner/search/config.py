"""`SearchConfig`: every knob of stage 1 (MCTS over solution steps), with where each default comes from.

Sources, in order of authority:
- "ASTRO §2.1/§2.2": stated in the paper (Kim et al., arXiv 2507.00417).
- "paper scale": the values a public re-implementation attributes to the paper (k=8, M=16, 32 iterations,
  depth 50). We could not verify them against the paper text, so they are
  quoted for users with GPUs, not used as defaults.
- "our choice": set by us, with the reason. The defaults are sized for the CPU demo (SmolLM2-135M on a
  2-core machine, 2-step word problems: a correct terminal in >= 60 % of trees within a few minutes);
  `configs/` holds larger settings.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..config import require
from ..io import stable_hash
from ..types import Verdict

# Settings that only change how the work is scheduled (batching), never what a tree is made of when the
# policy is deterministic per prompt. Left out of the config hash that guards resume.
EXECUTION_KEYS = ("batch_size", "max_active_trees")


@dataclass
class SearchConfig:
    # --- budget -------------------------------------------------------------------------------------
    # Selection->expansion->simulation->backprop cycles per tree. Paper scale: 32. Our choice: 4, what a
    # 2-core CPU affords for the demo (each iteration costs k steps + k*rollouts solutions).
    iterations: int = 4
    # Candidate next steps sampled per expansion (ASTRO §2.2 "sample k actions"). Paper scale: 8.
    # Our choice: 4 (CPU budget); identical texts are merged, so a node can get fewer children.
    k: int = 4
    # Rollouts to a final answer from each new non-terminal child; the child's value is their mean reward
    # (ASTRO §2.2). Paper scale: 16. Our choice: 3 (CPU budget). 0 disables simulation (children are then
    # valued only through terminals found below them, as in rStar-Math).
    rollouts: int = 3
    # PUCT exploration weight c in Q + c*P*sqrt(N(s))/(1+N(s,a)) (ASTRO §2.2 uses PUCT; no value we could
    # verify). Our choice: 1.0, the value of the public re-implementation; Q and P are both O(1) here.
    c_puct: float = 1.0
    # Maximum number of steps on a path; a non-answer step at this depth is a wrong terminal (ASTRO §2.1:
    # no answer = wrong). Paper scale: 50. Our choice: 12 (short problems; bounds prompt growth).
    max_depth: int = 12
    # Token limit for one step (an expansion stops at the step delimiter "\n\n" or here). Our choice: 64
    # (SmolLM2 steps on word problems take 20-40 tokens).
    max_step_tokens: int = 64
    # Token limit for one rollout (a whole remaining solution). Our choice: 128: short solutions take
    # 40-100 tokens and longer ones are almost always rambling; a static CPU batch runs as long as its
    # longest row, so this bounds the waste too.
    max_rollout_tokens: int = 128
    # Sampling temperature and nucleus for expansions and rollouts. Our choice: 0.5 / 0.95. Measured on
    # SmolLM2-135M (1-step synthetic problems): T=0.4 gives 14 % correct samples, T=0.7 far fewer on 2-step;
    # the small model's arithmetic degrades fast with temperature, and dedupe absorbs repeated steps.
    temperature: float = 0.5
    top_p: float = 0.95
    # --- rewards (ASTRO §2.2: the verifier gives +1 to a correct final answer and -1 otherwise) ------
    reward_correct: float = 1.0
    reward_wrong: float = -1.0
    reward_unparseable: float = -1.0  # no extractable answer, cut-off rollout, depth limit
    # A terminal is correct only if its final answer is AND every checkable step on its path holds (tasks with
    # a checkable step format: Countdown's "a op b = c. Left: ..."; ignored for math). Our choice: off, the
    # paper's verifier judges the final answer (ASTRO §2.2). On, the correct paths procedure cloning writes
    # hold no false arithmetic: with the box judged alone, 54 % of a Countdown run's Direct traces had a
    # false step, and SFT taught it (issue 16, variant 1).
    verify_steps: bool = False
    # --- early stop: a tree is finished once its EXPANDED terminals hold >= C correct ones and >= W distinct
    # wrong answers (answers compared as the checker normalises them; answerless terminals do not count) --
    # Procedure cloning (ASTRO §2.3) needs one correct terminal and wrong ones with distinct answers to
    # backtrack from. Our choice: C=1, W=2; 0/0 disables early stop. Grafted rollouts do NOT count (issue 11):
    # they hang under the first iteration's children and a real SmolLM2 tree holds 1 correct + 2 wrong of them
    # after one iteration, so counting them stopped trees before any node below depth 1 was expanded: every
    # backtrack then went to the root and the "tree" was best-of-N from the root's children.
    early_stop_correct: int = 1
    early_stop_wrong: int = 2
    # No early stop before this many iterations (our choice: 2). Iteration 1 always expands the root, so a tree
    # stopped there has no expanded node below depth 1 and nothing to backtrack to but the root; the second
    # iteration expands the most promising depth-1 node. Clamped to `iterations`.
    min_iterations: int = 2
    # Graft finished rollouts into the tree as chains of steps (source="rollout"). Our choice: on. The
    # rollouts are already paid for, and they multiply the correct/wrong terminals procedure cloning can
    # use. Grafted nodes carry no visits and are never selected, so this does not change the search.
    keep_rollouts: bool = True
    # --- batching (engineering, not in the paper) ---------------------------------------------------
    # Leaves selected per tree per wave; more than one uses virtual loss (each pending selection counts
    # as a visit with reward_wrong) so they differ. Our choice: 1 (exact sequential MCTS semantics).
    leaves_per_tree: int = 1
    # Most sequences (prompts x samples) in one backend call; a call always holds at least one prompt.
    # Our choice: 48; on CPU, generate throughput of a 135M model grows up to ~32 rows and then flattens.
    batch_size: int = 48
    # Trees advanced together; the batch of a wave is gathered across them. Our choice: 16 (16 x k = 64
    # expansion rows and up to 192 rollout rows per wave: full batches without huge waves).
    max_active_trees: int = 16
    # --- prompt ---------------------------------------------------------------------------------------
    # Worked examples (prompts.FEW_SHOT) put before the problem. Our choice: 2; without them SmolLM2-135M
    # rarely keeps the blank-line step format or boxes its answer (measurements in prompts.py). Models
    # that follow the format zero-shot (Llama-3.1-Instruct) use 0: see configs/llama3.1-*.yaml.
    few_shot: int = 2
    # Run seed. The samples of one expansion/simulation are seeded with stable_seed(seed, kind, problem id,
    # the node's path of steps) (GenParams.seeds): independent of waves and batch composition, so a resumed run reproduces an
    # uninterrupted one with any backend that seeds per prompt (issue 14).
    seed: int = 0

    def __post_init__(self) -> None:
        # Validated on construction (TRL-style): an invalid config never exists, so a bad value fails where it
        # is written, not later in the stage. validate() stays public to re-check after a field is assigned.
        self.validate()

    def validate(self) -> None:
        def need(ok: bool, msg: str) -> None:
            require(ok, f"SearchConfig: {msg}")

        for name in ("iterations", "k", "max_depth", "max_step_tokens", "max_rollout_tokens",
                     "leaves_per_tree", "batch_size", "max_active_trees"):
            v = getattr(self, name)
            need(isinstance(v, int) and v >= 1, f"{name}={v!r} must be an integer >= 1; set {name}=1 or more")
        for name in ("rollouts", "early_stop_correct", "early_stop_wrong", "min_iterations", "few_shot"):
            v = getattr(self, name)
            need(isinstance(v, int) and v >= 0, f"{name}={v!r} must be an integer >= 0; set {name}=0 or more")
        need(self.c_puct >= 0, f"c_puct={self.c_puct} must be >= 0 (0 = pure exploitation of Q)")
        need(self.temperature >= 0, f"temperature={self.temperature} must be >= 0")
        need(self.temperature > 0 or self.k == 1,
             f"temperature=0 (greedy) with k={self.k} samples the same step k times; "
             "set temperature>0 (e.g. 0.8) or k=1")
        need(0 < self.top_p <= 1, f"top_p={self.top_p} must be in (0, 1]")
        need(self.reward_correct > max(self.reward_wrong, self.reward_unparseable),
             f"reward_correct={self.reward_correct} must exceed reward_wrong={self.reward_wrong} and "
             f"reward_unparseable={self.reward_unparseable}, or search would prefer wrong answers")
        from ..prompts import FEW_SHOT

        need(self.few_shot <= len(FEW_SHOT),
             f"few_shot={self.few_shot} but only {len(FEW_SHOT)} worked example(s) exist in prompts.FEW_SHOT")
        need(self.leaves_per_tree <= self.iterations,
             f"leaves_per_tree={self.leaves_per_tree} exceeds iterations={self.iterations}; lower leaves_per_tree")

    # --- derived values used by the search -----------------------------------------------------------
    @property
    def reward_range(self) -> tuple[float, float]:
        return (min(self.reward_wrong, self.reward_unparseable), self.reward_correct)

    @property
    def unvisited_q(self) -> float:
        """Q used for a child with no visits yet: the middle of the reward range (neutral; our choice)."""
        lo, hi = self.reward_range
        return (lo + hi) / 2

    def reward(self, verdict: Verdict | None) -> float:
        if verdict == Verdict.CORRECT:
            return self.reward_correct
        if verdict == Verdict.WRONG:
            return self.reward_wrong
        return self.reward_unparseable

    def search_settings(self) -> dict:
        """The settings that define what a tree is (the execution-only keys left out)."""
        d = dataclasses.asdict(self)
        for k in EXECUTION_KEYS:
            d.pop(k, None)
        if not d["verify_steps"]:  # added later: left out when off, so earlier runs' hashes (and resume) hold
            d.pop("verify_steps")
        return d

    def config_hash(self) -> str:
        return stable_hash("search", self.search_settings())[:16]
