"""Fault injection (issue 14): SIGKILL at seeded random points of search, eval and clone.

They run in child processes with the scripted policy (deterministic, no torch), so five kills per stage cost
seconds; SFT, RL and the pipeline, which need the tiny model, are in ``test_fault_train_slow.py``; two writers,
a full disk and torn records in ``test_fault_storage.py``. After the kills every stage is resumed to the end and
compared with an uninterrupted run: 0 records lost, 0 duplicated, every record that was on disk at a kill
still there byte for byte, and the final files equal to the uninterrupted run's.
"""

from __future__ import annotations

import json
import random

import fault_helpers as fh


def test_search_survives_sigkill_at_random_points(tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "killed"
    fh.finish(fh.cmd("search", ref, fh.N_SEARCH, 0))
    report = {"kills": 0, "duplicated": 0, "partial": []}
    cmd = fh.cmd("search", out, fh.N_SEARCH, 0.02)
    fh.kill_trials(cmd, out / "trees.jsonl", lambda r: r["problem_id"], random.Random(14), max_wait=60, report=report,
                 cap=fh.N_SEARCH - 4)
    fh.finish(cmd)
    cmp = fh.compare(ref / "trees.jsonl", out / "trees.jsonl", lambda r: r["problem_id"])
    fh.report("search", report, cmp)
    assert report["kills"] >= 3 and cmp["lost"] == 0 and cmp["duplicated"] == 0 and report["duplicated"] == 0, \
        (report, cmp)
    # The scripted policy ignores the backend seed, so the trees must match whatever seeds the resumed
    # search passes (tree-for-tree equality with a seed-sensitive backend is issue 14 item 7, elsewhere).
    assert cmp["equal"]


def test_eval_survives_sigkill_at_random_points(tmp_path):
    from search_helpers import problems

    from astro_reasoner.data import write_problems

    data = tmp_path / "probs.jsonl"
    write_problems(data, problems(fh.N_EVAL))
    ref, out = tmp_path / "ref", tmp_path / "killed"
    fh.finish(fh.cmd("eval", ref, data, 0))
    report = {"kills": 0, "duplicated": 0, "partial": []}
    cmd = fh.cmd("eval", out, data, 0.05)
    key = lambda r: (r["dataset"], r["problem_id"], r["sample"])  # noqa: E731
    fh.kill_trials(cmd, out / "samples.jsonl", key, random.Random(15), max_wait=60, report=report, cap=4 * fh.N_EVAL - 12)
    fh.finish(cmd)
    cmp = fh.compare(ref / "samples.jsonl", out / "samples.jsonl", key)
    fh.report("eval", report, cmp)
    assert report["kills"] >= 3 and cmp["lost"] == 0 and cmp["duplicated"] == 0 and report["duplicated"] == 0, \
        (report, cmp)
    assert (out / "samples.jsonl").read_bytes() == (ref / "samples.jsonl").read_bytes()  # byte for byte
    s_ref, s_out = (json.loads((d / "summary.json").read_text()) for d in (ref, out))
    assert s_out["overall"] == s_ref["overall"] and s_out["datasets"] == s_ref["datasets"]


def test_clone_survives_sigkill_at_random_points(tmp_path):
    trees = tmp_path / "search"
    fh.finish(fh.cmd("search", trees, fh.N_CLONE, 0))
    ref, out = tmp_path / "ref", tmp_path / "killed"
    fh.finish(fh.cmd("clone", ref, trees))
    report = {"kills": 0, "duplicated": 0, "partial": []}
    cmd = fh.cmd("clone", out, trees)
    fh.kill_trials(cmd, out / "cots.jsonl", lambda r: r["key"], random.Random(16), max_wait=60, report=report,
                 cap=fh.N_CLONE)
    fh.finish(cmd)
    cmp = fh.compare(ref / "cots.jsonl", out / "cots.jsonl", lambda r: r["key"])
    fh.report("clone", report, cmp)
    assert cmp["lost"] == 0 and cmp["duplicated"] == 0 and report["duplicated"] == 0
    for name in ("sft.jsonl", "rl.jsonl", "README.md", "traces.jsonl", "cots.jsonl"):
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name
