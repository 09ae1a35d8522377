"""Fault injection (issue 14): SIGKILL at seeded random points, two writers on one directory, a full disk,
a record without its final newline.

Search, eval and clone run here in child processes with the scripted policy (deterministic, no torch), so
five kills per stage cost seconds; SFT, RL and the pipeline, which need the tiny model, are in
``test_fault_train_slow.py``. After the kills every stage is resumed to the end and compared with an
uninterrupted run: 0 records lost, 0 duplicated, every record that was on disk at a kill still there
byte for byte, and the final files equal to the uninterrupted run's.

``python tests/test_fault_kill.py STAGE OUT ...`` is the child (see ``child``).
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
TRIALS = 5
N_SEARCH, N_EVAL, N_CLONE = 16, 12, 40
TIMING = ("seconds", "wall", "finished", "started")  # fields that hold clock readings, not results


# ---- the child processes ----------------------------------------------------------------------------------

def child(argv: list[str]) -> int:
    """``search OUT N DELAY`` | ``eval OUT N DELAY`` | ``clone TREES OUT``; errors as the CLI prints them."""
    from astro_reasoner.errors import format_error

    try:
        stage, out = argv[0], argv[1]
        if stage == "search":
            from search_helpers import ScriptedPolicy, problems

            from astro_reasoner.checking import Checker
            from astro_reasoner.search import run_search

            with Checker(workers=1, warmup=False) as checker:
                run_search(problems(int(argv[2])), ScriptedPolicy(seed=1, delay=float(argv[3])), checker,
                           _search_cfg(), out)
        elif stage == "eval":
            from search_helpers import ScriptedPolicy

            from astro_reasoner.checking import Checker
            from astro_reasoner.evaluate import run_eval

            with Checker(workers=1, warmup=False) as checker:
                run_eval(ScriptedPolicy(seed=2, delay=float(argv[3])), _eval_cfg(argv[2]), out, checker,
                         model="scripted", progress=False)
        elif stage == "clone":
            from astro_reasoner.checking import Checker
            from astro_reasoner.clone import CloneConfig, run_clone

            with Checker(workers=1, warmup=False) as checker:
                run_clone(argv[2], out, CloneConfig(max_backtracks=2, search_traces=2, batch_size=1), checker)
        else:
            raise SystemExit(f"unknown stage {stage}")
    except Exception as exc:  # noqa: BLE001 - the CLI's own handling (astro_reasoner.cli.main)
        msg = format_error(exc)
        if msg is None:
            raise
        print(f"error: {msg}", file=sys.stderr)
        return 1
    return 0


def _search_cfg():
    from search_helpers import RESUME_CFG

    from astro_reasoner.search import SearchConfig

    return SearchConfig(**{**RESUME_CFG, "iterations": 4, "max_active_trees": 2})


def _eval_cfg(problem_file: str):
    from astro_reasoner.evaluate import EvalConfig

    return EvalConfig(datasets=[problem_file], n=4, k=2, batch_size=1, few_shot=0, bootstrap=0, max_tokens=64)


def _env() -> dict[str, str]:
    import astro_reasoner

    src = str(Path(astro_reasoner.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), src]), "OMP_NUM_THREADS": "1"}


def _cmd(*args) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *map(str, args)]


# ---- bookkeeping --------------------------------------------------------------------------------------------

def _lines(path: Path) -> list[bytes]:
    """Complete lines (a torn tail is not a record yet)."""
    if not path.exists():
        return []
    data = path.read_bytes()
    return data.split(b"\n")[:-1] if data else []


def _strip_clock(obj):
    """The record without clock readings (wall seconds differ between any two runs)."""
    if isinstance(obj, dict):
        return {k: _strip_clock(v) for k, v in obj.items() if not any(t in k for t in TIMING)}
    if isinstance(obj, list):
        return [_strip_clock(v) for v in obj]
    return obj


def _kill_trials(cmd: list[str], watched: Path, key, rng: random.Random, *, max_wait: float,
                 report: dict, cap: int) -> None:
    """Start ``cmd`` TRIALS times, SIGKILL it at a random moment (before record ``cap``), and check ``watched``
    after each kill:
    no key twice, and every complete line that was there before the kill still there, byte for byte."""
    for _ in range(TRIALS):
        before = _lines(watched)
        proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # A random moment in the run: after a random number of new records (0-3), plus a random delay,
        # so that kills land in start-up, between records and in the middle of one, whatever the load.
        target = min(len(before) + rng.randint(0, 3), cap)  # never the last records: the run is still going
        t_end = time.time() + max_wait
        while len(_lines(watched)) < target and proc.poll() is None and time.time() < t_end:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            report["kills"] += 1
        proc.wait()
        assert proc.returncode in (0, -signal.SIGKILL), proc.stderr.read().decode()
        proc.stderr.close()
        after = _lines(watched)
        assert after[:len(before)] == before, "a record that was on disk before the kill changed or went"
        keys = [key(json.loads(line)) for line in after]
        report["duplicated"] += len(keys) - len(set(keys))
        report["partial"].append(len(after))


def _finish(cmd: list[str]) -> None:
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def _compare(ref: Path, got: Path, key) -> dict:
    a = {key(json.loads(line)): _strip_clock(json.loads(line)) for line in _lines(ref)}
    b = [json.loads(line) for line in _lines(got)]
    keys = [key(r) for r in b]
    return {"lost": len(set(a) - set(keys)), "duplicated": len(keys) - len(set(keys)),
            "equal": {key(r): _strip_clock(r) for r in b} == a}


def _report(stage: str, report: dict, cmp: dict) -> None:
    print(f"\n[fault] {stage}: trials={TRIALS} kills={report['kills']} records on disk after each kill="
          f"{report['partial']} lost={cmp['lost']} duplicated={report['duplicated'] + cmp['duplicated']} "
          f"equal_to_uninterrupted={cmp['equal']}")


# ---- the tests ----------------------------------------------------------------------------------------------

def test_search_survives_sigkill_at_random_points(tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "killed"
    _finish(_cmd("search", ref, N_SEARCH, 0))
    report = {"kills": 0, "duplicated": 0, "partial": []}
    cmd = _cmd("search", out, N_SEARCH, 0.02)
    _kill_trials(cmd, out / "trees.jsonl", lambda r: r["problem_id"], random.Random(14), max_wait=60, report=report,
                 cap=N_SEARCH - 4)
    _finish(cmd)
    cmp = _compare(ref / "trees.jsonl", out / "trees.jsonl", lambda r: r["problem_id"])
    _report("search", report, cmp)
    assert report["kills"] >= 3 and cmp["lost"] == 0 and cmp["duplicated"] == 0 and report["duplicated"] == 0, \
        (report, cmp)
    # The scripted policy ignores the backend seed, so the trees must match whatever seeds the resumed
    # search passes (tree-for-tree equality with a seed-sensitive backend is issue 14 item 7, elsewhere).
    assert cmp["equal"]


def test_eval_survives_sigkill_at_random_points(tmp_path):
    from search_helpers import problems

    from astro_reasoner.data import write_problems

    data = tmp_path / "probs.jsonl"
    write_problems(data, problems(N_EVAL))
    ref, out = tmp_path / "ref", tmp_path / "killed"
    _finish(_cmd("eval", ref, data, 0))
    report = {"kills": 0, "duplicated": 0, "partial": []}
    cmd = _cmd("eval", out, data, 0.05)
    key = lambda r: (r["dataset"], r["problem_id"], r["sample"])  # noqa: E731
    _kill_trials(cmd, out / "samples.jsonl", key, random.Random(15), max_wait=60, report=report, cap=4 * N_EVAL - 12)
    _finish(cmd)
    cmp = _compare(ref / "samples.jsonl", out / "samples.jsonl", key)
    _report("eval", report, cmp)
    assert report["kills"] >= 3 and cmp["lost"] == 0 and cmp["duplicated"] == 0 and report["duplicated"] == 0, \
        (report, cmp)
    assert (out / "samples.jsonl").read_bytes() == (ref / "samples.jsonl").read_bytes()  # byte for byte
    s_ref, s_out = (json.loads((d / "summary.json").read_text()) for d in (ref, out))
    assert s_out["overall"] == s_ref["overall"] and s_out["datasets"] == s_ref["datasets"]


def test_clone_survives_sigkill_at_random_points(tmp_path):
    trees = tmp_path / "search"
    _finish(_cmd("search", trees, N_CLONE, 0))
    ref, out = tmp_path / "ref", tmp_path / "killed"
    _finish(_cmd("clone", ref, trees))
    report = {"kills": 0, "duplicated": 0, "partial": []}
    cmd = _cmd("clone", out, trees)
    _kill_trials(cmd, out / "cots.jsonl", lambda r: r["key"], random.Random(16), max_wait=60, report=report,
                 cap=N_CLONE)
    _finish(cmd)
    cmp = _compare(ref / "cots.jsonl", out / "cots.jsonl", lambda r: r["key"])
    _report("clone", report, cmp)
    assert cmp["lost"] == 0 and cmp["duplicated"] == 0 and report["duplicated"] == 0
    for name in ("sft.jsonl", "rl.jsonl", "README.md", "traces.jsonl", "cots.jsonl"):
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name


def test_two_writers_on_one_directory(tmp_path):
    """Two searches started together on one --out: one runs, the other stops at once with one error line
    naming the holder's pid; the directory ends with every tree once."""
    out = tmp_path / "run"
    procs = [subprocess.Popen(_cmd("search", out, 6, 0.02), env=_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    loser = next(err for code, err in results if code == 1)
    winner = next(p for p, (code, _) in zip(procs, results) if code == 0)
    assert loser.count("error:") == 1 and "Traceback" not in loser, loser
    assert f"pid {winner.pid}" in loser and "another astro run" in loser, loser
    ids = [json.loads(line)["problem_id"] for line in _lines(out / "trees.jsonl")]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 6


def test_lock_is_released_when_the_holder_is_killed(tmp_path):
    from astro_reasoner.io import DirectoryBusy, lock_dir

    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from astro_reasoner.io import lock_dir; "
                               "l = lock_dir(sys.argv[1]); print('locked', flush=True); time.sleep(60)",
                               str(tmp_path)], env=_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(DirectoryBusy, match=f"pid {holder.pid}"):
            lock_dir(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    with lock_dir(tmp_path) as lock:  # the kernel dropped the dead holder's lock: no stale lock file to clean
        assert lock.path.exists()
    lock_dir(tmp_path).release()


def test_each_stage_claims_its_directory(tmp_path, tiny_model_dir, capsys):
    """search, eval, clone and training refuse a directory another process holds (one error line, pid)."""
    from astro_reasoner.cli import main

    held = tmp_path / "held"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from astro_reasoner.io import lock_dir; "
                               "a = lock_dir(sys.argv[1]); b = lock_dir(sys.argv[1], '.trees.jsonl.lock'); "
                               "print('locked', flush=True); time.sleep(60)", str(held)],
                              env=_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        from search_helpers import problems

        from astro_reasoner.data import write_problems

        write_problems(tmp_path / "p.jsonl", problems(2))
        _finish(_cmd("search", tmp_path / "trees", 3, 0))
        model = str(tiny_model_dir)
        commands = {
            "search": ["search", "--problems", str(tmp_path / "p.jsonl"), "--model", model, "--out", str(held),
                       "--quiet", "iterations=1"],
            "eval": ["eval", "--model", model, "--out", str(held), "--datasets", str(tmp_path / "p.jsonl"),
                     "n=1", "k=1", "temperature=0"],
            "clone": ["clone", "--trees", str(tmp_path / "trees"), "--out", str(held)],
        }
        for name, argv in commands.items():
            capsys.readouterr()
            assert main(argv) == 1, name
            err = capsys.readouterr().err
            assert err.count("error:") == 1 and f"pid {holder.pid}" in err, (name, err)
        from astro_reasoner.io import DirectoryBusy
        from astro_reasoner.train.common import start_run
        from astro_reasoner.train import SFTStageConfig

        with pytest.raises(DirectoryBusy, match=f"pid {holder.pid}"):
            start_run(SFTStageConfig(model=model, data="x.jsonl", out_dir=str(held)))
    finally:
        holder.kill()
        holder.wait()


def test_full_disk_keeps_records_and_resumes(tmp_path):
    """ENOSPC on a real 1 MiB tmpfs (root only; else skipped -- the in-process ENOSPC tests in
    test_reliability_inputs.py run everywhere): one error line, no empty or torn output, records kept,
    and the same command finishes once space is freed."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        out = mnt / "run"
        ballast = mnt / "ballast"
        ballast.write_bytes(b"\0" * (200 << 10))  # leaves ~50 KiB: a few trees fit, then the disk is full
        cmd = _cmd("search", out, N_SEARCH, 0)
        first = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
        assert first.returncode == 1, first.stderr
        err = first.stderr.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and "No space left" in err[0], first.stderr
        assert "free some disk space" in err[0]
        kept = _lines(out / "trees.jsonl")
        assert 0 < len(kept) < N_SEARCH
        assert (out / "trees.jsonl").read_bytes().endswith(b"\n")  # no torn record left behind
        assert not list(out.glob(".*.tmp"))  # no temp file left behind
        ballast.unlink()
        _finish(cmd)
        after = _lines(out / "trees.jsonl")
        assert after[:len(kept)] == kept and len({json.loads(x)["problem_id"] for x in after}) == N_SEARCH
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_missing_final_newline_keeps_the_record(tmp_path):
    """A finished record without its newline (an editor, `head -c -1`) is kept on resume, not redone."""
    out = tmp_path / "run"
    _finish(_cmd("search", out, 4, 0))
    path = out / "trees.jsonl"
    data = path.read_bytes()
    path.write_bytes(data[:-1])
    from astro_reasoner.search.storage import completed_ids

    assert len(completed_ids(out)) == 4  # resume sees all four
    assert path.read_bytes() == data  # and the newline was put back, nothing cut
    _finish(_cmd("search", out, 4, 0))
    assert path.read_bytes() == data  # nothing redone


def test_drop_torn_tail_repairs_only_what_a_crash_leaves(tmp_path):
    from astro_reasoner.io import DataError, append_jsonl, done_ids, drop_torn_tail

    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"problem_id": "a"}\n{"problem_id": "b"')  # torn by a crash: cut
    assert drop_torn_tail(path) and path.read_bytes() == b'{"problem_id": "a"}\n'
    path.write_bytes(b'{"problem_id": "a"}\n{"problem_id": "b"}')  # complete, newline missing: kept
    assert not drop_torn_tail(path) and path.read_bytes() == b'{"problem_id": "a"}\n{"problem_id": "b"}\n'
    path.write_bytes(b'{"problem_id": "a"}')
    append_jsonl(path, [{"problem_id": "b"}])  # an append never glues two records onto one line
    assert done_ids(path) == {"a", "b"}
    for not_jsonl in (b'{\n  "problem_id": "a"\n}', b"hello world", b'{"a": 1}\nnot json\n{"b"'):
        path.write_bytes(not_jsonl)
        with pytest.raises(DataError):
            done_ids(path)
        assert path.read_bytes() == not_jsonl  # never truncated before the error


def test_clone_failure_writes_no_dataset_files(tmp_path, monkeypatch):
    """A clone that fails while writing its outputs (full disk) leaves no sft/rl/README at all."""
    from astro_reasoner import io
    from astro_reasoner.checking import Checker
    from astro_reasoner.clone import CloneConfig, run_clone

    trees = tmp_path / "search"
    _finish(_cmd("search", trees, 4, 0))
    real = io._write_temp
    calls = []

    def full_after_two(path, text):
        calls.append(path.name)
        if path.name == "README.md":  # sft.jsonl and rl.jsonl written to temp files, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, text)

    out = tmp_path / "clone"
    with Checker(workers=1, warmup=False) as checker:
        monkeypatch.setattr(io, "_write_temp", full_after_two)
        with pytest.raises(OSError, match="No space"):
            run_clone(trees, out, CloneConfig(), checker)
        monkeypatch.setattr(io, "_write_temp", real)
        assert calls[-3:] == ["sft.jsonl", "rl.jsonl", "README.md"]
        assert not any((out / n).exists() for n in ("sft.jsonl", "rl.jsonl", "README.md"))
        assert not list(out.glob(".*.tmp"))
        stats = run_clone(trees, out, CloneConfig(), checker)  # the same call, with space: all three
    assert stats["examples"] > 0 and all((out / n).exists() for n in ("sft.jsonl", "rl.jsonl", "README.md"))


def test_resume_skips_a_checkpoint_cut_by_a_kill(tmp_path):
    """A kill while the Trainer saves leaves a partial checkpoint-N (found by test_fault_train_slow.py):
    resume takes the latest complete one instead of failing on it."""
    from astro_reasoner.train.common import resume_checkpoint
    from astro_reasoner.train.config import SFTStageConfig

    for step, files in ((2, {"model.safetensors": "w", "trainer_state.json": '{"global_step": 2}'}),
                        (3, {"model.safetensors": "w", "trainer_state.json": '{"global_st'}),
                        (4, {"model.safetensors": "w"})):
        for name, text in files.items():
            _write_file(tmp_path / f"checkpoint-{step}" / name, text)
    cfg = SFTStageConfig(model="m", data="d.jsonl", out_dir=str(tmp_path))
    assert resume_checkpoint(cfg) == str(tmp_path / "checkpoint-2")


def _write_file(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


if __name__ == "__main__":
    sys.path.insert(0, str(TESTS))
    raise SystemExit(child(sys.argv[1:]))
