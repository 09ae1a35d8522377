"""A pool of math-verify worker processes with a hard wall-clock deadline per check.

Written by hand because no library does the one thing needed: kill and replace *one* stuck worker while the
others keep going (``ProcessPoolExecutor`` cannot cancel a running task; ``multiprocessing.Pool`` would have to
be torn down as a whole, and both re-import the caller's ``__main__`` under spawn). Workers are forked by a
warmed-up zygote process (:mod:`._worker`) and speak JSON lines over sockets; the parent never uses signals
for timing, so this works from any thread. POSIX only (socket fd passing).
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from pathlib import Path

from ..errors import CheckerError  # noqa: F401 (defined in errors.py; re-exported here)
from ..types import Verdict

STARTUP_TIMEOUT = 120.0  # seconds for the zygote to import math-verify (slow on a loaded machine)
AFFINITY_SCAN = 64  # queued jobs looked at, and golds remembered, per worker when picking its next job
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the directory that holds astro_reasoner/


class _Zygote:
    """The process that forks workers (see :mod:`._worker`)."""

    def __init__(self, timeout: int, memory_mb: int, warmup: bool):
        self.ctl, child = socket.socketpair()
        env = dict(os.environ, OMP_NUM_THREADS="1")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "astro_reasoner.checking._worker", str(child.fileno()), str(os.getpid()),
             str(timeout), str(memory_mb), str(int(warmup))],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.stderr, env=env,
            pass_fds=[child.fileno()])
        child.close()
        self.started = time.monotonic()
        self.ready = False
        self.pending: deque[socket.socket] = deque()  # forks asked for, pid not read yet

    def wait_ready(self) -> None:
        left = self.started + STARTUP_TIMEOUT - time.monotonic()
        if not self.ready and select.select([self.ctl], [], [], max(0.0, left))[0]:
            self.ready = self.ctl.recv(1) == b"R"
        if not self.ready:
            raise CheckerError("the answer checker's worker process did not start:\n" + self.stderr_tail()
                               + f"\nIs math-verify installed in this Python ({sys.executable})? "
                               "pip install math-verify")

    def _request(self) -> socket.socket:
        mine, theirs = socket.socketpair()
        try:
            socket.send_fds(self.ctl, [b"W"], [theirs.fileno()])
        except OSError:
            mine.close()
            raise
        finally:
            theirs.close()
        return mine

    def fork_worker(self) -> "_Worker":
        """A new worker: one forked ahead of time by ``prefork`` if any (replies come in request order)."""
        mine = self.pending.popleft() if self.pending else self._request()
        reply = self.ctl.recv(4, socket.MSG_WAITALL)
        if len(reply) != 4:
            mine.close()
            raise ConnectionError("the checker's zygote process died")
        return _Worker(mine, struct.unpack("!i", reply)[0])

    def prefork(self) -> None:
        """Ask for one spare worker now, without waiting: the replacement for a worker killed at its deadline
        is then ready at once (a fork on a loaded machine took ~1 s, which the next check would wait for)."""
        if not self.pending:
            self.pending.append(self._request())

    def stderr_tail(self) -> str:
        try:
            self.stderr.seek(0)
            return self.stderr.read().decode("utf-8", "replace")[-2000:] or "(no output)"
        except (OSError, ValueError):
            return "(no output)"

    def close(self) -> None:
        for sock in self.pending:
            sock.close()
        self.pending.clear()
        self.ctl.close()  # the zygote exits on EOF; its workers die with it (PR_SET_PDEATHSIG)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


class _Worker:
    def __init__(self, sock: socket.socket, pid: int):
        self.sock, self.pid = sock, pid
        self.buf = b""
        self.job: int | None = None  # index into the current batch
        self.deadline = 0.0
        self.golds: OrderedDict[str, None] = OrderedDict()  # golds sent lately (they sit in its parse cache)

    def send(self, job: int, payload: bytes, deadline: float) -> bool:
        self.job, self.deadline = job, time.monotonic() + deadline
        try:
            self.sock.sendall(payload)
            return True
        except OSError:
            return False

    def read_lines(self) -> list[dict] | None:
        """Complete JSON lines available now; None at EOF (the worker died)."""
        try:
            chunk = self.sock.recv(1 << 16)
        except OSError:
            chunk = b""
        if not chunk:
            return None
        self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]

    def close(self, *, kill: bool) -> None:
        if kill:  # only while it is known to be alive (no EOF seen), so the pid cannot have been reused
            try:
                os.kill(self.pid, signal.SIGKILL)
            except OSError:
                pass
        self.sock.close()


def _pick(queue: deque[int], w: _Worker, golds: Sequence[str | None]) -> int:
    """The next job for ``w``: preferably one whose gold ``w`` has parsed lately (our choice: search, eval
    and GRPO check many answers per gold, and parsing is most of math-verify's cost)."""
    for k in range(min(len(queue), AFFINITY_SCAN)):
        if golds[queue[k]] is not None and golds[queue[k]] in w.golds:
            i = queue[k]
            del queue[k]
            break
    else:
        i = queue.popleft()
    if golds[i] is None:
        return i
    w.golds[golds[i]] = None
    w.golds.move_to_end(golds[i])
    if len(w.golds) > AFFINITY_SCAN:
        w.golds.popitem(last=False)
    return i


class WorkerPool:
    """``run(jobs)`` checks (gold, answer) pairs in parallel; a job still running after ``deadline`` seconds
    gets verdict "wrong" (reason "timeout") and its worker is killed and replaced. Not thread-safe: the
    :class:`~.checker.Checker` serializes calls.
    """

    def __init__(self, workers: int, deadline: float, memory_mb: int, inner_timeout: int | None = None,
                 warmup: bool = True):
        self.size, self.deadline, self.memory_mb, self.warmup = workers, deadline, memory_mb, warmup
        # By default math-verify's own alarms (whole seconds) fire before our hard deadline, so a slow sympy
        # call usually ends with a clean False instead of a killed worker.
        self.inner_timeout = inner_timeout or max(1, int(deadline // 2))
        self.zygote: _Zygote | None = None
        self.workers: list[_Worker] = []
        self.restarts = 0  # workers killed or lost and replaced
        self.sent = 0  # job ids handed out so far
        self.owner = os.getpid()

    def start(self) -> None:
        """Start the zygote (it imports math-verify in the background; ``run`` waits for it).

        A dead zygote (killed, or gone with the thread that started it: PR_SET_PDEATHSIG is per thread) is
        replaced; its workers died with it and show up as crashes, whose jobs are retried.
        """
        if self.zygote is not None and self.zygote.proc.poll() is not None:
            self.zygote.close()
            self.zygote = None
        if self.zygote is None:
            self.zygote = _Zygote(self.inner_timeout, self.memory_mb, self.warmup)

    def _fill(self) -> None:
        """Fork workers up to the pool size."""
        for _ in range(3):
            self.start()
            self.zygote.wait_ready()
            try:
                while len(self.workers) < self.size:
                    self.workers.append(self.zygote.fork_worker())
                self.zygote.prefork()
                return
            except OSError:
                tail = self.zygote.stderr_tail()
                self.zygote.close()
                self.zygote = None
        raise CheckerError("the answer checker's zygote process keeps dying; its last error:\n" + tail)

    def _replace(self, w: _Worker, *, kill: bool) -> None:
        w.close(kill=kill)
        self.workers.remove(w)
        self.restarts += 1

    def run(self, jobs: Sequence[tuple[str, str]], budgets: Sequence[float] | None = None
            ) -> list[tuple[str, str]]:
        """(verdict value, reason) for each (gold, answer) job, in order. ``budgets``: seconds per job when
        less than the deadline (what is left of it after the job's answer was extracted in a worker)."""
        wrong = Verdict.WRONG.value
        msgs = self._run([{"gold": g, "answer": a} for g, a in jobs], [g for g, _ in jobs],
                         timeout={"verdict": wrong, "reason": f"timeout: no verdict within {self.deadline:g} s"},
                         crashed={"verdict": wrong, "reason": "checker worker crashed twice on this answer"},
                         budgets=budgets)
        return [(m["verdict"], m["reason"]) for m in msgs]

    def extract(self, texts: Sequence[str]) -> list[tuple[str | None, str, float]]:
        """(final answer or None, reason, worker seconds) for each completion, extracted in a worker under the deadline.

        For very long completions (the caller decides): the extraction is linear-time but a 5 MB completion
        still takes seconds of CPU, which must count against the deadline and not block the caller.
        """
        msgs = self._run([{"text": t} for t in texts], [None] * len(texts),
                         timeout={"answer": None, "reason": f"timeout: no answer extracted within {self.deadline:g} s"},
                         crashed={"answer": None, "reason": "checker worker crashed twice extracting this answer"})
        return [(m.get("answer"), m.get("reason", ""), float(m.get("seconds", 0.0))) for m in msgs]

    def _run(self, requests: Sequence[dict], golds: Sequence[str | None], *, timeout: dict, crashed: dict,
             budgets: Sequence[float] | None = None) -> list[dict]:
        """The worker's reply to each request, in order (``timeout``/``crashed`` stand in for a lost one)."""
        results: list[dict | None] = [None] * len(requests)
        queue = deque(range(len(requests)))
        crashes = [0] * len(requests)
        for w in [w for w in self.workers if w.job is not None]:  # left busy by an interrupted run
            self._replace(w, kill=True)
        base, self.sent = self.sent, self.sent + len(requests)  # ids unique across runs: no stale reply can match
        while queue or any(w.job is not None for w in self.workers):
            self._fill()
            for w in list(self.workers):
                if w.job is None and queue:
                    i = _pick(queue, w, golds)
                    payload = (json.dumps({"id": base + i, **requests[i]}) + "\n").encode()
                    if not w.send(i, payload, budgets[i] if budgets else self.deadline):  # died while idle; retry on a fresh one
                        queue.appendleft(i)
                        self._replace(w, kill=False)
            busy = [w for w in self.workers if w.job is not None]
            if not busy:
                continue
            wait = max(0.0, min(w.deadline for w in busy) - time.monotonic())
            readable, _, _ = select.select([w.sock for w in busy], [], [], wait)
            for w in busy:
                if w.sock in readable:
                    msgs = w.read_lines()
                    if msgs is None:  # died: out of memory, or killed from outside
                        job, w.job = w.job, None
                        crashes[job] += 1
                        if crashes[job] >= 2:
                            results[job] = crashed
                        else:
                            queue.appendleft(job)
                        self._replace(w, kill=False)
                        continue
                    for msg in msgs:
                        if w.job is not None and msg.get("id") == base + w.job:
                            results[w.job] = msg
                            w.job = None
                if w.job is not None and time.monotonic() >= w.deadline:
                    results[w.job] = timeout
                    self._replace(w, kill=True)
        return [r if r is not None else {**crashed, "reason": "lost"} for r in results]

    def close(self) -> None:
        if os.getpid() == self.owner:  # a forked child (exiting) must not kill its parent's workers
            for w in self.workers:
                w.close(kill=w.job is not None)
            if self.zygote is not None:
                self.zygote.close()
        self.workers, self.zygote = [], None
