"""Start and stop an OpenAI-compatible inference server for one checkpoint (the pipeline's ``server:``).

The pipeline evaluates every checkpoint *with that checkpoint*: for each stage that generates (search, the
difficulty filter, each evaluation) it fills a command template with the checkpoint, starts the server(s),
waits until ``GET /v1/models`` answers, points the ``openai`` backend at them, and stops them afterwards.
Placeholders: ``{model}`` the checkpoint as the pipeline names it (also the name the server must serve it
under: the backend refuses a server that serves another model), ``{gguf}`` the checkpoint converted to GGUF
(``backends.gguf.hf_to_gguf``, cached; only computed when used), ``{port}`` a free local port, ``{host}``,
``{replica}`` (0..replicas-1, e.g. for ``CUDA_VISIBLE_DEVICES``). Examples::

    command: "llama-server --model {gguf} --alias {model} --host {host} --port {port} -np 1"
    command: "{python} -m llama_cpp.server --model {gguf} --model_alias {model} --host {host} --port {port}"
    command: "vllm serve {model} --served-model-name {model} --host {host} --port {port} --tensor-parallel-size 8"

Written by hand: there is no library for "run this command per checkpoint and wait for readiness"; it is a
subprocess, a poll loop and a process-group kill.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import string
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .base import BackendError

PLACEHOLDERS = ("model", "gguf", "port", "host", "replica", "python")


@dataclass
class ServerSpec:
    """How to serve a checkpoint. ``command`` is a string (split like a shell would, after substitution
    with each value quoted) or a list of arguments; ``env`` values are templates too."""

    command: Any = ""  # str | list[str] (typed Any so the config loader does not split a string on commas)
    replicas: int = 1
    host: str = "127.0.0.1"
    ready_timeout: float = 900.0  # a vLLM start-up on a big model takes minutes
    gguf_outtype: str = "f32"
    env: dict[str, str] = field(default_factory=dict)
    restarts: int = 2  # how often a stage restarts a server that died under it (then resumes its own work)

    def validate(self) -> None:
        if not self.command:
            raise BackendError("server.command is empty; give a command template, e.g. "
                               "'{python} -m llama_cpp.server --model {gguf} --model_alias {model} --port {port}'")
        if isinstance(self.replicas, bool) or not isinstance(self.replicas, int) or self.replicas < 1:
            raise BackendError(f"server.replicas={self.replicas!r}: must be a positive integer")
        if isinstance(self.restarts, bool) or not isinstance(self.restarts, int) or self.restarts < 0:
            raise BackendError(f"server.restarts={self.restarts!r}: must be an integer >= 0")
        if self.gguf_outtype not in ("f32", "f16", "q8_0"):
            raise BackendError(f"server.gguf_outtype={self.gguf_outtype!r}: use f32, f16 or q8_0")
        parts = [self.command] if isinstance(self.command, str) else list(self.command)
        used = set()
        for text in [*parts, *self.env.values()]:
            try:
                names = {f for _, f, _, _ in string.Formatter().parse(str(text)) if f is not None}
            except ValueError as exc:
                raise BackendError(f"server.command {text!r}: {exc} (write a literal brace as {{{{ or }}}})") from None
            bad = sorted(n for n in names if n not in PLACEHOLDERS)
            if bad:
                raise BackendError(f"server.command: unknown placeholder(s) {bad}; use {', '.join(PLACEHOLDERS)}")
            used |= names
        if "port" not in used:
            raise BackendError("server.command must contain {port} (each server gets a free port)")

    def uses(self, name: str) -> bool:
        parts = [self.command] if isinstance(self.command, str) else list(self.command)
        return any("{" + name + "}" in str(p) for p in [*parts, *self.env.values()])


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """Linux: the server gets SIGTERM if the process that started it dies (even by kill -9), so a killed
    pipeline leaves no server behind (it runs in its own session, out of reach of a group kill)."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass


