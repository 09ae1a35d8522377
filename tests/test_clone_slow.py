"""Procedure cloning on trees from a real SmolLM2-135M search (slow: minutes on 2 CPU cores)."""

from __future__ import annotations

import pytest

from astro_reasoner.types import Problem

pytestmark = pytest.mark.slow

PROBLEMS = [
    ("e0", "What is 3 + 5?", "8"),
    ("e1", "Tom has 4 apples and buys 3 more. How many apples does Tom have now?", "7"),
    ("e2", "What is 6 + 2?", "8"),
]


def test_clone_trees_from_a_real_smollm2_search(tmp_path):
    from astro_reasoner.backends import make_backend
    from astro_reasoner.checking import Checker
    from astro_reasoner.clone import CloneConfig, run_clone
    from astro_reasoner.config import build_config
    from astro_reasoner.io import read_jsonl
    from astro_reasoner.search.config import SearchConfig
    from astro_reasoner.search.run import run_search

    problems = [Problem(id=i, problem=p, answer=a) for i, p, a in PROBLEMS]
    scfg = build_config(SearchConfig, {"iterations": 2, "k": 2, "rollouts": 2, "early_stop_wrong": 2,
                                       "max_step_tokens": 48, "max_rollout_tokens": 96})
    policy = make_backend("hf", "smollm2-135m", batch_size=scfg.batch_size)
    try:
        with Checker(workers=1) as checker:
            run_search(problems, tmp_path / "search", scfg, policy=policy, checker=checker)
            cfg = CloneConfig(max_backtracks={1: 0.5, 2: 0.5})
            stats = run_clone(tmp_path / "search", tmp_path / "clone", cfg, checker=checker)
            if stats["traces"] == 0:
                pytest.skip(f"SmolLM2 found no correct terminal in {len(problems)} trees: {stats['messages']}")
            rows = list(read_jsonl(tmp_path / "clone" / "sft.jsonl"))
            gold = {i: a for i, _, a in PROBLEMS}
            results = checker.check_batch([(gold[r["problem_id"]], r["completion"][0]["content"]) for r in rows])
    finally:
        policy.close()
    assert rows and all(res.correct for res in results)  # every exported example re-checks CORRECT
    assert stats["roundtrip_rate"] >= 0.99
    assert sum(stats["backtrack_distribution"].values()) == len(rows)
