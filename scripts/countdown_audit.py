"""Audit Countdown texts: is each step's arithmetic true, and what does the model do after a check?

Usage: python scripts/countdown_audit.py FILE.jsonl [FILE.jsonl ...]

FILE is an SFT file (`sft.jsonl` of clone or warm start: the assistant turn is audited) or eval samples
(`samples.jsonl`: `text`, plus `numbers`, `target`, `backtracks` for the second table). It prints:
- steps: how many texts have every "a op b = c. Left: ..." step true (exact fractions), and the share of false
  steps. The answer checker only judges the boxed expression, so a path can be "correct" with false steps.
- attempts (eval samples only): ``evaluate/attempts.py`` (as ``astro analyze attempts``): each attempt's stated
  answer verified, how often the model backtracked after a correct vs a not-correct first attempt, and the
  first -> last stated answer transitions. Used for RESULTS.md (issue 16's miniature).
Model text is parsed by regular expressions and the task's safe parser only (no eval).
"""

from __future__ import annotations

import json
import sys

from astro_reasoner.checking import Checker
from astro_reasoner.evaluate.attempts import attempts_markdown, attempts_report
from astro_reasoner.tasks.countdown import step_arithmetic


def false_steps(text: str) -> tuple[int, int]:
    """(steps, false steps) among the text's ``a op b = c. Left:`` lines (the task's own step reader)."""
    truths = step_arithmetic(text)
    return len(truths), truths.count(False)


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
    with Checker(workers=1) as checker:  # the library's reading of attempts (astro analyze attempts)
        print("\n".join(attempts_markdown({path: attempts_report(rows, checker)})) or "  no backtracks")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for arg in sys.argv[1:]:
        audit(arg)
