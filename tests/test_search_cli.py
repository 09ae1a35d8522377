"""`astro search` and `astro trees stats` end to end on the tiny random model (hf backend), and Ray workers."""

from __future__ import annotations

import json

import pytest

from astro_reasoner.cli import main
from astro_reasoner.data import synthesize, write_problems
from astro_reasoner.search import SearchConfig, load_trees
from astro_reasoner.search.mcts import validate_tree

SMALL = ["k=2", "rollouts=2", "iterations=2", "max_step_tokens=6", "max_rollout_tokens=10", "max_depth=3",
         "batch_size=8"]


@pytest.fixture(scope="module")
def problem_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("problems") / "p.jsonl"
    write_problems(path, synthesize(steps=2, n=5, seed=0))
    return path


def search_cmd(problem_file, tiny_model_dir, out, *extra):
    return ["search", "--problems", str(problem_file), "--model", str(tiny_model_dir), "--backend", "hf",
            "--out", str(out), "--quiet", *extra, *SMALL]


def check_out(out, n):
    trees = load_trees(out)
    assert len(trees) == n and len({t.problem_id for t in trees}) == n
    rr = SearchConfig().reward_range
    assert all(validate_tree(t, rr) == [] for t in trees)
    assert all(t.stats["generated_tokens"] > 0 and t.stats["backend_calls"] >= 1 for t in trees)
    return trees


def test_search_cli_writes_resumable_trees_and_stats(problem_file, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(search_cmd(problem_file, tiny_model_dir, out, "--limit", "3")) == 0
    check_out(out, 3)
    assert main(search_cmd(problem_file, tiny_model_dir, out)) == 0  # resume: adds the other 2
    check_out(out, 5)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trees"] == 5 and summary["this_run"]["generated_tokens"] > 0
    assert summary["config"]["k"] == 2
    capsys.readouterr()
    assert main(["trees", "stats", str(out), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["trees"] == 5 and stats["generated_tokens_per_tree"] > 0
    assert main(["trees", "stats", str(out)]) == 0
    assert "with >= 1 correct terminal" in capsys.readouterr().out


def test_search_cli_dry_run_estimates_and_writes_nothing(problem_file, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "dry"
    assert main(search_cmd(problem_file, tiny_model_dir, out, "--dry-run")) == 0
    err = capsys.readouterr().err
    assert "est generated tokens" in err and "probe tokens per second" in err
    assert not (out / "trees.jsonl").exists()


@pytest.mark.parametrize("args, needle", [
    (["k=0"], "k=0 must be an integer >= 1"),
    (["bogus=1"], "unknown key(s) bogus"),
    (["--shard", "3/2"], "need 0 <= i < n"),
    (["--backend", "vllm"], "use one of auto, hf, llamacpp, ct2, openai"),
    (["leaves_per_tree=5"], "SearchConfig: leaves_per_tree=5 exceeds iterations=4"),
    (["-b", "threads"], "--backend-option: override 'threads' is not of the form key=value"),
    (["--backend-option", "bogus=1"], "unknown option(s) bogus for backend 'hf'"),
])
def test_search_cli_errors_are_one_line(problem_file, tmp_path, capsys, args, needle):
    cmd = ["search", "--problems", str(problem_file), "--out", str(tmp_path / "x"), *args]
    assert main(cmd) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err


@pytest.mark.slow  # not the real model, but Ray start-up + 2 workers importing torch: ~45 s on 2 busy cores
def test_ray_two_workers_match_one_process(problem_file, tiny_model_dir, tmp_path, monkeypatch):
    """Two Ray workers give the same trees as one process: with the deterministic scripted policy the tree
    CONTENTS are compared (every record byte for byte minus run measurements); the CLI's --workers path with
    the tiny hf model (whose samples depend on batch composition) is checked for the same problems."""
    ray = pytest.importorskip("ray")
    import search_helpers
    from ray import cloudpickle
    from search_helpers import RESUME_CFG, ScriptedPolicy, problems, scripted_spec

    from astro_reasoner.checking import Checker
    from astro_reasoner.search import run_search
    from astro_reasoner.search.distributed import run_search_distributed
    from astro_reasoner.trees import tree_content

    cloudpickle.register_pickle_by_value(search_helpers)  # workers cannot import the tests directory
    # explicit: a local ray.init otherwise turns token auth on for the whole test process (os.environ and
    # Ray's cached config), which outlives ray.shutdown (tests/test_search_ray_cluster.py)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        cfg = SearchConfig(**{**RESUME_CFG, "early_stop_correct": 1, "early_stop_wrong": 2})
        with Checker(workers=1) as checker:
            run_search(problems(9), tmp_path / "s1", cfg, policy=ScriptedPolicy(seed=2), checker=checker)
        summary = run_search_distributed(problems(9), scripted_spec(2), cfg, tmp_path / "s2", workers=2)
        assert summary["workers"] == 2 and summary["trees"] == 9
        one_s, two_s = load_trees(tmp_path / "s1"), load_trees(tmp_path / "s2")
        assert sorted(map(tree_content, one_s)) == sorted(map(tree_content, two_s))
        assert len({t.stats["stop_reason"] for t in one_s}) >= 1 and sum(len(t.nodes) for t in one_s) > 9 * 5

        one, two = tmp_path / "one", tmp_path / "two"
        assert main(search_cmd(problem_file, tiny_model_dir, one)) == 0
        assert main(search_cmd(problem_file, tiny_model_dir, two, "--workers", "2")) == 0
        a, b = check_out(one, 5), check_out(two, 5)
        assert {t.problem_id for t in a} == {t.problem_id for t in b}
        summary = json.loads((two / "summary.json").read_text())
        assert summary["workers"] == 2 and summary["this_run"]["generated_tokens"] > 0
    finally:
        ray.shutdown()
