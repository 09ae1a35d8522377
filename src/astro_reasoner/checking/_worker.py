"""The checker's worker side: a "zygote" process that imports and warms up math-verify once, then forks one
worker per request from the parent (:mod:`.pool`). A worker reads JSON lines ``{"id", "gold", "answer"}`` on its
socket and writes ``{"id", "verdict", "reason"}`` back.

Why a zygote (our choice): math-verify's LaTeX parser (ANTLR) builds its prediction cache lazily and is about
twice as slow on its first hundred inputs; forking from a warmed process gives every worker -- including the
replacement for a killed one -- that cache for free, in milliseconds instead of a ~1 s Python start-up.
Started as ``python -m`` rather than through ``multiprocessing``: no pickles, no re-import of the caller's
``__main__``, and it works inside daemonic processes.

math-verify runs on each worker's main thread, so its SIGALRM timeouts work (whole seconds only).
Work stuck in C code ignores them; the parent then kills the worker.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys
import time
from collections import OrderedDict
from itertools import product

from ..types import Verdict
from ..answers import extract_answer

PARSE_CACHE_SIZE = 4096
# Typical answer shapes (written by us), checked in the zygote before it forks any worker (see the module
# docstring): about 1 s of CPU once, which each worker would otherwise spend on its own. (59 shapes instead
# of these 26 cost twice as long and made no measurable difference.)
WARMUP = ("\\frac{1}{2}", "3\\sqrt{2}", "x^2 + 2x + 1", "(1, 2)", "[0, 1)", "\\{1, 2\\}", "\\text{(A)}",
          "-\\frac{\\sqrt{3}}{2}", "2\\pi", "3 + 5i", "x = 5", "90^\\circ", "\\log_2 8", "(-\\infty, 3]",
          "a_n", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "50\\%", "\\dfrac{3}{4}", "1,-2", "y = -2x + 3",
          "\\left( 3, \\frac{\\pi}{2} \\right)", "\\cos \\theta", "2^{10}", "10!", "\\binom{5}{2}", "0.25")


def _die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGKILL us when our parent goes: a worker stuck in C code never sees an EOF."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG (Linux only; elsewhere EOF ends idle workers)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(0)


def _limit_memory(mb: int) -> None:
    if mb > 0:
        import resource

        limit = mb * 1024 * 1024
        try:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ValueError, OSError):
            pass


def _numerically_apart(a, b) -> bool:
    """Whether two sympy constants differ by far more than math-verify's rounding (6 decimals) allows.

    Our shortcut (profiled: ~70% of ``verify``'s time on pairs of different MATH-500 answers is ``simplify(a - b)``):
    for constants whose values differ, neither its numeric nor its symbolic test can succeed. Percentages are
    left to math-verify (it equates 50% with 50), as is anything with a free symbol.
    """
    from sympy import S, Expr, UnevaluatedExpr

    if not (isinstance(a, Expr) and isinstance(b, Expr)) or a.free_symbols or b.free_symbols:
        return False
    if a.has(UnevaluatedExpr) or b.has(UnevaluatedExpr):
        return False
    try:
        x, y = a.evalf(30), b.evalf(30)
        if not (x.is_number and y.is_number) or any(v.has(S.NaN, S.ComplexInfinity) for v in (x, y)):
            return False
        return bool(abs(x - y) > max(1e-5, 1e-12 * max(abs(x), abs(y), 1)))
    except (TypeError, ValueError, ArithmeticError, RecursionError):
        return False


def _surely_different(gold: list, pred: list) -> bool:
    """True only if every comparison ``verify`` would make is certain to fail (see ``_numerically_apart``)."""
    for g, t in product(gold, pred):
        if isinstance(g, str) and isinstance(t, str):
            if g.strip() and g.strip() == t.strip():
                return False
        elif isinstance(g, str) or isinstance(t, str):
            continue  # verify never matches a string with an expression
        elif not _numerically_apart(g, t):
            return False
    return True


def _checker(timeout: int):
    """A check function with its own parse cache (one per worker process; no module-level state)."""
    from math_verify import parse, verify
    from math_verify.utils import timeout as alarm

    apart = alarm(timeout_seconds=timeout)(_surely_different)

    cache: OrderedDict[str, list] = OrderedDict()

    def parsed(s: str) -> list:
        hit = cache.get(s)
        if hit is not None:
            cache.move_to_end(s)
            return hit
        out = parse("$" + s + "$", parsing_timeout=timeout)
        cache[s] = out
        if len(cache) > PARSE_CACHE_SIZE:
            cache.popitem(last=False)
        return out

    def check(gold_text: str, answer_text: str) -> tuple[str, str]:
        try:
            gold, pred = parsed(gold_text), parsed(answer_text)
            if not gold:
                return Verdict.WRONG.value, "math-verify could not parse the gold answer"
            if not pred:
                return Verdict.UNPARSEABLE.value, "math-verify could not parse the answer"
            if apart(gold, pred):
                return Verdict.WRONG.value, "math-verify parse + numeric difference"
            ok = verify(gold, pred, timeout_seconds=timeout)  # gold first: verify is not symmetric
            return (Verdict.CORRECT if ok else Verdict.WRONG).value, "math-verify"
        except MemoryError:
            return Verdict.WRONG.value, "out of memory in math-verify"
        except BaseException as exc:  # noqa: BLE001 - math-verify's TimeoutException derives from BaseException
            if type(exc).__name__ == "TimeoutException":
                return Verdict.WRONG.value, f"timeout: math-verify's own {timeout} s alarm"
            return Verdict.WRONG.value, f"math-verify error: {type(exc).__name__}"

    return check


def _serve(sock: socket.socket, check) -> None:
    reader = sock.makefile("rb")
    for line in reader:
        req = json.loads(line)
        if "text" in req:  # a long completion: its answer is extracted here, under the parent's deadline
            t0 = time.monotonic()
            answer = extract_answer(req["text"])
            reply = {"answer": answer, "reason": "extracted in a worker", "seconds": time.monotonic() - t0}
        else:
            verdict, reason = check(req["gold"], req["answer"])
            reply = {"verdict": verdict, "reason": reason}
        sock.sendall((json.dumps({"id": req["id"], **reply}) + "\n").encode())


def zygote(ctl_fd: int, parent_pid: int, timeout: int, memory_mb: int, warmup: int) -> None:
    _die_with_parent(parent_pid)
    import logging

    logging.disable(logging.WARNING)  # math-verify logs every timeout; the parent reports them
    check = _checker(timeout)
    if warmup:
        warm = _checker(timeout)  # its own parse cache, so that forked workers start with an empty one
        for i, s in enumerate(WARMUP):
            warm(s, WARMUP[i - 1])
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps finished workers
    ctl = socket.socket(fileno=ctl_fd)
    ctl.sendall(b"R")
    me = os.getpid()
    while True:
        msg, fds, _, _ = socket.recv_fds(ctl, 16, 1)
        if not msg or not fds:  # the parent closed the pool (or died)
            os._exit(0)
        pid = os.fork()
        if pid == 0:
            ctl.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            _die_with_parent(me)
            _limit_memory(memory_mb)
            try:
                _serve(socket.socket(fileno=fds[0]), check)
            finally:
                os._exit(0)
        os.close(fds[0])
        ctl.sendall(struct.pack("!i", pid))


if __name__ == "__main__":
    zygote(*(int(a) for a in sys.argv[1:6]))
