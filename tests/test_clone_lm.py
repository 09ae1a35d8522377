"""Rewrite, self-evaluation and Best-of-N through a real backend (the tiny random model, hf backend).

The tiny model writes random text, so every rewrite is rejected (the template is kept) and every
self-evaluation vote is "unknown"/"no": these runs exercise the fallbacks and the counts end to end.
"""

from __future__ import annotations

import json

import pytest
from clone_helpers import build_tree
from test_clone_linearize import known_tree

from astro_reasoner.backends import make_backend
from astro_reasoner.checking import Checker
from astro_reasoner.clone import BestOfNConfig, CloneConfig, run_best_of_n, run_clone
from astro_reasoner.clone.selfeval import parse_vote
from astro_reasoner.io import read_jsonl


@pytest.fixture(scope="module")
def tiny_policy(tiny_model_dir):
    policy = make_backend("hf", str(tiny_model_dir), batch_size=8)
    yield policy
    policy.close()


@pytest.fixture(scope="module")
def checker():
    with Checker(workers=1) as ch:
        yield ch


def write_trees(path, trees):
    path.write_text("".join(json.dumps(t.to_json()) + "\n" for t in trees))
    return path


def test_rewrite_rejections_fall_back_to_the_template(tmp_path, tiny_policy, checker):
    trees = write_trees(tmp_path / "trees.jsonl", [known_tree(f"p{i}") for i in range(3)])
    cfg = CloneConfig(max_backtracks=2, direct_traces=0, search_traces=1, rewrite=True, rewrite_max_tokens=24,
                      batch_size=2)
    stats = run_clone(trees, tmp_path / "out", cfg, policy=tiny_policy, checker=checker)
    assert stats["rewrite_attempted"] == 3 and stats["rewrite_accepted"] == 0
    assert sum(stats["rewrite_reasons"].values()) == 3
    assert stats["examples"] == 3 and stats["length_unit"] == "tokens"
    cots = list(read_jsonl(tmp_path / "out" / "cots.jsonl"))
    assert all(c["cot"] == c["template"] and not c["rewritten"] for c in cots)
    assert "rewrite rejected for 3 of 3" in "\n".join(stats["messages"])
    assert "LM rewrite accepted: 0/3" in (tmp_path / "out" / "README.md").read_text()


def test_selfeval_votes_are_stored_and_filter(tmp_path, tiny_policy, checker):
    trees = write_trees(tmp_path / "trees.jsonl", [known_tree(f"p{i}") for i in range(2)])
    cfg = CloneConfig(max_backtracks=1, selfeval=True, votes=3, selfeval_max_tokens=4)
    stats = run_clone(trees, tmp_path / "out", cfg, policy=tiny_policy, checker=checker)
    recs = list(read_jsonl(tmp_path / "out" / "selfeval.jsonl"))  # one vote set per correct terminal
    assert [list(r["votes"]) for r in recs] == [["3"], ["3"]]
    votes = [r["votes"]["3"] for r in recs]
    assert all(len(v) == 3 and set(v) <= {"yes", "no", "unknown"} for v in votes)
    passed = sum(v.count("yes") >= 2 for v in votes)
    assert stats["selfeval_judged"] == 2 and stats["selfeval_kept"] == passed
    assert stats["no_approved"] == 2 - passed and sum(stats["votes"].values()) == 6


def test_parse_vote():
    cases = {"Yes": "yes", "**Yes.** It is fine": "yes", "The answer is: no": "no", "Not correct.": "no",
             "incorrect": "no", "correct!": "yes", "I cannot tell": "unknown", "": "unknown", "Nope": "no",
             "yes or no? no": "yes"}
    for text, vote in cases.items():
        assert parse_vote(text) == vote, text


def test_best_of_n_respects_the_tree_budget(tmp_path, tiny_policy, checker):
    trees = [build_tree([(0, "So \\boxed{7}.", "7")], gold="7", problem_id=f"b{i}",
                        stats={"generated_tokens": 40}) for i in range(2)]
    trees.append(build_tree([(0, "So \\boxed{7}.", "7")], gold="7", problem_id="nobudget", stats={}))
    write_trees(tmp_path / "trees.jsonl", trees)
    cfg = BestOfNConfig(model="tiny", max_tokens=8, batch=2, max_samples=64)
    stats = run_best_of_n(tmp_path / "trees.jsonl", tmp_path / "bon", cfg, policy=tiny_policy, checker=checker)
    assert stats["problems"] == 2 and stats["no_budget"] == 1
    recs = list(read_jsonl(tmp_path / "bon" / "bestofn.jsonl"))
    for r in recs:
        assert 0 < r["tokens"] <= r["budget"] == 40 and r["samples"] >= 5  # <= 8 tokens a sample
    assert stats["solved"] == sum(r["found"] for r in recs)  # random text: almost surely 0
    again = run_best_of_n(tmp_path / "trees.jsonl", tmp_path / "bon", cfg, policy=tiny_policy, checker=checker)
    assert again["samples"] == stats["samples"]  # resumed: nothing drawn twice
    assert len(list(read_jsonl(tmp_path / "bon" / "bestofn.jsonl"))) == 2


def test_cli_best_of_n_takes_the_model_from_the_search_summary(tmp_path, tiny_model_dir, capsys):
    from astro_reasoner.cli import main

    search = tmp_path / "s"  # as the README: `astro baseline best-of-n --trees runs/s --out runs/bon`
    search.mkdir()
    write_trees(search / "trees.jsonl", [build_tree([(0, "So \\boxed{123456789}.", "123456789")], gold="123456789",
                                                    problem_id="b0", stats={"generated_tokens": 16})])
    argv = ["baseline", "best-of-n", "--trees", str(search), "--out", str(tmp_path / "bon"), "max_tokens=8",
            "batch=2"]
    assert main(argv) == 1  # no --model and no summary.json: says where the model comes from
    assert "model is not set (nor named by the search's summary.json)" in capsys.readouterr().err
    (search / "summary.json").write_text(json.dumps({"trees": 1, "model": str(tiny_model_dir), "backend": "hf"}))
    assert main(argv) == 0
    assert f"model: {tiny_model_dir} (from the search's summary.json" in capsys.readouterr().err
    sft = tmp_path / "bon" / "sft.jsonl"
    assert sft.read_text() == ""  # random text never finds 123456789: nothing to train on
    assert main(["sft", "--data", str(sft), "--model", str(tiny_model_dir), "--out", str(tmp_path / "sft")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no examples (the file is empty)" in err[0]


def test_cli_clone_with_rewrite_and_selfeval(tmp_path, tiny_model_dir, capsys):
    from astro_reasoner.cli import main

    write_trees(tmp_path / "trees.jsonl", [known_tree("c0")])
    code = main(["clone", "--trees", str(tmp_path / "trees.jsonl"), "--out", str(tmp_path / "out"),
                 "rewrite=true", "selfeval=true", "votes=2", "min_votes=1", f"model={tiny_model_dir}",
                 "rewrite_max_tokens=16", "selfeval_max_tokens=4", "-b", "batch_size=4"])
    captured = capsys.readouterr()
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["selfeval_judged"] == 1 and sum(stats["votes"].values()) == 2
    assert stats["rewrite_attempted"] == stats["traces"] and stats["rewrite_accepted"] == 0
    assert ("rewrite rejected for" in captured.err) == bool(stats["traces"])
    assert code == (0 if stats["examples"] else 1)
