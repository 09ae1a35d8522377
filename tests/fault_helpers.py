"""What the fault-injection tests (issue 14) share: the child process that runs search, eval or clone with
the scripted policy (``python tests/fault_helpers.py STAGE OUT ...``), kill trials at seeded random points,
and the comparison with an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent
TRIALS = 5
N_SEARCH, N_EVAL, N_CLONE = 16, 12, 40
TIMING = ("seconds", "wall", "finished", "started")  # fields that hold clock readings, not results


# ---- the child processes ----------------------------------------------------------------------------------

def child(argv: list[str]) -> int:
    """``search OUT N DELAY`` | ``eval OUT N DELAY`` | ``clone TREES OUT``; errors as the CLI prints them."""
    from astro_reasoner.cli import report_error

    try:
        stage, out = argv[0], argv[1]
        if stage == "search":
            from search_helpers import ScriptedPolicy, problems

            from astro_reasoner.checking import Checker
            from astro_reasoner.search import run_search

            with Checker(workers=1, warmup=False) as checker:
                run_search(problems(int(argv[2])), out, search_cfg(),
                           policy=ScriptedPolicy(seed=1, delay=float(argv[3])), checker=checker)
        elif stage == "eval":
            from search_helpers import ScriptedPolicy

            from astro_reasoner.checking import Checker
            from astro_reasoner.evaluate import run_eval

            with Checker(workers=1, warmup=False) as checker:
                run_eval(None, out, eval_cfg(argv[2]), policy=ScriptedPolicy(seed=2, delay=float(argv[3])),
                         checker=checker, model="scripted", progress=False)
        elif stage == "clone":
            from astro_reasoner.checking import Checker
            from astro_reasoner.clone import CloneConfig, run_clone

            with Checker(workers=1, warmup=False) as checker:
                run_clone(argv[2], out, CloneConfig(max_backtracks=2, search_traces=2, batch_size=1), checker=checker)
        else:
            raise SystemExit(f"unknown stage {stage}")
    except Exception as exc:  # noqa: BLE001 - the CLI's own handling (astro_reasoner.cli.main)
        return report_error(exc, [stage])
    return 0


def search_cfg():
    from search_helpers import RESUME_CFG

    from astro_reasoner.search import SearchConfig

    return SearchConfig(**{**RESUME_CFG, "iterations": 4, "max_active_trees": 2})


def eval_cfg(problem_file: str):
    from astro_reasoner.evaluate import EvalConfig

    return EvalConfig(datasets=[problem_file], n=4, k=2, batch_size=1, few_shot=0, bootstrap=0, max_tokens=64)


def env() -> dict[str, str]:
    import astro_reasoner

    src = str(Path(astro_reasoner.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), src]), "OMP_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def cmd(*args) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *map(str, args)]


# ---- bookkeeping --------------------------------------------------------------------------------------------

def lines(path: Path) -> list[bytes]:
    """Complete lines (a torn tail is not a record yet)."""
    if not path.exists():
        return []
    data = path.read_bytes()
    return data.split(b"\n")[:-1] if data else []


def strip_clock(obj):
    """The record without clock readings (wall seconds differ between any two runs)."""
    if isinstance(obj, dict):
        return {k: strip_clock(v) for k, v in obj.items() if not any(t in k for t in TIMING)}
    if isinstance(obj, list):
        return [strip_clock(v) for v in obj]
    return obj


def kill_trials(cmd: list[str], watched: Path, key, rng: random.Random, *, max_wait: float,
                 report: dict, cap: int) -> None:
    """Start ``cmd`` TRIALS times, SIGKILL it at a random moment (before record ``cap``), and check ``watched``
    after each kill:
    no key twice, and every complete line that was there before the kill still there, byte for byte."""
    for _ in range(TRIALS):
        before = lines(watched)
        # A random moment in the run: after a random number of new records (0-3), plus a random delay,
        # so that kills land in start-up, between records and in the middle of one, whatever the load.
        target = min(len(before) + rng.randint(0, 3), cap)  # never the last records: the run is still going
        killed, code, err = kill_when(cmd, lambda t=target: len(lines(watched)) >= t, rng, max_wait=max_wait,
                                      poll=0.005, max_delay=0.3)
        report["kills"] += killed
        assert code in (0, -signal.SIGKILL), err
        after = lines(watched)
        assert after[:len(before)] == before, "a record that was on disk before the kill changed or went"
        keys = [key(json.loads(line)) for line in after]
        report["duplicated"] += len(keys) - len(set(keys))
        report["partial"].append(len(after))


def kill_when(cmd: list[str], reached, rng: random.Random, *, max_wait: float, poll: float,
              max_delay: float) -> tuple[bool, int, str]:
    """Start ``cmd``; once ``reached()`` (or the process ended, or ``max_wait`` s passed) wait a random
    0-``max_delay`` s more and SIGKILL it if still running. (killed?, exit code, stderr)."""
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t_end = time.time() + max_wait
    while not reached() and proc.poll() is None and time.time() < t_end:
        time.sleep(poll)
    time.sleep(rng.uniform(0.0, max_delay))
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    return killed, proc.returncode, err[-3000:]


def finish(cmd: list[str]) -> None:
    done = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def compare(ref: Path, got: Path, key) -> dict:
    a = {key(json.loads(line)): strip_clock(json.loads(line)) for line in lines(ref)}
    b = [json.loads(line) for line in lines(got)]
    keys = [key(r) for r in b]
    return {"lost": len(set(a) - set(keys)), "duplicated": len(keys) - len(set(keys)),
            "equal": {key(r): strip_clock(r) for r in b} == a}


def report(stage: str, report: dict, cmp: dict) -> None:
    print(f"\n[fault] {stage}: trials={TRIALS} kills={report['kills']} records on disk after each kill="
          f"{report['partial']} lost={cmp['lost']} duplicated={report['duplicated'] + cmp['duplicated']} "
          f"equal_to_uninterrupted={cmp['equal']}")


def write_file(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)



if __name__ == "__main__":
    sys.path.insert(0, str(TESTS))
    raise SystemExit(child(sys.argv[1:]))
