"""Audit Countdown texts: is each step's arithmetic true, and what does the model do after a check?

Usage: python scripts/countdown_audit.py FILE.jsonl [FILE.jsonl ...]

FILE is an SFT file (`sft.jsonl` of clone or warm start: the assistant turn is audited) or eval samples
(`samples.jsonl`: `text`, plus `numbers`, `target`, `backtracks` for the second table). It prints:
- steps: how many texts have every "a op b = c. Left: ..." step true (exact fractions), and the share of false
  steps. The answer checker only judges the boxed expression, so a path can be "correct" with false steps.
- attempts (eval samples only): each attempt's stated answer ("The answer is X.", the Countdown check step)
  is verified, then: how often the model backtracked after a correct vs a wrong first attempt, and the
  first -> second attempt transitions. Used for RESULTS.md (issue 16's miniature).
Model text is parsed by regular expressions and the task's safe parser only (no eval).
"""

from __future__ import annotations

import collections
import json
import re
import sys

from astro_reasoner.tasks.countdown import step_arithmetic, verify

STATED = re.compile(r"The answer is (.+?)\.\s*$", re.M)


def false_steps(text: str) -> tuple[int, int]:
    """(steps, false steps) among the text's ``a op b = c. Left:`` lines (the task's own step reader)."""
    truths = step_arithmetic(text)
    return len(truths), truths.count(False)


def stated_verdicts(row: dict) -> list[str]:
    numbers, target = tuple(row["numbers"]), int(row["target"])
    return [verify("\\boxed{" + m.group(1) + "}", numbers, target)[0].value for m in STATED.finditer(row["text"])]


def audit(path: str) -> None:
    rows = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    texts = [r["completion"][-1]["content"] if "completion" in r else r["text"] for r in rows]
    counts = [false_steps(t) for t in texts]
    sound = sum(1 for n, bad in counts if n and not bad)
    steps, bad = sum(n for n, _ in counts), sum(b for _, b in counts)
    print(f"{path}: {len(rows)} texts; every step true in {sound} ({100 * sound / max(len(rows), 1):.0f} %); "
          f"{bad} of {steps} steps false ({100 * bad / max(steps, 1):.0f} %)")
    if not rows or "backtracks" not in rows[0] or "numbers" not in rows[0]:
        return
    after = collections.Counter()
    moves = collections.Counter()
    for row in rows:
        verdicts = stated_verdicts(row)
        if not verdicts:
            continue
        after[(verdicts[0] == "correct", row["backtracks"] >= 1)] += 1
        if row["backtracks"] >= 1 and len(verdicts) >= 2:
            moves[(verdicts[0], verdicts[1])] += 1
    for ok in (True, False):
        total = after[(ok, True)] + after[(ok, False)]
        print(f"  first attempt {'correct' if ok else 'not correct'}: {total} outputs, backtracked after the "
              f"check in {after[(ok, True)]} ({100 * after[(ok, True)] / max(total, 1):.0f} %)")
    for (first, second), n in moves.most_common():
        print(f"  first {first} -> second {second}: {n}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for arg in sys.argv[1:]:
        audit(arg)
