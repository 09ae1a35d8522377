"""The ``llamacpp`` backend: llama.cpp's own C++ server (``llama-server``), started and stopped by us.

What it adds over the ``openai`` backend pointed at a server you run: the checkpoint is converted to GGUF
(``outtype="q8_0"`` by default: llama.cpp's int8 dot products; ``f32`` for the exact weights), a
``llama-server`` with ``parallel`` slots is started on a free local port for this backend's lifetime, and
requests go through :class:`~.openai_http.OpenAIBackend` with one in-flight request per slot. The server
batches the slots' tokens into one forward pass (continuous batching) and keeps each slot's KV cache, so a
request whose prompt extends the slot's previous prompt (MCTS asks for children of the node it just
expanded) evaluates only the new tokens. BENCHMARKS.md ("Engines") measures it against ``hf`` on the same
search workload in one run (issue: a faster CPU engine).

The binary: option ``binary``, else ``$ASTRO_LLAMA_SERVER``, else ``llama-server`` on ``PATH``, else the one
``scripts/build_llama_server.sh`` (run by ``make setup``) builds into ``$ASTRO_CACHE/bin``. Written by hand:
the server is a subprocess (``server.ModelServer``) and the protocol is the OpenAI one we already speak.

Seeds: llama.cpp computes a token's logits with different kernels depending on how many tokens share the
batch, so with several busy slots a seeded request is not bit-reproducible (``deterministic`` is false);
``deterministic=True`` runs one slot without prompt caching, which is reproducible and much slower.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ..types import Completion, GenParams
from .base import BackendError

OUTTYPES = ("q8_0", "f32", "f16")


def find_llama_server(binary: str | None = None) -> str | None:
    """The ``llama-server`` executable to use, or None (see the module doc for the search order)."""
    from ..models import cache_root

    for cand in (binary, os.environ.get("ASTRO_LLAMA_SERVER"), shutil.which("llama-server"),
                 str(cache_root() / "bin" / "llama-server")):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
        if cand and cand == binary:
            raise BackendError(f"llamacpp backend: binary={binary!r} is not an executable file")
    return None


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its threads, from /proc (0.0 where /proc is absent)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


class LlamaServerBackend:
    """Policy backed by a ``llama-server`` this object starts (see module doc)."""

    name = "llamacpp"
    deterministic = False  # the class default (Policy protocol); __init__ sets the instance's
    queues_requests = True  # one in-flight request per slot, continuous batching in the server

    def __init__(self, model: str, *, binary: str | None = None, parallel: int = 32, ctx_per_slot: int = 2048,
                 threads: int | None = None, outtype: str = "q8_0", batch_size: int = 512,
                 deterministic: bool = False, ready_timeout: float = 300.0, timeout: float = 600.0,
                 log_dir: str | None = None, chat_template: str | None = None):
        from .openai_http import OpenAIBackend
        from .server import ModelServer, ServerSpec

        exe = find_llama_server(binary)
        if exe is None:
            raise BackendError("llamacpp backend: no llama-server binary found; run `make setup` (it builds one "
                               "into ~/.cache/astro-reasoner/bin, once), put llama-server on PATH, or set "
                               "ASTRO_LLAMA_SERVER; or use --backend hf")
        if outtype not in OUTTYPES:
            raise BackendError(f"llamacpp backend: outtype {outtype!r}; use one of {', '.join(OUTTYPES)}")
        slots = 1 if deterministic else int(parallel)
        threads = int(threads or os.cpu_count() or 1)
        gguf = model if str(model).endswith(".gguf") else "{gguf}"
        command = [exe, "-m", gguf, "--alias", "{model}", "--host", "{host}", "--port", "{port}",
                   "-np", str(slots), "-c", str(slots * int(ctx_per_slot)), "-t", str(threads), "-tb", str(threads),
                   "-b", str(int(batch_size)), "--no-webui", "--log-disable"]
        if deterministic:
            command += ["--no-cache-prompt"]
        self._tmp = None
        if log_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="astro-llama-server-")
            log_dir = self._tmp.name
        spec = ServerSpec(command=command, ready_timeout=float(ready_timeout), gguf_outtype=outtype)
        self.server = ModelServer(spec, str(model), log_dir, name="llama-server")
        try:
            self.server.start()
        except BaseException:
            self.server.stop()
            raise
        try:
            self.inner = OpenAIBackend(str(model), base_url=self.server.urls, api_key="",  # no $OPENAI_API_KEY
                                       concurrency=slots, timeout=timeout, deterministic=deterministic,
                                       chat_template=chat_template)
        except BaseException:
            self.server.stop()
            raise
        self.deterministic = bool(deterministic)
        self.decoding = f"llama-server x{slots} slots, {outtype}"
        self.dtype = "gguf (as given)" if str(model).endswith(".gguf") else outtype  # what the server runs

    def apply_chat_template(self, messages: Sequence[dict[str, str]], continue_text: str = "") -> str:
        return self.inner.apply_chat_template(messages, continue_text)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def generate(self, prompts: Sequence[str], params: GenParams) -> list[list[Completion]]:
        return self.inner.generate(prompts, params)

    def server_cpu_seconds(self) -> float:
        """CPU time the server process has used so far (benchmarks add it to their own process's)."""
        return sum(_cpu_seconds(p.pid) for p in self.server.procs if p is not None)

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            self.server.stop()
            if self._tmp is not None:
                self._tmp.cleanup()
