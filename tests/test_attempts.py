"""evaluate/attempts.py: outputs read as attempts, each attempt's stated answer verified (issue 16's analysis of
what a model does after a reflection)."""

from __future__ import annotations

import pytest

from astro_reasoner.checking import Checker
from astro_reasoner.evaluate.attempts import attempts_markdown, attempts_report, split_attempts
from astro_reasoner.evaluate.behaviour_stats import behaviour_counts

DOUBT = ("But wait, does our solution hold up so far? Hmm… I'm not sure this is right; something in our "
         "solution might be wrong.")
RESTART = "Let's start over and solve the problem differently."
OK = "Let me check our work so far: are we solving the problem correctly? Everything we have so far seems to be correct."
RIGHT = "8 - 2 = 6. Left: 3, 4, 6.\n\n6 * 3 = 18. Left: 4, 18.\n\n18 + 4 = 22. Left: 22.\n\nCheck: (8 - 2) * 3 + 4 = 22. The answer is (8 - 2) * 3 + 4."
WRONG = "8 + 2 = 10. Left: 3, 4, 10.\n\n10 * 3 = 30. Left: 4, 30.\n\n30 - 4 = 26. Left: 26.\n\nCheck: (8 + 2) * 3 - 4 = 26. The answer is (8 + 2) * 3 - 4."
FINAL_RIGHT = "Therefore, the final answer is \\boxed{(8 - 2) * 3 + 4}."
FINAL_WRONG = "Therefore, the final answer is \\boxed{(8 + 2) * 3 - 4}."


def _sample(text: str) -> dict:
    return {"text": text, "gold": "22", "task": "countdown", "numbers": [8, 2, 3, 4], "target": 22,
            "answer": "model's answer, not the gold", **behaviour_counts(text)}


def test_an_output_is_cut_at_its_backtracks():
    text = f"{WRONG}\n\n{DOUBT}\n\n{RESTART}\n\n{RIGHT}\n\n{OK}\n\n{FINAL_RIGHT}"
    parts = split_attempts(text)
    assert len(parts) == 2 and "26" in parts[0] and "22" not in parts[0] and parts[0].endswith("be wrong.")
    assert parts[1].startswith(RESTART) and parts[1].endswith(FINAL_RIGHT)
    assert split_attempts(RIGHT) == [RIGHT] and split_attempts("") == [""]


def test_first_attempts_and_transitions_are_verified_by_the_task():
    samples = [
        _sample(f"{WRONG}\n\n{DOUBT}\n\n{RESTART}\n\n{RIGHT}\n\n{FINAL_RIGHT}"),   # wrong -> correct
        _sample(f"{RIGHT}\n\n{DOUBT}\n\n{RESTART}\n\n{WRONG}\n\n{FINAL_WRONG}"),   # correct -> wrong
        _sample(f"{RIGHT}\n\n{OK}\n\n{FINAL_RIGHT}"),                              # correct, kept
        _sample(f"{WRONG}\n\n{OK}\n\n{FINAL_WRONG}"),                              # wrong, kept
        _sample("8 + 2 = 10. Left: 3, 4, 10."),                                   # no answer stated
    ]
    assert [s["backtracks"] for s in samples] == [1, 1, 0, 0, 0]
    with Checker(workers=1) as checker:
        rep = attempts_report(samples, checker)
    first = rep["first_attempt"]
    assert first["correct"] == {"outputs": 2, "backtracked": 1, "backtrack_rate": 0.5}
    assert first["not_correct"] == {"outputs": 3, "backtracked": 1, "backtrack_rate": pytest.approx(1 / 3)}
    assert rep["transitions"] == {"correct->correct": 0, "correct->wrong": 1, "wrong->correct": 1,
                                  "wrong->wrong": 0}
    lines = attempts_markdown({"ASTRO-SFT": rep, "Direct-SFT": {**rep, "first_attempt": {
        "correct": {"outputs": 2, "backtracked": 0}, "not_correct": {"outputs": 3, "backtracked": 0}}}})
    assert len(lines) == 3 and lines[2].startswith("| ASTRO-SFT | 1 / 2 (50 %) | 1 / 3 (33 %) | 0 | 1 | 1 | 0 |")


def test_the_cli_prints_the_table(tmp_path):
    from typer.testing import CliRunner

    from astro_reasoner.cli import app
    from astro_reasoner.io import write_json, write_jsonl

    run = tmp_path / "eval-sft-astro"
    write_jsonl(run / "samples.jsonl", [_sample(f"{RIGHT}\n\n{DOUBT}\n\n{RESTART}\n\n{WRONG}\n\n{FINAL_WRONG}")])
    write_json(run / "summary.json", {"overall": {}, "datasets": {}})
    res = CliRunner().invoke(app, ["analyze", "attempts", str(tmp_path), "-o", str(tmp_path / "a.json")])
    assert res.exit_code == 0, res.output
    assert "| 1 / 1 (100 %) |" in res.output and (tmp_path / "a.json").exists()
