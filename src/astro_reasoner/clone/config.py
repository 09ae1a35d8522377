"""``CloneConfig``: every knob of procedure cloning (ASTRO §2.2-2.3), each an ablation flag.

Defaults < ``--config FILE`` (its ``clone:`` section if it has one) < ``key=value`` overrides. Each config is
validated on construction (``validate()``, run by ``__post_init__``), which says the cause and the fix for each
invalid setting.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..config import ConfigError
from ..io import stable_hash

MODES = ("astro", "direct")
MERGES = ("deepest", "root", "random")


def parse_backtracks(value: Any) -> int | dict[int, float]:
    """``2`` -> 2; ``{0: 0.2, 1: 0.4, 2: 0.4}`` or the string ``"0:0.2,1:0.4,2:0.4"`` -> normalized weights."""
    if isinstance(value, bool):
        raise ConfigError(f"max_backtracks: expected an integer or a distribution, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value == int(value):
        return int(value)
    if isinstance(value, str):
        raw = value.strip().strip("{}").strip()
        if raw.lstrip("-").isdigit():
            return int(raw)
        pairs: dict[Any, Any] = {}
        for item in filter(None, (p.strip() for p in raw.split(","))):
            k, sep, v = item.partition(":")
            if not sep:
                raise ConfigError(f"max_backtracks: cannot read {item!r} in {value!r}; write a count (2) or a "
                                  f"distribution like 0:0.2,1:0.4,2:0.4")
            pairs[k.strip()] = v.strip()
        value = pairs
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"max_backtracks: expected an integer or a distribution like {{0: 0.2, 1: 0.4, 2: 0.4}}, "
                          f"got {value!r}")
    if any(v is None for v in value.values()):
        raise ConfigError(f"max_backtracks: {value!r} looks like YAML read '0:0.2' without a space after the colon; "
                          f"write {{0: 0.2, 1: 0.4}} (spaces) or the string \"0:0.2,1:0.4\"")
    try:
        dist = {int(k): float(v) for k, v in value.items()}
    except (TypeError, ValueError):
        raise ConfigError(f"max_backtracks: keys must be integers and values probabilities, got {value!r}") from None
    if any(k < 0 for k in dist) or any(p < 0 for p in dist.values()) or sum(dist.values()) <= 0:
        raise ConfigError(f"max_backtracks: counts and weights must be >= 0 with a positive total, got {value!r}")
    total = sum(dist.values())
    return {k: p / total for k, p in sorted(dist.items())}  # weights are normalized (our choice: forgiving)


# Settings that do not change what a clone run writes: left out of its fingerprint and of the resume check.
NOT_FINGERPRINTED = ("batch_size", "tokenizer")


@dataclass
class CloneConfig:
    mode: str = "astro"  # astro: wrong terminals + backtracks + correct path; direct: correct path only (baseline)
    # The SFT mix per tree (ASTRO §3.3: per problem one direct solution, k = 0, and three search solutions,
    # k >= 1, drawn from the same tree). Direct mode always writes one k = 0 trace.
    direct_traces: int = 1
    search_traces: int = 3
    # k of a search trace: an int, or a distribution {count: weight} sampled per trace. Our choice: 1-3
    # backtracks, equally likely (the paper's CoTs hold one to a few backtracks; it gives no distribution).
    max_backtracks: Any = dataclasses.field(default_factory=lambda: {1: 1.0, 2: 1.0, 3: 1.0})
    # Where a backtrack returns (Algorithm 1): deepest = the new path's deepest node already written, so no
    # step is written twice ("lca" is accepted as an old name); root = start over; random = a random written
    # ancestor (ablations).
    merge: str = "deepest"
    phrases: bool = True  # false: bare markers instead of natural-language reflection/backtrack (ablation)
    phrases_file: str | None = None  # your own phrase bank (same schema as the packaged phrases.yaml)
    # Reflect-and-continue (ASTRO §2.3): after an intermediate step whose node has Q >= q_threshold (and at
    # least q_min_visits visits), the neutral check is followed by "Our solution seems to be correct so far."
    # and the solution goes on. The paper says only "high Q". Our default: Q >= 0 on the [-1, 1] reward scale
    # (at least as many correct as wrong evaluations below the node) after >= 1 visit. Chosen on training trees
    # (20 SmolLM2 trees, BENCHMARKS.md "Search depth"): a weak policy's intermediate Q is mostly negative, and
    # 0.5 / 2 visits marked no node on any of their 40 CoTs, 0.0 / 1 marked one on 12 (1.33 per such CoT).
    # Strong policies (the Llama configs) set 0.5.
    q_threshold: float = 0.0
    q_min_visits: int = 1
    rewrite: bool = False  # LM rewrite of the template CoT into fluent prose (ASTRO §2.3), verified
    # Self-evaluation (ASTRO §2.3) of the correct TERMINALS (their solution path), before sampling n*; the same
    # filter for astro and direct data. votes: N = 8 as in the paper; min_votes None = a majority (ours).
    selfeval: bool = False
    votes: int = 8
    min_votes: int | None = None  # yes-votes a terminal needs; None = more than half of the votes
    backend: str = "hf"  # backend for rewrite/self-eval when no policy object is passed in
    model: str | None = None  # model for rewrite/self-eval (path, hub id, or alias such as smollm2-135m)
    rewrite_temperature: float = 0.7
    rewrite_max_tokens: int | None = None  # None: 1.5x the template's tokens + 64
    selfeval_temperature: float = 1.0
    selfeval_max_tokens: int = 8
    batch_size: int = 8  # CoTs per LM call
    tokenizer: str | None = None  # for token lengths in the dataset card; default: the LM's, else word counts
    max_tokens: int | None = None  # drop CoTs longer than this many tokens (match SFT max_length); None: keep all
    seed: int = 0

    def __post_init__(self) -> None:
        # Validated on construction (TRL-style): an invalid config never exists, so a bad value fails where it
        # is written, not later in the stage. validate() stays public to re-check after a field is assigned.
        self.validate()

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode={self.mode!r} is not one of {', '.join(MODES)}")
        if self.merge == "lca":
            self.merge = "deepest"
        if self.merge not in MERGES:
            raise ConfigError(f"merge={self.merge!r} is not one of {', '.join(MERGES)} (deepest = continue from "
                              f"the deepest written node as in Algorithm 1; root = start over; random = a random "
                              f"written ancestor)")
        self.max_backtracks = parse_backtracks(self.max_backtracks)
        if isinstance(self.max_backtracks, int) and self.max_backtracks < 0:
            raise ConfigError(f"max_backtracks={self.max_backtracks} must be >= 0")
        if self.direct_traces < 0 or self.search_traces < 0 or self.direct_traces + self.search_traces < 1:
            raise ConfigError(f"direct_traces={self.direct_traces}, search_traces={self.search_traces}: both must "
                              f"be >= 0 and at least one > 0 (the paper: 1 and 3)")
        if self.votes < 1:
            raise ConfigError(f"votes={self.votes} must be >= 1 (N self-evaluation votes)")
        if self.min_votes is not None and not 1 <= self.min_votes <= self.votes:
            raise ConfigError(f"min_votes={self.min_votes} must be between 1 and votes={self.votes} "
                              f"(or unset for a majority)")
        if self.q_min_visits < 1:
            raise ConfigError(f"q_min_visits={self.q_min_visits} must be >= 1")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size} must be >= 1")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ConfigError(f"max_tokens={self.max_tokens} must be >= 1 or unset")
        if self.phrases_file is not None:
            from ..behaviour import load_phrases

            load_phrases(self.phrases_file)  # fail now, not after the trees are read

    @property
    def required_votes(self) -> int:
        return self.votes // 2 + 1 if self.min_votes is None else self.min_votes

    @property
    def uses_lm(self) -> bool:
        return self.rewrite or self.selfeval

    def fingerprint(self) -> str:
        """Hash of the settings that change the output (not batch size or display options)."""
        d = dataclasses.asdict(self)
        for k in NOT_FINGERPRINTED:
            d.pop(k)
        return stable_hash(d)[:16]


@dataclass
class BestOfNConfig:
    """Best-of-N baseline: independent full solutions at the search's token budget, keep a correct one."""

    backend: str = "hf"
    model: str = ""  # the policy that ran the search
    max_samples: int = 64  # upper bound on N per problem
    max_tokens: int = 512  # per solution
    temperature: float = 1.0
    top_p: float = 1.0
    batch: int = 4  # solutions drawn per call, until the budget is spent or a correct one is found
    budget_key: str = "generated_tokens"  # tree.stats key holding the search's generated-token budget
    default_budget: int | None = None  # budget for trees without that stat; None: skip such trees (counted)
    few_shot: int = 2  # worked examples in the prompt, as in the search (prompts.PromptConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        # Validated on construction (TRL-style): an invalid config never exists, so a bad value fails where it
        # is written, not later in the stage. validate() stays public to re-check after a field is assigned.
        self.validate()

    def validate(self) -> None:
        if not self.model:
            raise ConfigError("model is not set (nor named by the search's summary.json): pass --model, the "
                              "policy the search used (e.g. smollm2-135m)")
        for key in ("max_samples", "max_tokens", "batch"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}={getattr(self, key)} must be >= 1")
        if self.default_budget is not None and self.default_budget < 1:
            raise ConfigError(f"default_budget={self.default_budget} must be >= 1 or unset")
