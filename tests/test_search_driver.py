"""The batched driver and run_search with the scripted policy and the real answer checker."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
from search_helpers import RESUME_CFG, ScriptedPolicy, problems

from astro_reasoner.checking import Checker
from astro_reasoner.config import ConfigError
from astro_reasoner.search import SearchConfig, load_trees, run_search, search_iter
from astro_reasoner.search.mcts import validate_tree
from astro_reasoner.trees import tree_content

GOLDEN = Path(__file__).parent / "golden" / "search_tree_scripted.json"
BASE = SearchConfig(**RESUME_CFG)


@pytest.fixture(scope="module")
def checker():
    with Checker(workers=1) as c:
        yield c


def compact(tree):
    return [[n.id, n.parent, n.source, n.step, n.visits, round(n.value_sum, 6), n.evals, round(n.prior, 6),
             n.terminal, n.verdict] for n in tree.nodes]


def test_golden_tree(checker):
    """One scripted tree, fixed seeds: any change to selection, expansion, evaluation or backprop shows."""
    (tree,) = search_iter(problems(1), ScriptedPolicy(seed=1), checker, BASE)
    got = compact(tree)
    if os.environ.get("UPDATE_GOLDEN"):  # after an intended change: UPDATE_GOLDEN=1 pytest ...; review the diff
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text("[\n" + ",\n".join(json.dumps(n) for n in got) + "\n]\n")
    assert got == json.loads(GOLDEN.read_text())


@pytest.mark.parametrize("changes", [
    {},
    {"leaves_per_tree": 3, "iterations": 9},
    {"rollouts": 0},
    {"keep_rollouts": False, "max_depth": 3},
    {"c_puct": 0.0, "k": 1, "temperature": 0.0},
    {"early_stop_correct": 2, "early_stop_wrong": 1, "iterations": 20},
])
def test_invariants_hold_for_every_tree(checker, changes):
    cfg = dataclasses.replace(BASE, **changes)
    trees = list(search_iter(problems(12), ScriptedPolicy(seed=3), checker, cfg))
    assert sorted(t.problem_id for t in trees) == sorted(p.id for p in problems(12))
    for t in trees:
        assert validate_tree(t, cfg.reward_range) == [], t.problem_id
        assert t.stats["iterations"] <= cfg.iterations
        assert all(n.depth <= cfg.max_depth for n in t.nodes if n.source == "expand")
        if changes.get("early_stop_correct"):
            c, w = t.stats["terminals_correct"], t.stats["terminals_wrong"]
            assert t.stats["stop_reason"] != "early_stop" or (c >= 2 and w >= 1)


def test_grafting_rollouts_does_not_change_the_search(checker):
    on = list(search_iter(problems(5), ScriptedPolicy(seed=2), checker, BASE))
    off = list(search_iter(problems(5), ScriptedPolicy(seed=2), checker,
                           dataclasses.replace(BASE, keep_rollouts=False)))
    for a, b in zip(on, off):
        a_exp = [(n.parent, n.step, n.visits, round(n.value_sum, 9)) for n in a.nodes if n.source == "expand"]
        b_exp = [(n.parent, n.step, n.visits, round(n.value_sum, 9)) for n in b.nodes if n.source == "expand"]
        assert len(a_exp) == len(b_exp)
        assert [x[1:] for x in a_exp] == [x[1:] for x in b_exp]
        assert len(a.nodes) > len(b.nodes) and a.stats["terminals_correct"] >= b.stats["terminals_correct"]


def test_one_wave_is_one_expansion_call_and_one_rollout_call(checker):
    policy = ScriptedPolicy(seed=1)
    cfg = dataclasses.replace(BASE, max_active_trees=6, batch_size=1000)
    list(search_iter(problems(6), policy, checker, cfg))
    kinds = [n for _, n in policy.calls]
    assert kinds[:2] == [cfg.k, cfg.rollouts] and policy.calls[0][0] == 6  # all 6 roots in one call
    assert len(policy.calls) == 2 * cfg.iterations  # every wave: one call per phase
    chunked = ScriptedPolicy(seed=1)
    list(search_iter(problems(6), chunked, checker, dataclasses.replace(cfg, batch_size=7)))
    assert chunked.calls[:3] == [(2, 3), (2, 3), (2, 3)]  # 7 sequences -> 2 prompts x 3 samples per call


def test_accounting_adds_up(checker):
    policy = ScriptedPolicy(seed=1)
    trees = list(search_iter(problems(4), policy, checker, BASE))
    for t in trees:
        s = t.stats
        assert s["rollouts"] > 0 and s["backend_calls"] >= 2 * s["iterations"] // BASE.leaves_per_tree - 1
        assert s["generated_tokens"] > 0 and s["prompt_tokens"] > 0 and s["wall_seconds"] >= 0
    outputs = sum(n for n, _ in policy.calls)
    assert outputs > 0


def _nodes_by_id(path):
    return {t.problem_id: (t.config_hash, compact(t)) for t in load_trees(path)}


def test_run_search_resumes_and_drops_torn_tail(tmp_path, checker):
    full = tmp_path / "full"
    summary = run_search(problems(6), full, BASE, policy=ScriptedPolicy(seed=1), checker=checker)
    assert summary["trees"] == 6 and (full / "summary.json").exists()
    part = tmp_path / "part"
    run_search(problems(3), part, BASE, policy=ScriptedPolicy(seed=1), checker=checker)
    with open(part / "trees.jsonl", "a") as fh:
        fh.write('{"problem_id": "p5", "nodes": [')  # a write cut by a crash
    policy = ScriptedPolicy(seed=1)  # batching may change between attempts (not part of the settings check)
    summary = run_search(problems(6), part, dataclasses.replace(BASE, batch_size=100), policy=policy, checker=checker)
    assert summary["trees"] == 6 and summary["this_run"]["generated_tokens"] > 0
    assert policy.calls[0][0] == 3  # only the 3 missing problems were searched
    assert _nodes_by_id(part / "trees.jsonl") == _nodes_by_id(full / "trees.jsonl")
    again = ScriptedPolicy(seed=1)
    run_search(problems(6), part, BASE, policy=again, checker=checker)
    assert again.calls == []  # everything done: no backend call at all
    with pytest.raises(ConfigError, match="k: 3 -> 4"):
        run_search(problems(6), part, dataclasses.replace(BASE, k=4), policy=ScriptedPolicy(seed=1), checker=checker)


def test_shards_partition_the_problems(tmp_path, checker):
    for i in range(3):
        run_search(problems(7), tmp_path, BASE, policy=ScriptedPolicy(seed=1), checker=checker, shard=(i, 3))
    files = sorted(p.name for p in tmp_path.glob("trees*.jsonl"))
    assert files == [f"trees.shard-{i}-of-3.jsonl" for i in range(3)]
    assert sorted(t.problem_id for t in load_trees(tmp_path)) == sorted(p.id for p in problems(7))


def test_sigkill_at_random_points_then_resume_matches_uninterrupted_run(tmp_path, checker):
    """Kill the search process (SIGKILL) 5 times at random moments, resuming each time; the final file holds
    every problem exactly once, every tree is valid, and it equals an uninterrupted run's (by problem id)."""
    import random
    import signal
    import subprocess
    import sys
    import time

    n = 24
    ref = tmp_path / "ref"
    run_search(problems(n), ref, BASE, policy=ScriptedPolicy(seed=1), checker=checker)
    out = tmp_path / "killed"
    script = Path(__file__).parent / "search_helpers.py"
    cmd = [sys.executable, str(script), str(out), str(n), "0.005"]
    # tests/ for search_helpers, then the caller's path (a worktree's src/ must win over the installed copy)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).parent), *filter(None, [os.environ.get("PYTHONPATH")])])}
    rng = random.Random(0)
    trees_file = out / "trees.jsonl"

    def lines() -> int:
        return trees_file.read_bytes().count(b"\n") if trees_file.exists() else 0

    kills, partial = 0, []
    for _ in range(5):
        # Kill once a random number of further trees is written, plus a random few ms (mid-tree), so the
        # kill points are random in the search's progress whatever the machine's load.
        target = lines() + rng.randint(1, 3)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while lines() < target and proc.poll() is None and time.time() < deadline:
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.03))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        trees = load_trees(trees_file)  # a torn last line is tolerated here
        ids = [t.problem_id for t in trees]
        assert len(ids) == len(set(ids))
        assert all(validate_tree(t, BASE.reward_range) == [] for t in trees)
        partial.append(len(ids))
    assert kills == 5 and all(0 < k < n for k in partial), partial  # every kill landed mid-run
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert _nodes_by_id(out / "trees.jsonl") == _nodes_by_id(ref / "trees.jsonl")
    # every tree record byte for byte (minus wall seconds and backend-call count, which measure the run)
    assert sorted(map(tree_content, load_trees(out))) == sorted(map(tree_content, load_trees(ref)))
    assert sum(1 for _ in open(out / "trees.jsonl")) == n


