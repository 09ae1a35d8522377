"""`EvalConfig`: how `astro eval` samples, checks and scores (one dataclass, validated on construction).

Defaults and where they come from:
- ``n=16``, ``k=8``: the ASTRO protocol, pass@1 averaged over 16 samples plus maj@8 on MATH-500, AMC 2023
  and AIME 2024 (ASTRO §4).
- ``temperature=0.6``, ``top_p=0.95``: open-r1's evaluation settings for reasoning models (open-r1 README,
  ``generation_parameters={temperature:0.6,top_p:0.95}``). The ASTRO paper's
  own sampling values were not available to us (not verified); change them with ``temperature=...``.
- ``max_tokens=16384``: long CoTs need ≥ 16k new tokens (open-r1 evaluates with 32768). On CPU
  pass something small (``max_tokens=256``) or the run takes hours.
- Prompt: the project's step-by-step instruction asking for ``\\boxed{}`` (``astro_reasoner.prompts``),
  zero-shot by default like lighteval's ``|0|0`` tasks and the ASTRO training prompts; ``few_shot=1`` puts our
  one worked example first, which helps untrained small models (SmolLM2-135M) follow the format.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import ConfigError, check_template
from ..prompts import FEW_SHOT, STEP_INSTRUCTION, SYSTEM_PROMPT, PromptConfig

DEFAULT_DATASETS = ["math500", "amc23", "aime24"]

# Settings that change what a sample *is*: a resumed run must agree on them with the run that wrote the
# samples already on disk (n, k, datasets and limits may change: they only add or re-score samples).
GENERATION_KEYS = ("temperature", "top_p", "max_tokens", "stop", "system", "instruction", "few_shot", "seed")


@dataclass
class EvalConfig:
    datasets: list[str] = field(default_factory=lambda: list(DEFAULT_DATASETS))  # names or file paths
    data_dir: str | None = None  # where named benchmarks live (default: the data package's default)
    limit: int | None = None  # first N problems of each dataset (None: all)
    n: int = 16  # samples per problem (pass@1 is averaged over them)
    k: int = 8  # maj@k and pass@k
    temperature: float = 0.6
    top_p: float = 0.95
    max_tokens: int = 16384
    stop: list[str] = field(default_factory=list)
    system: str | None = SYSTEM_PROMPT
    instruction: str = STEP_INSTRUCTION  # must contain {problem}
    few_shot: int = 0
    seed: int = 0  # each backend call samples with stable_seed(seed, dataset, first problem id, first sample)
    bootstrap: int = 1000  # bootstrap resamples for the 95 % interval of pass@1 (0: no interval)
    batch_size: int = 8  # problems per backend call (each with its missing samples)
    checker_workers: int | None = None  # process-pool size of the answer checker (None: its default)

    def prompt_config(self) -> PromptConfig:
        return PromptConfig(system=self.system or None, instruction=self.instruction, few_shot=self.few_shot)

    def generation_settings(self) -> dict:
        return {key: getattr(self, key) for key in GENERATION_KEYS}

    def __post_init__(self) -> None:
        # Validated on construction (TRL-style): an invalid config never exists, so a bad value fails where it
        # is written, not later in the stage. validate() stays public to re-check after a field is assigned.
        self.validate()

    def validate(self) -> None:
        if not self.datasets:
            raise ConfigError("datasets: empty; give benchmark names or files, e.g. datasets=math500,amc23")
        if self.n < 1:
            raise ConfigError(f"n={self.n}: need at least one sample per problem")
        if self.k < 1 or self.k > self.n:
            raise ConfigError(f"k={self.k} with n={self.n}: maj@k and pass@k need 1 <= k <= n; "
                              f"raise n or lower k (the ASTRO protocol is n=16, k=8)")
        if self.temperature < 0:
            raise ConfigError(f"temperature={self.temperature}: must be >= 0")
        if self.temperature == 0 and self.n > 1:
            raise ConfigError(f"temperature=0 is greedy decoding, so the n={self.n} samples would be identical; "
                              "use n=1 k=1 for greedy evaluation or a temperature > 0 (default 0.6)")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p={self.top_p}: must be in (0, 1]")
        if self.max_tokens < 1:
            raise ConfigError(f"max_tokens={self.max_tokens}: must be >= 1")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit={self.limit}: must be >= 1 (or unset for every problem)")
        check_template(self.instruction, "instruction", ("problem",))
        if not 0 <= self.few_shot <= len(FEW_SHOT):
            raise ConfigError(f"few_shot={self.few_shot}: must be between 0 and {len(FEW_SHOT)} "
                              "(the number of worked examples in astro_reasoner.prompts.FEW_SHOT)")
        if self.bootstrap < 0:
            raise ConfigError(f"bootstrap={self.bootstrap}: must be >= 0 (0 turns the interval off)")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size}: must be >= 1")
        if self.checker_workers is not None and self.checker_workers < 1:
            raise ConfigError(f"checker_workers={self.checker_workers}: must be >= 1 (or unset)")
