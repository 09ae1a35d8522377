"""Fault injection (issue 14) on storage: two writers on one run directory, a lock left by a killed holder,
each stage's claim of its directory, a full disk, a record without its final newline, a torn tail, a clone
that fails, a checkpoint cut by a kill."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pytest

import fault_helpers as fh


def test_two_writers_on_one_directory(tmp_path):
    """Two searches started together on one --out: one runs, the other stops at once with one error line
    naming the holder's pid; the directory ends with every tree once."""
    out = tmp_path / "run"
    procs = [subprocess.Popen(fh.cmd("search", out, 6, 0.02), env=fh.env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    loser = next(err for code, err in results if code == 1)
    winner = next(p for p, (code, _) in zip(procs, results) if code == 0)
    assert loser.count("error:") == 1 and "Traceback" not in loser, loser
    assert f"pid {winner.pid}" in loser and "another astro run" in loser, loser
    ids = [json.loads(line)["problem_id"] for line in fh.lines(out / "trees.jsonl")]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 6


def test_lock_is_released_when_the_holder_is_killed(tmp_path):
    from astro_reasoner.io import DirectoryBusy, lock_dir

    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from astro_reasoner.io import lock_dir; "
                               "l = lock_dir(sys.argv[1]); print('locked', flush=True); time.sleep(60)",
                               str(tmp_path)], env=fh.env(), stdout=subprocess.PIPE, text=True)
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
                              env=fh.env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        from search_helpers import problems

        from astro_reasoner.data import write_problems

        write_problems(tmp_path / "p.jsonl", problems(2))
        fh.finish(fh.cmd("search", tmp_path / "trees", 3, 0))
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
            start_run(SFTStageConfig(model=model, data="x.jsonl", output_dir=str(held)))
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
        cmd = fh.cmd("search", out, fh.N_SEARCH, 0)
        first = subprocess.run(cmd, env=fh.env(), capture_output=True, text=True, timeout=300)
        assert first.returncode == 1, first.stderr
        err = first.stderr.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and "No space left" in err[0], first.stderr
        assert "free some disk space" in err[0]
        kept = fh.lines(out / "trees.jsonl")
        assert 0 < len(kept) < fh.N_SEARCH
        assert (out / "trees.jsonl").read_bytes().endswith(b"\n")  # no torn record left behind
        assert not list(out.glob(".*.tmp"))  # no temp file left behind
        ballast.unlink()
        fh.finish(cmd)
        after = fh.lines(out / "trees.jsonl")
        assert after[:len(kept)] == kept and len({json.loads(x)["problem_id"] for x in after}) == fh.N_SEARCH
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_missing_final_newline_keeps_the_record(tmp_path):
    """A finished record without its newline (an editor, `head -c -1`) is kept on resume, not redone."""
    out = tmp_path / "run"
    fh.finish(fh.cmd("search", out, 4, 0))
    path = out / "trees.jsonl"
    data = path.read_bytes()
    path.write_bytes(data[:-1])
    from astro_reasoner.trees import completed_ids

    assert len(completed_ids(out)) == 4  # resume sees all four
    assert path.read_bytes() == data  # and the newline was put back, nothing cut
    fh.finish(fh.cmd("search", out, 4, 0))
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
    fh.finish(fh.cmd("search", trees, 4, 0))
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
            run_clone(trees, out, CloneConfig(), checker=checker)
        monkeypatch.setattr(io, "_write_temp", real)
        assert calls[-3:] == ["sft.jsonl", "rl.jsonl", "README.md"]
        assert not any((out / n).exists() for n in ("sft.jsonl", "rl.jsonl", "README.md"))
        assert not list(out.glob(".*.tmp"))
        stats = run_clone(trees, out, CloneConfig(), checker=checker)  # the same call, with space: all three
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
            fh.write_file(tmp_path / f"checkpoint-{step}" / name, text)
    cfg = SFTStageConfig(model="m", data="d.jsonl", output_dir=str(tmp_path))
    assert resume_checkpoint(cfg) == str(tmp_path / "checkpoint-2")
