"""Procedure cloning (ASTRO §2.2-2.3): search trees -> traces with backtracks -> long CoT -> SFT/RL data.

``run_clone(trees, out, cfg, *, policy=None, checker=None) -> stats`` (the checker is required) is the
pipeline's entry point; ``run_best_of_n`` (the same signature; it needs both) the Best-of-N baseline. Imported
lazily so ``astro --help`` stays fast.
"""

from __future__ import annotations

__all__ = ["CloneConfig", "BestOfNConfig", "run_clone", "run_best_of_n", "read_trees"]


def __getattr__(name: str):
    if name in ("CloneConfig", "BestOfNConfig"):
        from . import config

        return getattr(config, name)
    if name in ("run_clone", "read_trees"):
        from . import run

        return getattr(run, name)
    if name == "run_best_of_n":
        from .bestofn import run_best_of_n

        return run_best_of_n
    raise AttributeError(name)
