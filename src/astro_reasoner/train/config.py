"""Configs of the training stages: ``SFTStageConfig`` / ``RLStageConfig`` (ASTRO §3.3 SFT, §3.4 RL) and
``FilterConfig`` (the difficulty filter, ``astro rl filter``).

The two training configs are subclasses of TRL's ``SFTConfig`` / ``GRPOConfig`` (train/trl_configs.py): every
TRL option is a key of its own. They are loaded lazily from here, so that importing this module (for
``FilterConfig``) does not import TRL. ``FilterConfig`` is ours: it drives a sampling backend, not TRL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import ConfigError, require


def __getattr__(name: str):
    # The TRL configs load on first use: importing trl takes seconds, and `astro --help` or `astro rl filter`
    # (this module's FilterConfig) must not wait for it, nor need the [train] extra.
    if name in ("SFTStageConfig", "RLStageConfig"):
        from . import trl_configs

        return getattr(trl_configs, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def parse_band(text: str) -> tuple[float, float]:
    """``"0.1-0.9"`` -> (0.1, 0.9); both ends inclusive, 0 <= lo <= hi <= 1."""
    lo_s, sep, hi_s = str(text).partition("-")
    try:
        lo, hi = float(lo_s), float(hi_s)
    except ValueError:
        raise ConfigError(f"keep={text!r}: expected a pass-rate band LO-HI such as 0.1-0.9") from None
    require(bool(sep) and 0 <= lo <= hi <= 1, f"keep={text!r}: need 0 <= LO <= HI <= 1, e.g. 0.1-0.9")
    return lo, hi


@dataclass
class FilterConfig:
    """Difficulty filter (ASTRO §3.4 trains RL on "moderately difficult" prompts): keep a pass-rate band."""

    prompts: str = ""
    model: str = ""
    out: str = ""  # kept prompts (rl.jsonl format + pass_rate); pass rates of all prompts go beside it
    n: int = 8
    keep: str = "0.1-0.9"  # inclusive pass-rate band
    backend: str = "hf"  # hf | openai (astro_reasoner.backends.make_backend)
    backend_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"base_url": "http://..:8000/v1"}
    max_tokens: int = 2048
    temperature: float = 1.0  # the RL sampling temperature, so pass rates match what GRPO will see
    top_p: float = 1.0
    batch_size: int = 8  # prompts per backend call
    seed: int = 0
    limit: int | None = None  # only the first N prompts
    # stop sampling once this many prompts are in the band (checked after each batch of batch_size prompts): a
    # run of a few RL steps needs only that many, and a weak model may need many batches to find them
    enough: int | None = None
    checker_workers: int | None = None
    checker_deadline: float = 10.0

    def __post_init__(self) -> None:
        # Validated on construction (TRL-style): an invalid config never exists, so a bad value fails where it
        # is written, not later in the stage. validate() stays public to re-check after a field is assigned.
        self.validate()

    def validate(self) -> None:
        require(bool(self.prompts), "prompts is not set: pass --prompts rl.jsonl")
        require(bool(self.model), "model is not set: pass --model CKPT")
        require(bool(self.out), "out is not set: pass --out kept.jsonl")
        require(self.n >= 1, f"n={self.n!r}: must be >= 1 (samples per prompt)")
        parse_band(self.keep)
        require(self.max_tokens >= 1, f"max_tokens={self.max_tokens!r}: must be >= 1")
        require(self.temperature >= 0, f"temperature={self.temperature!r}: must be >= 0")
        require(self.batch_size >= 1, f"batch_size={self.batch_size!r}: must be >= 1")
        require(self.limit is None or self.limit >= 1, f"limit={self.limit!r}: must be >= 1 (or null)")
        require(self.enough is None or self.enough >= 1, f"enough={self.enough!r}: must be >= 1 (or null: score "
                "every prompt)")
        require(self.checker_deadline > 0, f"checker_deadline={self.checker_deadline!r}: must be > 0 seconds")
