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


def test_each_stated_answer_is_verified():
    row = {"text": TEXT, "numbers": [7, 6, 1], "target": 35}
    assert audit.stated_verdicts(row) == ["wrong", "correct"]
