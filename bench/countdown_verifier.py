"""Countdown verifier cost on ordinary and hostile completions, against the checker's 5 s deadline.

The verifier runs in the calling process (``Checker`` hands countdown golds to it without a worker): this
measures, in one run, how long one verdict takes for
  (a) a solver-written solution (the common case),
  (b) a 10,000-character boxed expression (rejected by length before parsing),
  (c) a 10,000-character completion that ends in a valid box,
  (d) a 1 MB completion of nested braces and boxes,
  (e) parentheses nested 40 deep (rejected by depth),
and prints each as microseconds per check and as a fraction of the 5 s deadline.

Usage: python bench/countdown_verifier.py [--repeat 200]
"""

from __future__ import annotations

import argparse
import time

from astro_reasoner.tasks.countdown import verify
from astro_reasoner.tasks.countdown_solver import direct_solution

DEADLINE = 5.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args()
    nums, target = (8, 2, 3, 4), 22
    cases = {
        "(a) solver-written solution": direct_solution(nums, target),
        "(b) 10k-char boxed expression": "\\boxed{" + "+".join(["1"] * 5000) + "}",
        "(c) 10k-char completion, valid box": "x" * 10_000 + " \\boxed{(8-2)*3+4}",
        "(d) 1 MB of braces and boxes": "\\boxed{" * 50_000 + "{" * 300_000 + "}" * 300_000,
        "(e) parentheses 40 deep": "\\boxed{" + "(" * 40 + "8" + ")" * 40 + "-2*3*4}",
    }
    print(f"{'case':40s} {'verdict':12s} {'us/check':>10s} {'of deadline':>12s}")
    for name, text in cases.items():
        repeat = args.repeat if len(text) < 100_000 else max(1, args.repeat // 20)
        t0 = time.perf_counter()
        for _ in range(repeat):
            verdict, _, _ = verify(text, nums, target)
        per = (time.perf_counter() - t0) / repeat
        print(f"{name:40s} {verdict.value:12s} {per * 1e6:10.1f} {per / DEADLINE:12.2e}")


if __name__ == "__main__":
    main()
