"""``run_search_distributed`` on a real Ray cluster started here (issue 15): a head (no CPUs) and two worker
nodes, each its own ``ray start`` process tree, on this machine.

With the deterministic scripted policy (seeds come from problem ids, never from the worker), the cluster's
trees equal a single process's; a worker SIGKILLed after its first tree arrived has the rest of its shard
retried on a new actor and every problem lands in trees.jsonl exactly once.

The cluster is torn down by killing the process groups of the ``ray start`` commands started here, not with
``ray stop`` (which kills every Ray process on the machine, including other users' clusters).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # not the real model, but 3 `ray start`s + ~10 actor start-ups: 36 s on 2 busy cores

ray = pytest.importorskip("ray")

import astro_reasoner  # noqa: E402
import search_helpers  # noqa: E402
from search_helpers import A, RESUME_CFG, ScriptedPolicy, problems, scripted_spec  # noqa: E402

from astro_reasoner.checking import Checker  # noqa: E402
from astro_reasoner.search import SearchConfig, run_search  # noqa: E402
from astro_reasoner.search.distributed import BackendSpec, run_search_distributed  # noqa: E402
from astro_reasoner.trees import load_trees, tree_content, trees_path  # noqa: E402

SRC = Path(astro_reasoner.__file__).resolve().parents[1]  # the worktree's src/ must win on the workers too


def _ray_cli() -> str | None:
    beside = Path(sys.executable).with_name("ray")  # the venv's, even when the venv is not activated
    return str(beside) if beside.exists() else shutil.which("ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _group_alive(pgid: int) -> bool:
    """Any live (non-zombie) process left in group ``pgid``? (``killpg(pgid, 0)`` also counts zombies, and
    the daemons of ``ray start`` are reparented to init, which may take a while to reap them.)"""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _kill_group(pgid: int) -> None:
    for sig, grace in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not _group_alive(pgid):
            return


def _refresh_ray_auth_state() -> None:
    """Make this process's Ray see RAY_AUTH_MODE as it is now. A local ``ray.init`` earlier in the same
    process (tests/test_search_cli.py) turns token auth on for it: RAY_AUTH_MODE=token in os.environ and in
    Ray's cached C++ config, which setting the variable back does not refresh; every actor of a cluster
    started without auth then dies before its first task (CI, 2026-12-02)."""
    try:
        from ray._private.authentication_test_utils import reset_auth_token_state
    except ImportError:  # another Ray version: nothing cached to refresh, or a place we do not know
        return
    reset_auth_token_state()


@pytest.fixture(scope="module")
def cluster():
    """The address of a fresh cluster: ``ray start --head --num-cpus 0`` plus two ``--num-cpus 1`` nodes."""
    from ray import cloudpickle

    cli = _ray_cli()
    if cli is None:
        pytest.skip("the `ray` command-line tool is not installed: this test starts a real cluster with `ray start`")
    temp = tempfile.mkdtemp(prefix="rc", dir="/tmp")  # short: Ray's unix socket paths must stay under 107 chars
    # RAY_AUTH_MODE=disabled: with a token in ~/.ray, Ray 2.5x turns token auth on for the head only, and the
    # worker nodes and the driver are then refused.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
           "RAY_AUTH_MODE": "disabled"}
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE",)}
    os.environ["RAY_AUTH_MODE"] = "disabled"
    _refresh_ray_auth_state()
    port, groups = _free_port(), []

    def ray_start(*args: str) -> None:
        # A new session per `ray start`: its daemons (gcs, raylet, agents, workers) keep its process group.
        proc = subprocess.Popen([cli, "start", "--disable-usage-stats", *args], env=env, cwd=temp,
                                start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        groups.append(proc.pid)
        out, _ = proc.communicate(timeout=120)
        if proc.returncode:
            pytest.fail(f"ray start {' '.join(args)} failed ({proc.returncode}):\n{out[-3000:]}")

    try:
        ray_start("--head", f"--port={port}", "--num-cpus=0", "--include-dashboard=false", f"--temp-dir={temp}",
                  f"--ray-client-server-port={_free_port()}", f"--dashboard-port={_free_port()}")
        for _ in range(2):
            ray_start(f"--address=127.0.0.1:{port}", "--num-cpus=1")
        cloudpickle.register_pickle_by_value(search_helpers)  # the workers cannot import the tests directory
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
        yield f"127.0.0.1:{port}"
    finally:
        ray.shutdown()
        for pgid in reversed(groups):
            _kill_group(pgid)
        for mod in (search_helpers, sys.modules[__name__]):
            try:
                cloudpickle.unregister_pickle_by_value(mod)
            except ValueError:
                pass
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
        _refresh_ray_auth_state()
        shutil.rmtree(temp, ignore_errors=True)


class PidLoggingPolicy(ScriptedPolicy):
    """ScriptedPolicy that writes the questions it is asked to ``<log_dir>/<pid>.log`` (so the test knows which
    worker process searches which problem) and sleeps ``delay`` per call (so a run lasts long enough to kill)."""

    def __init__(self, seed: int, delay: float, log_dir: str):
        super().__init__(seed=seed, delay=delay)
        self.log = Path(log_dir) / f"{os.getpid()}.log"
        self.log.touch()

    def generate(self, prompts, params):
        with self.log.open("a") as f:
            f.writelines(p.split(A)[0].removeprefix(search_helpers.Q) + "\n" for p in prompts)
        return super().generate(prompts, params)


@dataclass(frozen=True)
class PidLoggingSpec(BackendSpec):
    def build(self):
        return PidLoggingPolicy(int(self.model), self.options["delay"], self.options["log_dir"])


def _questions(log: Path) -> set[str]:
    return set(log.read_text().splitlines())


class KillOnFirstTree:
    """A Reporter that SIGKILLs the worker process which searched the first tree to arrive."""

    def __init__(self, log_dir: Path, probs):
        self.log_dir, self.question = log_dir, {p.id: p.problem for p in probs}
        self.killed: tuple[int, str] | None = None  # (pid, id of the first tree)

    def start(self, total, done, correct) -> None:
        pass

    def tree(self, tree) -> None:
        if self.killed is None:
            q = self.question[tree.problem_id]
            (log,) = [p for p in self.log_dir.glob("*.log") if q in _questions(p)]
            os.kill(int(log.stem), signal.SIGKILL)
            self.killed = (int(log.stem), tree.problem_id)

    def wave(self, counters) -> None:
        pass


def _one_process(seed: int, probs, cfg: SearchConfig, out: Path) -> list[str]:
    with Checker(workers=1) as checker:
        run_search(probs, out, cfg, policy=ScriptedPolicy(seed=seed), checker=checker)
    return _contents(out)


def _contents(out: Path) -> list[str]:
    return [tree_content(t) for t in sorted(load_trees(trees_path(out)), key=lambda t: t.problem_id)]


def test_cluster_two_workers_match_one_process(cluster, tmp_path):
    cfg, probs = SearchConfig(**{**RESUME_CFG, "early_stop_correct": 1, "early_stop_wrong": 2}), problems(10)
    expected = _one_process(2, probs, cfg, tmp_path / "one")
    summary = run_search_distributed(probs, scripted_spec(2), cfg, tmp_path / "ray", workers=2, address=cluster)
    assert summary["workers"] == 2 and summary["trees"] == 10
    assert _contents(tmp_path / "ray") == expected

    # The shards really ran in two processes (one per worker node).
    logs = tmp_path / "pids"
    logs.mkdir()
    spec = PidLoggingSpec("scripted", "2", {"delay": 0.0, "log_dir": str(logs)})
    run_search_distributed(probs, spec, cfg, tmp_path / "ray2", workers=2, address=cluster)
    assert _contents(tmp_path / "ray2") == expected
    asked = [_questions(p) for p in logs.glob("*.log")]
    assert len(asked) == 2 and not asked[0] & asked[1] and asked[0] | asked[1] == {p.problem for p in probs}


def test_cluster_killed_worker_is_retried(cluster, tmp_path, caplog):
    cfg, probs = SearchConfig(**RESUME_CFG), problems(12)
    expected = _one_process(3, probs, cfg, tmp_path / "one")
    logs = tmp_path / "pids"
    logs.mkdir()
    spec = PidLoggingSpec("scripted", "3", {"delay": 0.05, "log_dir": str(logs)})  # ~2-3 s per shard
    killer = KillOnFirstTree(logs, probs)
    with caplog.at_level(logging.WARNING, logger="astro_reasoner.search.distributed"):
        summary = run_search_distributed(probs, spec, cfg, tmp_path / "ray", workers=2, address=cluster,
                                         reporter=killer)
    assert killer.killed is not None
    pid, first = killer.killed
    ids = [t.problem_id for t in load_trees(trees_path(tmp_path / "ray"))]
    assert sorted(ids) == sorted(p.id for p in probs), "every problem exactly once"
    assert summary["trees"] == 12
    assert _contents(tmp_path / "ray") == expected

    # One retry, on a new process, of exactly the killed shard's problems whose trees had not arrived.
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 1, retries
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    question = {p.id: p.problem for p in probs}
    shard = {p.id for p in probs[[p.id for p in probs].index(first) % 2::2]}  # worker i gets todo[i::2]
    named = set(re.findall(r"\bp\d+\b", retries[0].split("problems", 1)[1]))
    assert named and first not in named and named <= shard, retries[0]
    by_pid = {int(p.stem): _questions(p) for p in logs.glob("*.log")}
    assert len(by_pid) == 3 and pid in by_pid
    (new,) = [q for p, q in by_pid.items() if p != pid and q & {question[i] for i in shard}]
    assert new == {question[i] for i in named}


def test_cluster_retries_exhausted_names_problems_then_resume(cluster, tmp_path):
    """max_retries=0: the kill fails the run with the unsearched problems named; what arrived stays written
    and a plain re-run (resume) completes it, still with every problem once and the one-process trees."""
    from astro_reasoner.backends.base import BackendError

    cfg, probs = SearchConfig(**RESUME_CFG), problems(12)
    expected = _one_process(4, probs, cfg, tmp_path / "one")
    logs, out = tmp_path / "pids", tmp_path / "ray"
    logs.mkdir()
    spec = PidLoggingSpec("scripted", "4", {"delay": 0.05, "log_dir": str(logs)})
    killer = KillOnFirstTree(logs, probs)
    with pytest.raises(BackendError, match="died 1 times .*problems not searched: p") as err:
        run_search_distributed(probs, spec, cfg, out, workers=2, address=cluster, reporter=killer, max_retries=0)
    first = killer.killed[1]
    named = set(re.findall(r"\bp\d+\b", str(err.value).split("not searched:", 1)[1]))
    written = [t.problem_id for t in load_trees(trees_path(out))]
    assert first in written and first not in named and named and not named & set(written)

    run_search_distributed(probs, scripted_spec(4), cfg, out, workers=2, address=cluster)
    assert _contents(out) == expected  # every id once (sorted contents equal, ids unique in `expected`)
