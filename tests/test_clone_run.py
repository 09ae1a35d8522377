"""run_clone and `astro clone` end to end with the real checker: outputs, bad inputs, resume, TRL loading."""

from __future__ import annotations

import json
import random

import pytest
from clone_helpers import build_tree, random_tree
from test_clone_linearize import known_tree

from astro_reasoner.checking import Checker
from astro_reasoner.cli import main
from astro_reasoner.clone import CloneConfig, run_clone
from astro_reasoner.config import ConfigError
from astro_reasoner.io import DataError, read_jsonl
from astro_reasoner.types import CotRecord, Verdict


@pytest.fixture(scope="module")
def checker():
    with Checker(workers=1) as ch:
        yield ch


def write_trees(path, trees, extra_lines=()):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(t.to_json()) for t in trees] + list(extra_lines)
    path.write_text("\n".join(lines) + ("\n" if lines else ""))
    return path


def cfg(**kw) -> CloneConfig:
    c = CloneConfig(**kw)
    return c


def test_run_clone_writes_trl_ready_data(tmp_path, checker):
    trees = [random_tree(random.Random(i), problem_id=f"p{i}") for i in range(12)]
    write_trees(tmp_path / "search" / "trees.jsonl", trees)
    stats = run_clone(tmp_path / "search", tmp_path / "out", cfg(max_backtracks="1:0.5,2:0.5"), checker=checker)
    assert stats["examples"] == stats["traces"] > 12 and stats["roundtrip_rate"] == 1.0
    mix = stats["mix"]  # ASTRO §3.3: per problem one k = 0 and up to three k >= 1 solutions
    assert mix["k0"] == mix["problems"] == 12 and mix["k0_per_problem"] == 1.0
    assert mix["k0"] + mix["k_ge_1"] == stats["examples"] and 1.0 < mix["k_ge_1_per_problem"] <= 3.0
    assert stats["recheck_dropped"] == 0 and stats["rl_prompts"] == 12
    sft = list(read_jsonl(tmp_path / "out" / "sft.jsonl"))
    for row in sft:  # every exported CoT re-checks CORRECT
        assert checker.check(trees[int(row["problem_id"][1:])].answer, row["completion"][0]["content"]).correct
        assert [m["role"] for m in row["prompt"]] == ["system", "user"]  # zero-shot training prompt
    assert sum(stats["backtrack_distribution"].values()) == len(sft)
    from datasets import load_dataset

    ds = load_dataset("json", data_files=str(tmp_path / "out" / "sft.jsonl"), split="train")
    assert set(ds.column_names) >= {"prompt", "completion", "problem_id", "mode", "n_backtracks"}
    rl = load_dataset("json", data_files=str(tmp_path / "out" / "rl.jsonl"), split="train")
    assert rl.column_names[:3] == ["problem_id", "prompt", "answer"] and len(rl) == 12
    card = (tmp_path / "out" / "README.md").read_text()
    assert "config_name: sft" in card and "## Backtracks per example" in card and "round trip" in card
    assert "## SFT mix" in card and f"k = 0 examples: {mix['k0']}" in card
    traces = list(read_jsonl(tmp_path / "out" / "traces.jsonl"))
    assert len(traces) == stats["traces"] and traces[0]["moves"][0][0] == "step"


def test_train_loaders_accept_the_export(tmp_path, checker):
    from astro_reasoner.train.grpo import load_rl_rows
    from astro_reasoner.train.sft import load_sft_rows

    write_trees(tmp_path / "t" / "trees.jsonl", [known_tree()])
    run_clone(tmp_path / "t", tmp_path / "out", cfg(), checker=checker)
    assert load_sft_rows(tmp_path / "out" / "sft.jsonl")[0]["completion"][0]["role"] == "assistant"
    assert load_rl_rows(tmp_path / "out" / "rl.jsonl")[0]["answer"] == "10"


def test_unusable_trees_are_counted_not_fatal(tmp_path, checker):
    good = known_tree("good")
    no_correct = build_tree([(0, "x = 3, \\boxed{3}", "3")], gold="10", problem_id="nocorrect")
    no_wrong = build_tree([(0, "a = 10", None), (1, "\\boxed{10}", "10")], gold="10", problem_id="nowrong")
    broken = build_tree([(0, "a", None)], problem_id="broken")
    broken.nodes[1].parent = 7
    path = tmp_path / "trees.jsonl"
    write_trees(path, [good, no_correct, no_wrong], [json.dumps(broken.to_json()), '{"torn": '])
    path.write_text(path.read_text().rstrip("\n"))  # a torn last line, as a killed search leaves
    stats = run_clone(path, tmp_path / "out", cfg(), checker=checker)
    assert (stats["valid_trees"], stats["malformed"], stats["duplicate_ids"]) == (3, 1, 0)
    # good: 1 direct + 3 search traces; nowrong: its direct trace only
    assert (stats["no_correct"], stats["no_wrong"], stats["examples"]) == (1, 1, 5)
    text = "\n".join(stats["messages"])
    for needle in ("broken tree", "no correct terminal", "no wrong terminal"):
        assert needle in text, needle
    assert stats["rl_prompts"] == 3


