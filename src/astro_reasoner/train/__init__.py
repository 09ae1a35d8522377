"""Training stages (ASTRO §3.3 SFT, §3.4 GRPO) as thin glue over TRL.

Everything here loads on first use (PEP 562): the CLI imports this package at start-up (train/cli.py), and
importing TRL takes seconds, so ``astro --help`` and the commands that do not train would otherwise wait for it.
"""

from __future__ import annotations

import importlib

_WHERE = {"FilterConfig": "config", "RLStageConfig": "trl_configs", "SFTStageConfig": "trl_configs",
          "run_filter": "filter", "run_grpo": "grpo", "run_sft": "sft", "RewardValues": "rewards",
          "correctness_reward": "rewards"}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