def test_a_backend_that_queues_requests_gets_each_wave_phase_in_one_call(checker):
    """Servers with continuous batching (``queues_requests``) are not chunked at ``batch_size``: chunks would
    each wait for their slowest sequence. Seeds are per prompt, so the trees are the same either way."""
    cfg = dataclasses.replace(BASE, batch_size=4, max_active_trees=6)
    chunked, queued = ScriptedPolicy(seed=2), ScriptedPolicy(seed=2)
    queued.queues_requests = True
    a = list(search_iter(problems(6), chunked, checker, cfg))
    b = list(search_iter(problems(6), queued, checker, cfg))
    assert [tree_content(t) for t in a] == [tree_content(t) for t in b]
    assert max(p * n for p, n in chunked.calls) <= max(4, max(n for _, n in chunked.calls))
    assert max(p * n for p, n in queued.calls) > 4 and len(queued.calls) < len(chunked.calls)


class _CountdownScript:
    """Countdown 3, 4, 2 -> 14: the first step is true ("3 * 4 = 12") for even samples and false ("3 * 4 = 13")
    for odd ones; the next step (and every rollout) boxes the right expression either way."""

    name, deterministic = "countdown-script", True
    FINAL = "So the answer is \\boxed{3 * 4 + 2}."

    def apply_chat_template(self, messages, continue_text=""):
        return "<Q>" + continue_text

    def count_tokens(self, text):
        return len(text.split())

    def close(self):
        pass

    def generate(self, prompts, params):
        from astro_reasoner.types import Completion

        out = []
        for p in prompts:
            partial = p.split("<Q>", 1)[1]
            row = []
            for i in range(params.n):
                if params.stop and not partial.strip():
                    text, reason = ("3 * 4 = 12. Left: 2, 12." if i % 2 == 0 else "3 * 4 = 13. Left: 2, 13."), "stop"
                else:
                    text, reason = self.FINAL, "eos"
                row.append(Completion(text=text, finish_reason=reason, tokens=len(text.split()), logprob_sum=-1.0))
            out.append(row)
        return out


