"""Stage 1 of ASTRO: MCTS over step-by-step solutions (§2.2), batched across trees, resumable, accounted.

Public API: ``SearchConfig``, ``run_search`` (problems -> ``trees.jsonl`` + ``summary.json`` in a directory),
``search_iter`` (the same without files), ``load_trees`` (read ``trees.jsonl`` or a directory of shards).
"""

from .config import SearchConfig
from .driver import search_iter
from .run import run_search
from ..trees import load_trees

__all__ = ["SearchConfig", "run_search", "search_iter", "load_trees"]
