"""scripts/countdown_audit.py: step arithmetic and stated answers of Countdown texts (RESULTS.md's audit)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location("countdown_audit",
                                              Path(__file__).parents[1] / "scripts" / "countdown_audit.py")
audit = importlib.util.module_from_spec(spec)
spec.loader.exec_module(audit)

TEXT = ("7 * 6 = 35. Left: 1, 35.\n\n35 - 1 = 34. Left: 34.\n\nCheck: 7 * 6 - 1 = 41. The answer is 7 * 6 - 1.\n\n"
        "Let's go back.\n\n6 - 1 = 5. Left: 5, 7.\n\n7 * 5 = 35. Left: 35.\n\nCheck: 7 * (6 - 1) = 35. "
        "The answer is 7 * (6 - 1).")


def test_false_steps_are_counted_exactly():
    assert audit.false_steps(TEXT) == (4, 1)  # only "7 * 6 = 35" is false
    assert audit.false_steps("8 / 0 = 1. Left: 1.") == (1, 1)  # division by zero is a false step, not a crash
    assert audit.false_steps("no steps here") == (0, 0)


def test_eval_samples_get_the_attempts_table(tmp_path, capsys):
    import json

    from astro_reasoner.evaluate.behaviour_stats import behaviour_counts

    text = TEXT.replace("Let's go back.", "But wait, are we solving the problem correctly so far? Hmm… I'm not "
                        "sure this is right.\n\nLet's start over and solve the problem differently.")
    row = {"text": text, "numbers": [7, 6, 1], "target": 35, "gold": "35", "task": "countdown",
           **behaviour_counts(text)}
    assert row["backtracks"] == 1
    path = tmp_path / "samples.jsonl"
    path.write_text(json.dumps(row) + "\n")
    audit.audit(str(path))
    out = capsys.readouterr().out
    assert "1 of 4 steps false" in out  # "7 * 6 = 35"; the check lines are not operation steps
    assert "| 0 / 0 (–)" not in out and "| 1 / 1 (100 %) | 0 | 0 | 1 | 0 |" in out  # wrong -> correct