@pytest.mark.parametrize("verify_steps", [False, True])
def test_verify_steps_judges_the_whole_path(checker, verify_steps):
    """With verify_steps a terminal (and a rollout) whose path holds a false step is wrong, though its box is
    right; without, the box alone decides (the paper's verifier). The config hash is unchanged when off."""
    from astro_reasoner.types import Problem, Verdict

    problem = Problem(id="cd", problem="use 3, 4, 2 to make 14", answer="14",
                      meta={"task": "countdown", "numbers": [3, 4, 2], "target": 14})
    cfg = SearchConfig(iterations=3, k=2, rollouts=1, max_depth=4, few_shot=0, temperature=1.0,
                       early_stop_correct=0, early_stop_wrong=0, verify_steps=verify_steps)
    (tree,) = list(search_iter([problem], _CountdownScript(), checker, cfg))
    verdicts = {}
    for n in tree.nodes:
        if n.terminal and n.verdict is not None:
            first = tree.nodes[tree.path(n.id)[0]].step
            verdicts.setdefault(first.split(" = ")[1][:2], set()).add(Verdict(n.verdict))
    assert verdicts["12"] == {Verdict.CORRECT}
    assert verdicts["13"] == ({Verdict.WRONG} if verify_steps else {Verdict.CORRECT})
    assert ("verify_steps" in cfg.search_settings()) is verify_steps