@pytest.mark.parametrize("bad, message", [
    ("{not json", r"trees\.jsonl:2: not valid JSON"),
    (json.dumps({"problem_id": "x"}), r"trees\.jsonl:2: not a search tree record"),
    (None, r"trees\.jsonl:2: problem id 'good' already read from .*trees\.jsonl:1"),
])
def test_a_bad_line_in_the_middle_is_one_error_naming_file_and_line(tmp_path, checker, bad, message):
    # The same policy as every JSONL reader (io.jsonl_rows): only a torn last line may be dropped.
    good = known_tree("good")
    path = tmp_path / "trees.jsonl"
    path.write_text("\n".join([json.dumps(good.to_json()), bad or json.dumps(good.to_json()),
                               json.dumps(known_tree("other").to_json())]) + "\n")
    with pytest.raises(DataError, match=message):
        run_clone(path, tmp_path / "out", cfg(), checker=checker)


def test_empty_and_missing_trees(tmp_path, checker):
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "trees.jsonl").write_text("")
    stats = run_clone(tmp_path / "e", tmp_path / "out", cfg(), checker=checker)
    assert stats["examples"] == 0 and "empty" in stats["messages"][0]
    assert not (tmp_path / "out" / "sft.jsonl").exists()  # no empty dataset file when nothing is exported
    with pytest.raises(DataError, match="no trees.jsonl"):
        run_clone(tmp_path / "nowhere", tmp_path / "out2", cfg(), checker=checker)


def test_recheck_drops_a_cot_whose_answer_is_not_correct(tmp_path, checker):
    # The search marked "\boxed{ten}" correct (say, by a lenient checker); the real checker disagrees.
    tree = build_tree([(0, "So \\boxed{ten}.", "10")], gold="10")
    tree.nodes[1].step, tree.nodes[1].answer = "So \\boxed{ten}.", "ten"
    write_trees(tmp_path / "trees.jsonl", [tree])
    stats = run_clone(tmp_path / "trees.jsonl", tmp_path / "out", cfg(), checker=checker)
    assert stats["recheck_dropped"] == 1 and stats["examples"] == 0
    assert "did not re-check CORRECT" in "\n".join(stats["messages"])


def test_rerun_resumes_and_refuses_other_settings(tmp_path, checker):
    write_trees(tmp_path / "trees.jsonl", [known_tree()])
    first = run_clone(tmp_path / "trees.jsonl", tmp_path / "out", cfg(max_backtracks=1), checker=checker)
    again = run_clone(tmp_path / "trees.jsonl", tmp_path / "out", cfg(max_backtracks=1), checker=checker)
    assert first == again and len(list(read_jsonl(tmp_path / "out" / "cots.jsonl"))) == first["traces"] == 4
    for line in read_jsonl(tmp_path / "out" / "cots.jsonl"):  # typed records: they read back to the same JSON
        rec = CotRecord.from_json(line)
        assert rec.verdict is Verdict.CORRECT and rec.kept and rec.to_json() == line
    with pytest.raises(ConfigError, match="other settings \\(max_backtracks: 1 -> 2;"):
        run_clone(tmp_path / "trees.jsonl", tmp_path / "out", cfg(max_backtracks=2), checker=checker)
    stats = run_clone(tmp_path / "trees.jsonl", tmp_path / "out", cfg(max_backtracks=2), checker=checker,
                      overwrite=True)
    assert stats["backtrack_distribution"] == {"0": 1, "2": 3}


def test_cli_clone_modes_and_errors(tmp_path, capsys):
    write_trees(tmp_path / "s" / "trees.jsonl", [known_tree(f"p{i}") for i in range(3)])
    assert main(["clone", "--trees", str(tmp_path / "s"), "--out", str(tmp_path / "a"),
                 "max_backtracks=1:0.5,3:0.5", "search_traces=2"]) == 0
    assert main(["clone", "--trees", str(tmp_path / "s"), "--out", str(tmp_path / "d"), "--mode", "direct"]) == 0
    assert main(["clone", "--trees", str(tmp_path / "s"), "--out", str(tmp_path / "n"), "--no-phrases"]) == 0
    direct = list(read_jsonl(tmp_path / "d" / "sft.jsonl"))
    assert len(direct) == 3 and {r["n_backtracks"] for r in direct} == {0} and {r["mode"] for r in direct} == {"direct"}
    bare = [r["completion"][0]["content"] for r in read_jsonl(tmp_path / "n" / "sft.jsonl") if r["n_backtracks"]]
    assert bare and all("[backtrack to" in t and "wait" not in t.lower() for t in bare)
    astro = list(read_jsonl(tmp_path / "a" / "sft.jsonl"))
    assert {r["n_backtracks"] for r in astro} <= {0, 1, 3} and len(astro) >= 6
    out = capsys.readouterr()
    assert "SFT examples" in out.out
    assert main(["clone", "--trees", str(tmp_path / "s"), "--out", str(tmp_path / "x"), "merge=middle"]) == 1
    assert "merge='middle'" in capsys.readouterr().err
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "trees.jsonl").write_text("")
    assert main(["clone", "--trees", str(tmp_path / "e"), "--out", str(tmp_path / "y")]) == 1
    assert "empty" in capsys.readouterr().err


def test_push_to_hub_fails_with_a_clear_message_offline(tmp_path, checker, monkeypatch):
    from astro_reasoner.clone.export import push_to_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    write_trees(tmp_path / "trees.jsonl", [known_tree()])
    run_clone(tmp_path / "trees.jsonl", tmp_path / "out", cfg(), checker=checker)
    with pytest.raises(DataError, match="push to the Hub .*failed.*files are intact"):
        push_to_hub(tmp_path / "out", "someone/astro-data")
