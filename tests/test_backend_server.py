"""Serving a checkpoint: the server manager (start, readiness, clear errors, restart) and the openai backend
surviving a real llama.cpp server that dies mid-search (issue: a clear error naming the server and the
request, finished work kept, the re-run resumes)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from astro_reasoner.backends import BackendError
from astro_reasoner.backends.server import ModelServer, ServerSpec
from pipeline_helpers import llama_server_command


def test_a_server_that_exits_at_start_is_a_clear_error_with_its_log(tmp_path):
    spec = ServerSpec(command=[sys.executable, "-c", "import sys; print('no such model {model}'); sys.exit(3)",
                               "{port}"])
    with pytest.raises(BackendError, match=r"exited with code 3 before it was ready; see .*server-0.log:\n"
                                           r"(.|\n)*no such model ckpt-7"):
        with ModelServer(spec, "ckpt-7", tmp_path):
            pass


def test_bad_server_specs_are_refused():
    for spec, msg in ((ServerSpec(command=""), "empty"), (ServerSpec(command="serve {model}"), "must contain {port}"),
                      (ServerSpec(command="serve {port} {gpu}"), r"unknown placeholder\(s\) \['gpu'\]"),
                      (ServerSpec(command="serve {port}", replicas=0), "replicas")):
        with pytest.raises(BackendError, match=msg):
            spec.validate()


def test_command_template_quotes_values_and_fills_each_replica(tmp_path):
    srv = ModelServer(ServerSpec(command="serve --model {model} --port {port} --id {replica}", replicas=2,
                                 env={"CUDA_VISIBLE_DEVICES": "{replica}"}), "/ckpts/a b", tmp_path)
    args, env = srv.command(1)
    assert args == ["serve", "--model", "/ckpts/a b", "--port", str(srv.ports[1]), "--id", "1"]
    assert env["CUDA_VISIBLE_DEVICES"] == "1" and srv.ports[0] != srv.ports[1]


@pytest.mark.server
def test_search_survives_a_killed_llama_cpp_server(tiny_model_dir, tmp_path):
    """The server dies mid-search: `astro search` exits with one error line naming the server and the request;
    finished trees are kept byte for byte and equal an uninterrupted run's; the same command, once the server
    is back, finishes the rest with every problem exactly once."""
    from astro_reasoner.data import synthesize, write_problems

    write_problems(tmp_path / "p.jsonl", synthesize(steps=1, n=8, seed=0, ops="+", max_value=4))
    model = str(tiny_model_dir)

    def search(url, out, **kw):
        argv = [sys.executable, "-m", "astro_reasoner.cli", "search", "--problems", str(tmp_path / "p.jsonl"),
                "--model", model, "--backend", "openai", "--out", str(out), "--quiet", "-b", f"base_url={url}",
                "-b", "max_retries=1", "-b", "backoff=0.1", "-b", "deterministic=true", "iterations=2", "k=2",
                "rollouts=1", "few_shot=0", "max_step_tokens=16", "max_rollout_tokens=32", "max_active_trees=1"]
        return subprocess.Popen(argv, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True, **kw)

    spec = ServerSpec(command=llama_server_command())
    with ModelServer(spec, model, tmp_path / "logs") as srv:
        ref = search(srv.urls[0], tmp_path / "ref")
        assert ref.wait(timeout=900) == 0, ref.stderr.read().decode()[-2000:]
        trees = tmp_path / "cut" / "trees.jsonl"
        proc = search(srv.urls[0], tmp_path / "cut")
        try:
            deadline = time.monotonic() + 600
            while proc.poll() is None and time.monotonic() < deadline and \
                    not (trees.exists() and len(trees.read_text().splitlines()) >= 2):
                time.sleep(0.1)
            assert proc.poll() is None, "the search finished before the server could be killed"
            os.killpg(srv.procs[0].pid, signal.SIGKILL)
            _, err = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        err = err.decode()
        assert proc.returncode == 1, err
        lines = [x for x in err.splitlines() if x.strip()]
        assert len(lines) == 1 and "Traceback" not in err, err
        assert re.match(rf"error: {re.escape(srv.urls[0])}/completions failed after 2 attempts: "
                        r"ConnectError.*\[request: n=\d+ max_tokens=\d+ .*prompt of \d+ tokens ending .*\]", lines[0])
        kept = trees.read_text().splitlines()
        assert srv.restart_dead() == [0]  # same port, same command
        again = search(srv.urls[0], tmp_path / "cut")
        assert again.wait(timeout=900) == 0, again.stderr.read().decode()[-2000:]
    final = trees.read_text().splitlines()
    assert final[: len(kept)] == kept  # finished work kept byte for byte
    assert sorted(json.loads(x)["problem_id"] for x in final) == \
        sorted(json.loads(x)["problem_id"] for x in (tmp_path / "ref" / "trees.jsonl").read_text().splitlines())
    ref_trees = {json.loads(x)["problem_id"]: x for x in (tmp_path / "ref" / "trees.jsonl").read_text().splitlines()}
    for line in kept:  # a deterministic server: trees finished before the fault equal the uninterrupted run's
        assert _content(line) == _content(ref_trees[json.loads(line)["problem_id"]])


def _content(line: str) -> dict:
    """A tree without its timing fields."""
    tree = json.loads(line)
    tree.get("stats", {}).pop("seconds", None)
    for key in list(tree.get("stats", {})):
        if "second" in key:
            tree["stats"].pop(key)
    return tree


def test_a_started_server_is_ready_then_stopped_and_dies_with_a_killed_parent(tmp_path):
    """A stand-in server (python's http.server answering GET /v1/models) is polled until ready and stopped on
    exit; and when the process that started it is killed -9, the server goes too (no orphan holding a GPU)."""
    (tmp_path / "www" / "v1").mkdir(parents=True)
    (tmp_path / "www" / "v1" / "models").write_text('{"data": [{"id": "m"}]}')
    command = [sys.executable, "-m", "http.server", "{port}", "--bind", "{host}", "--directory", str(tmp_path / "www")]
    with ModelServer(ServerSpec(command=command), "m", tmp_path / "logs") as srv:
        import httpx

        assert httpx.get(f"{srv.urls[0]}/models").json()["data"][0]["id"] == "m"
        proc = srv.procs[0]
    assert proc.poll() is not None  # stopped on exit
    script = ("import sys, time\nfrom astro_reasoner.backends.server import ModelServer, ServerSpec\n"
              f"srv = ModelServer(ServerSpec(command={command!r}), 'm', {str(tmp_path / 'logs2')!r}).start()\n"
              "print(srv.procs[0].pid, flush=True)\ntime.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=os.environ)
    server_pid = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and Path(f"/proc/{server_pid}").exists() and \
            "zombie" not in _proc_state(server_pid):
        time.sleep(0.1)
    assert not Path(f"/proc/{server_pid}").exists() or "zombie" in _proc_state(server_pid)


def _proc_state(pid: int) -> str:
    try:
        return next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("State:")).lower()
    except (OSError, StopIteration):
        return "gone"
