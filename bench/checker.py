"""Answer-checker throughput: plain single-process math-verify vs ``astro_reasoner.checking.Checker``.

Two workloads on the same pairs, in one run:
  (a) distinct: every MATH-500 gold against a short solution boxing (i) the gold in a varying equivalent form and
      (ii) another problem's gold -- up to 1,000 pairs, each (gold, answer) pair once;
  (b) stream: a search-like stream -- a few problems, each checked again and again against model answers
      drawn from a small pool (the gold in three forms, four wrong answers), every solution text different.
Plain = ``verify(parse("$" + gold + "$"), parse(completion))`` per pair, as users call math-verify (and TRL's
``accuracy_reward`` does). Also reported: how often the two disagree, with examples.

Usage: python bench/checker.py [--data ../shared/data/math500.jsonl] [--workers N] [--stream 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FILLER = ("We work through the problem one step at a time.\n\n"
          "First we write down what is given and simplify, using $a + b = c$ where needed.\n\n"
          "Checking the computation {k} once more, the result stays the same.\n\n")


def variant(gold: str, k: int) -> str:
    """The gold in one of several equivalent spellings (some need math-verify, some only normalization)."""
    if re.fullmatch(r"-?\d+", gold.strip()):
        n = int(gold)
        return [gold, f"{n:,}", f"{n}.0", f"\\${n}", f"\\frac{{{2 * n}}}{{2}}"][k % 5]
    return [gold, gold.replace("\\frac", "\\dfrac"), " " + re.sub(r",(?!\d{3})", ", ", gold) + " "][k % 3]


def solution(answer: str, k: int) -> str:
    return FILLER.format(k=k) + f"So the final answer is $\\boxed{{{answer}}}$."


def workload_distinct(golds: list[str]) -> list[tuple[str, str]]:
    n = len(golds)
    pairs = [(g, solution(variant(g, i), i)) for i, g in enumerate(golds)]
    pairs += [(g, solution(golds[(i + 1 + i % 7) % n], i)) for i, g in enumerate(golds)]
    out, seen = [], set()  # MATH-500 repeats golds ("3" 19 times): keep each (gold, boxed answer) once
    for gold, text in pairs:
        key = (gold, text.rsplit("\\boxed", 1)[1])
        if key not in seen:
            seen.add(key)
            out.append((gold, text))
    return out


def workload_stream(golds: list[str], n_checks: int, problems: int = 25, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    chosen = rng.sample(range(len(golds)), problems)
    pools = {}
    for p in chosen:
        wrong = rng.sample([g for g in golds if g != golds[p]], 4)
        pools[p] = [variant(golds[p], k) for k in range(3)] + wrong
    weights = [8, 4, 2, 6, 3, 2, 1]  # a model repeats a few answers much more often than others
    out = []
    for k in range(n_checks):
        p = chosen[k % problems]
        out.append((golds[p], solution(rng.choices(pools[p], weights)[0], k)))
    return out


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_plain(pairs):
    from math_verify import parse, verify

    t0, c0 = time.perf_counter(), time.process_time()
    verdicts = [bool(verify(parse("$" + g + "$"), parse(c))) for g, c in pairs]
    return verdicts, time.perf_counter() - t0, time.process_time() - c0


def run_ours(pairs, workers, batch):
    """Verdicts, wall seconds (warm pool), wall seconds including start-up, CPU seconds (this process plus the
    workers, without the zygote's start-up), and which step decided how many checks."""
    from astro_reasoner.checking import Checker

    t0 = time.perf_counter()
    with Checker(workers=workers) as checker:
        checker.check("1", "\\boxed{x}")  # waits for the worker processes to start
        pids = [w.pid for w in checker._get_pool().workers]
        cpu0 = sum(map(_proc_cpu, pids)) + time.process_time()
        t1 = time.perf_counter()
        verdicts = []
        for i in range(0, len(pairs), batch):
            verdicts += [r.correct for r in checker.check_batch(pairs[i:i + batch])]
        t2 = time.perf_counter()
        cpu = sum(map(_proc_cpu, pids)) + time.process_time() - cpu0
        stats = dict(checker.stats)
    return verdicts, t2 - t1, t2 - t0, cpu, stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "math500.jsonl"))
    ap.add_argument("--workers", type=int, default=None,
                    help="checker worker processes (default: half the cores, 1-4)")
    ap.add_argument("--stream", type=int, default=2000, help="checks in the search-like stream")
    ap.add_argument("--batch", type=int, default=64, help="pairs per check_batch call")
    ap.add_argument("--repeat", type=int, default=2, help="rounds per workload; the best round counts")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args()
    golds = [json.loads(line)["answer"] for line in open(args.data, encoding="utf-8") if line.strip()]
    import math_verify  # noqa: F401 - import time is not part of either measurement

    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; workers: {args.workers or 'default'}")
    report = {}
    for name, pairs in (("distinct", workload_distinct(golds)), ("stream", workload_stream(golds, args.stream))):
        # Best of --repeat rounds, alternating the two, so a load spike from other jobs on the machine does
        # not decide the ratio. Each round of ours uses a new Checker (cold caches, new worker processes).
        best_plain = best_ours = (float("inf"),)
        for _ in range(args.repeat):
            plain, *t = run_plain(pairs)
            best_plain = min(best_plain, tuple(t))
            ours, *t, stats = run_ours(pairs, args.workers, args.batch)
            best_ours = min(best_ours, tuple(t))
        (t_plain, cpu_plain), (t_ours, t_total, cpu_ours) = best_plain, best_ours
        diff = [(g, c.rsplit("boxed", 1)[-1][:40], p, o) for (g, c), p, o in zip(pairs, plain, ours) if p != o]
        report[name] = row = {
            "pairs": len(pairs), "plain_checks_per_s": len(pairs) / t_plain,
            "ours_checks_per_s": len(pairs) / t_ours, "ours_incl_startup_checks_per_s": len(pairs) / t_total,
            "speedup": t_plain / t_ours, "speedup_incl_startup": t_plain / t_total,
            "cpu_seconds_plain": cpu_plain, "cpu_seconds_ours": cpu_ours, "cpu_ratio": cpu_plain / cpu_ours,
            "correct_plain": sum(plain), "correct_ours": sum(ours), "disagreements": len(diff), "paths": stats}
        print(f"[{name}] {len(pairs)} pairs | plain math-verify {row['plain_checks_per_s']:.0f} checks/s "
              f"({t_plain:.1f} s) | ours {row['ours_checks_per_s']:.0f} checks/s ({t_ours:.2f} s; "
              f"{row['ours_incl_startup_checks_per_s']:.0f}/s incl. start-up) | speed-up {row['speedup']:.1f}x "
              f"({row['speedup_incl_startup']:.1f}x incl. start-up) | CPU s {cpu_plain:.1f} vs {cpu_ours:.1f} "
              f"({row['cpu_ratio']:.1f}x less)")
        print(f"    correct: plain {sum(plain)}, ours {sum(ours)}; disagreements {len(diff)}; decided by {stats}")
        for g, tail, p, o in diff[:8]:
            print(f"    differs: gold {g!r} answer ...boxed{tail!r}: plain={p} ours={o}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
