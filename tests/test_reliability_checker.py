"""The answer checker against hostile model output (issue 14, item 4).

Fast: a code-like answer is never CORRECT; a 5 MB completion does not block the caller beyond the deadline
(its answer is extracted in a worker); the verdict cache is bounded by bytes.
Slow: >= 10,000 generated hostile completions (40 families): no crash, no side effect, every check within
deadline + 1 s including extraction, and bounded parent memory. It prints the figures.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from astro_reasoner.checking import Checker
from astro_reasoner.types import Verdict

DEADLINE = 1.5


@pytest.fixture(scope="module")
def checker():
    with Checker(workers=1, deadline=DEADLINE, warmup=False) as c:
        yield c


@pytest.mark.parametrize("answer", [
    "The answer is 2*__import__('os').system('true') or 2",
    "The answer is \\boxed{2*__import__('os').getcwd() or 2}",
    "The answer is 2*os.system('true') or 2",
    "The answer is (lambda: 2)()",
    "The answer is 2 if exec('x=1') else 2",
    "\\boxed{().__class__.__base__ or 2}",
    "\\boxed{Symbol('x').subs(x, 2)}",  # math-verify: CORRECT against 2 (found by the hostile generator)
])
def test_code_like_answers_are_never_correct(checker, answer):
    result = checker.check("2", answer)
    # Rejected before math-verify (which judged the first one CORRECT against 2), not left to its timeout.
    assert result.verdict is Verdict.UNPARSEABLE and "program code" in result.reason, result


def test_plain_answers_still_pass_the_code_filter(checker):
    for gold, text in (("2", "so \\boxed{2}"), ("\\frac{1}{2}", "\\boxed{\\dfrac12}"), ("(1, 2)", "\\boxed{(1,2)}"),
                       ("x^2 + 1", "The answer is x^2+1."), ("\\text{open}", "\\boxed{\\text{open}}")):
        assert checker.check(gold, text).verdict is Verdict.CORRECT, (gold, text)


@pytest.mark.parametrize("text", ["{" * 5_000_000, "\\boxed{" * 700_000 + "2" + "}" * 700_000,
                                  "x " * 2_500_000 + "\\boxed{2}"])
def test_huge_completions_do_not_block_the_caller(checker, text):
    t0 = time.monotonic()
    result = checker.check("2", text)
    assert time.monotonic() - t0 < DEADLINE + 1.0, result
    if text.endswith("\\boxed{2}"):
        assert result.verdict is Verdict.CORRECT  # a long but ordinary completion is still judged


def test_verdict_cache_is_bounded_by_bytes():
    with Checker(workers=1, warmup=False, cache_bytes=50_000) as c:
        c.check_batch([(str(i) + "1" * 200, "\\boxed{" + str(i) + "2" * 200 + "}") for i in range(400)])  # numeric
        for i in range(2):  # answers over max_answer_chars are WRONG at once, and not cached
            c.check("2", "\\boxed{" + str(i) + "x" * 1_000_000 + "}")
        assert 0 < c._cache_used <= 50_000
        assert sum(len(a) + len(b) for a, b in c._cache) <= 50_000


# ---- the hostile generator ------------------------------------------------------------------------------------

def hostile(n: int, seed: int, sentinel: Path) -> list[str]:
    """``n`` hostile completions from 40 families (our list: what a broken or adversarial model might write,
    and attacks on the parsers underneath: LaTeX, sympy, Python, the shell, format strings, JSON)."""
    rng = random.Random(seed)
    s = str(sentinel)
    num = lambda: str(rng.randint(-10**6, 10**6))  # noqa: E731
    fams = [
        lambda: "{" * rng.randint(10_000, 300_000),
        lambda: "}" * rng.randint(10_000, 300_000) + "\\boxed{" + num() + "}",
        lambda: "\\boxed{" * rng.randint(100, 20_000) + num() + "}" * rng.randint(0, 20_000),
        lambda: "\\boxed{" + "\\frac{1}{" * rng.randint(50, 400) + "2" + "}" * 400 + "}",
        lambda: "\\boxed{" + "9" * rng.randint(1000, 20_000) + "}",
        lambda: "\\boxed{" + "^".join(["9"] * rng.randint(3, 40)) + "}",
        lambda: "\\boxed{10^{10^{10^{" + num() + "}}}}",
        lambda: "\\boxed{" + str(rng.randint(10**4, 10**7)) + "!}",
        lambda: f"The answer is 2*__import__('os').system('touch {s}') or 2",
        lambda: f"\\boxed{{__import__('subprocess').call(['touch', '{s}'])}}",
        lambda: f"The answer is $(touch {s})` touch {s}`; touch {s}",
        lambda: "\\boxed{{0.__class__.__mro__}}" + "{problem}" * rng.randint(1, 50),
        lambda: "\\boxed{%s%s%n%x}" * rng.randint(1, 100),
        lambda: "\\boxed{" + "".join(chr(rng.randint(0xD800, 0xDFFF)) for _ in range(rng.randint(1, 50))) + "}",
        lambda: "\\boxed{" + "\x00" * rng.randint(1, 100) + num() + "}",
        lambda: "\\boxed{" + "".join(chr(rng.randint(0, 31)) for _ in range(50)) + "}",
        lambda: "\\boxed{\u202e" + num() + "\u202d}",
        lambda: " " * rng.randint(10_000, 200_000) + "\\boxed{ " + num() + " }",
        lambda: "\\" * rng.randint(1, 5000) + "boxed{" + num() + "}",
        lambda: "\\boxed{\\left(" * rng.randint(10, 500) + "1" + "}",
        lambda: "\\boxed{\\def\\x{\\x\\x}\\x}",
        lambda: f"\\boxed{{\\input{{{s}}}\\write18{{touch {s}}}}}",
        lambda: "\\boxed{Symbol('x').subs(x, 2)}",
        lambda: "\\boxed{\\begin{pmatrix}" + "&".join(["1"] * rng.randint(100, 3000)) + "\\end{pmatrix}}",
        lambda: "\\boxed{" + "+".join(["x"] * rng.randint(100, 3000)) + "}",
        lambda: "\\boxed{" + "(" * rng.randint(100, 5000) + ")" * rng.randint(0, 5000) + "}",
        lambda: "\\boxed{\\sqrt{" * rng.randint(10, 300) + "2" + "}" * 300 + "}",
        lambda: "\\boxed{" + num() + "\\%}" + " But wait, \\boxed{" * rng.randint(1, 2000),
        lambda: "The answer is " + "x" * rng.randint(301, 100_000),
        lambda: "#### " + num() + "\n" * rng.randint(1, 10_000) + "####",
        lambda: "\\boxed{" + rng.choice(["inf", "-inf", "nan", "\\infty", "oo", "zoo", "1/0", "0/0"]) + "}",
        lambda: "\\boxed{" + "1e" + str(rng.randint(300, 10**6)) + "}",
        lambda: "\\boxed{" + "0." + "3" * rng.randint(100, 10_000) + "}",
        lambda: "\\boxed{" + rng.choice(["\\int_0^\\infty e^{-x^2}dx", "\\sum_{n=1}^\\infty 1/n^2",
                                          "\\lim_{x\\to0}\\frac{\\sin x}{x}", "\\prod_{k=1}^{10^9} k"]) + "}",
        lambda: "\\boxed{" + "\\mathbb{" * rng.randint(1, 300) + "R" + "}" * 300 + "}",
        lambda: "\\boxed{" + "\U0001F600" * rng.randint(1, 5000) + "}",
        lambda: "\\boxed{" + "".join(rng.choice("{}\\$^_&#%~") for _ in range(rng.randint(10, 5000))) + "}",
        lambda: '\\boxed{"}\\n{"id": 0, "verdict": "correct"}\\n' + num() + "}",
        lambda: "\\boxed{" + num() + "}" * rng.randint(1, 3) + " " + "\\fbox{" + num(),
        lambda: "\\boxed{" + "x_{" * rng.randint(10, 1000) + "1" + "}" * 1000 + "}",
    ]
    out = [rng.choice(fams)() for _ in range(n)]
    return out


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.slow  # ~10,000 checks, a few of them up to the deadline: minutes on 2 cores
def test_ten_thousand_hostile_answers(tmp_path, monkeypatch):
    """Two checkers in two threads, one worker each (as a search and an eval sharing the machine): the
    strings that run into the deadline keep both cores busy instead of one, which halves the test's time."""
    import threading

    sentinel = tmp_path / "pwned"
    monkeypatch.chdir(tmp_path)
    texts = hostile(10_000, seed=14, sentinel=sentinel)
    golds = ["2", "\\frac{1}{2}", "x^2+1", "(1, 2)", "10"]
    env_before, files_before = dict(os.environ), sorted(os.listdir(tmp_path))
    halves = [list(range(0, len(texts), 2)), list(range(1, len(texts), 2))]
    worst, verdicts, restarts, healthy, errors = [0.0, 0.0], {}, [0, 0], [None, None], []
    lock = threading.Lock()
    with Checker(workers=1, deadline=DEADLINE, warmup=False) as c0, \
            Checker(workers=1, deadline=DEADLINE, warmup=False) as c1:
        checkers = (c0, c1)
        for c in checkers:
            c.check("2", "\\boxed{1}")
        rss0 = _rss_mb()

        def run(j: int) -> None:
            try:
                for i in halves[j]:
                    t0 = time.monotonic()
                    result = checkers[j].check(golds[i % len(golds)], texts[i])  # must not raise
                    worst[j] = max(worst[j], time.monotonic() - t0)
                    with lock:
                        verdicts[result.verdict.value] = verdicts.get(result.verdict.value, 0) + 1
                healthy[j] = checkers[j].check("2", "so \\boxed{2}")
                restarts[j] = checkers[j]._pool.restarts if checkers[j]._pool else 0
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(j,)) for j in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rss1 = _rss_mb()
    assert not errors, errors
    print(f"\n[hostile] checks={len(texts)} verdicts={verdicts} max_check_s={max(worst):.2f} deadline={DEADLINE} "
          f"worker_restarts={sum(restarts)} parent_rss_mb={rss0:.0f}->{rss1:.0f} load={os.getloadavg()[0]:.1f}")
    assert sum(verdicts.values()) == len(texts)
    assert all(h.verdict is Verdict.CORRECT for h in healthy)  # the pools still work afterwards
    assert verdicts.get("correct", 0) == 0  # no hostile string is a right answer (seeded: none is one by chance)
    # deadline + 1 s, on a machine that is not overloaded: with more than two runnable processes per core
    # (measured: load 14 on 2 cores) the parent itself waits seconds for a core, whatever the checker does.
    overloaded = os.getloadavg()[0] > 2 * (os.cpu_count() or 1)
    assert max(worst) < DEADLINE + (3.0 if overloaded else 1.0), (worst, os.getloadavg())
    assert rss1 - rss0 < 150  # bounded: the caches and buffers, not the 10,000 inputs
    assert not sentinel.exists() and sorted(os.listdir(tmp_path)) == files_before
    assert dict(os.environ) == env_before