class ModelServer:
    """``with ModelServer(spec, model, log_dir) as srv: make_backend("openai", model, base_url=srv.urls)``."""

    def __init__(self, spec: ServerSpec, model: str, log_dir: str | Path, *, name: str = "server"):
        spec.validate()
        self.spec, self.model, self.log_dir, self.name = spec, model, Path(log_dir), name
        self.procs: list[subprocess.Popen | None] = [None] * spec.replicas
        self.ports = [free_port(spec.host) for _ in range(spec.replicas)]
        self._values: dict[str, str] | None = None

    @property
    def urls(self) -> list[str]:
        return [f"http://{self.spec.host}:{p}/v1" for p in self.ports]

    def log_path(self, replica: int) -> Path:
        return self.log_dir / f"{self.name}-{replica}.log"

    def _base_values(self) -> dict[str, str]:
        if self._values is None:
            gguf = ""
            if self.spec.uses("gguf"):
                from .gguf import hf_to_gguf

                gguf = str(hf_to_gguf(self.model, outtype=self.spec.gguf_outtype))
            self._values = {"model": self.model, "gguf": gguf, "host": self.spec.host, "python": sys.executable}
        return self._values

    def command(self, replica: int) -> tuple[list[str], dict[str, str]]:
        values = {**self._base_values(), "port": str(self.ports[replica]), "replica": str(replica)}
        if isinstance(self.spec.command, str):
            quoted = {k: shlex.quote(v) for k, v in values.items()}
            args = shlex.split(self.spec.command.format(**quoted))
        else:
            args = [str(a).format(**values) for a in self.spec.command]
        env = {**os.environ, **{k: str(v).format(**values) for k, v in self.spec.env.items()}}
        return args, env

    def start(self) -> "ModelServer":
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for r in range(self.spec.replicas):
            self._launch(r)
        for r in range(self.spec.replicas):
            self._wait_ready(r)
        return self

    def _launch(self, replica: int) -> None:
        args, env = self.command(replica)
        with open(self.log_path(replica), "ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {shlex.join(args)}\n".encode())
            log.flush()
            try:
                # a session of its own: stop() kills the whole group (vLLM forks engine workers)
                self.procs[replica] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                                                       stdin=subprocess.DEVNULL, start_new_session=True,
                                                       preexec_fn=_die_with_parent)
            except OSError as exc:
                raise BackendError(f"cannot start the inference server ({shlex.join(args)}): {exc}; fix server.command")
            log.write(f"--- pid {self.procs[replica].pid}\n".encode())

    def _wait_ready(self, replica: int) -> None:
        import httpx

        proc, url = self.procs[replica], self.urls[replica]
        deadline = time.monotonic() + self.spec.ready_timeout
        while True:
            if proc is None or proc.poll() is not None:
                raise BackendError(f"the inference server for {self.model} exited with code "
                                   f"{proc.returncode if proc else '?'} before it was ready; see "
                                   f"{self.log_path(replica)}:\n{self._log_tail(replica)}")
            try:
                if httpx.get(f"{url}/models", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise BackendError(f"the inference server for {self.model} did not answer {url}/models within "
                                   f"{self.spec.ready_timeout:.0f}s (raise server.ready_timeout); see "
                                   f"{self.log_path(replica)}")
            time.sleep(0.25)

    def _log_tail(self, replica: int, chars: int = 1500) -> str:
        try:
            return self.log_path(replica).read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def dead(self) -> list[int]:
        """Replicas whose process has exited."""
        return [r for r, p in enumerate(self.procs) if p is None or p.poll() is not None]

    def restart_dead(self) -> list[int]:
        """Start again (same port, same command) every replica that died; return which."""
        dead = self.dead()
        for r in dead:
            self._stop_one(r)
            self._launch(r)
        for r in dead:
            self._wait_ready(r)
        return dead

    def _stop_one(self, replica: int, grace: float = 15.0) -> None:
        proc = self.procs[replica]
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            except ProcessLookupError:
                proc.wait()
        self.procs[replica] = None

    def stop(self) -> None:
        for r in range(self.spec.replicas):
            self._stop_one(r)

    def __enter__(self) -> "ModelServer":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
