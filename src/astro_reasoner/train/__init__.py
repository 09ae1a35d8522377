"""Training stages (ASTRO §3.3 SFT, §3.4 GRPO) as thin glue over TRL; heavy imports happen inside the runs."""

from .config import FilterConfig, RLStageConfig, SFTStageConfig
from .filter import run_filter
from .grpo import run_grpo
from .rewards import RewardValues, correctness_reward
from .sft import run_sft

__all__ = ["FilterConfig", "RLStageConfig", "RewardValues", "SFTStageConfig", "correctness_reward", "run_filter",
           "run_grpo", "run_sft"]
