"""How the pipeline starts its training stages (sft-*, rl-*, the warm start's SFT): the ``launcher:`` setting.

``launcher: {kind: inprocess}`` (the default) calls ``run_sft`` / ``run_grpo`` in the pipeline's own process.
``launcher: {kind: accelerate, num_processes: N, config_file: F, extra_args: [...]}`` starts each of them as

    python -m accelerate.commands.launch [--config_file F] [--multi_gpu] --num_processes N
        --main_process_port PORT [extra_args...] -m astro_reasoner.cli sft|rl train --config <stage>/launch_config.yaml

where ``launch_config.yaml`` holds exactly the stage config the in-process path would build (every field, so
the file alone reproduces the run). Output goes to the console and to ``<stage>/launch.log``; after exit 0 the
stage reads the same ``train_summary.json`` as in-process, so ``_done.json``, skip/resume and the table are
unchanged. Without ``config_file`` and with N > 1, ``--multi_gpu`` selects accelerate's torchrun launcher: on a
machine without a GPU the trainers' ``use_cpu`` makes that multi-process CPU training (gloo backend).
(``--cpu`` would not: accelerate's plain launcher starts a single process unless MPI is configured.)
"""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ConfigError
from ..errors import LaunchError  # noqa: F401 (defined in errors.py; re-exported here)

KINDS = ("inprocess", "accelerate")
LAUNCH_CONFIG = "launch_config.yaml"
LAUNCH_LOG = "launch.log"
# Set by the launcher itself (from num_processes / config_file / a free port): not allowed in extra_args.
_OWN_FLAGS = ("--num_processes", "--num-processes", "--config_file", "--config-file", "--main_process_port",
              "--main-process-port", "-m", "--module")


@dataclass
class LauncherSpec:
    kind: str = "inprocess"
    num_processes: int = 1
    config_file: str | None = None  # an accelerate config (configs/accelerate/*.yaml)
    extra_args: list[str] = field(default_factory=list)  # more `accelerate launch` flags, e.g. [--mixed_precision, bf16]
    main_process_port: int | None = None  # None: a free port per launch (two pipelines on one machine don't clash)

    def validate(self) -> None:
        where = "launcher"
        if self.kind not in KINDS:
            raise ConfigError(f"{where}.kind: {self.kind!r} is not a launcher; use inprocess (train in the "
                              "pipeline's process) or accelerate (each training stage under `accelerate launch`)")
        n = self.num_processes
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"{where}.num_processes={n!r}: must be a positive integer (processes per training "
                              "stage, e.g. the number of GPUs)")
        if self.kind == "inprocess":
            set_ = [k for k, v in (("num_processes", n != 1), ("config_file", self.config_file),
                                   ("extra_args", self.extra_args), ("main_process_port", self.main_process_port))
                    if v]
            if set_:
                raise ConfigError(f"{where}: {', '.join(set_)} only apply to kind: accelerate; set kind: accelerate "
                                  "or remove them")
        if self.config_file is not None and not Path(self.config_file).is_file():
            from .recipes import packaged_file

            packaged = packaged_file(self.config_file)  # configs/accelerate/... outside the repository
            if packaged is not None:
                self.config_file = str(packaged)
        if self.config_file is not None and not Path(self.config_file).is_file():
            raise ConfigError(f"{where}.config_file: {self.config_file} not found (relative paths are read from the "
                              "directory `astro pipeline` runs in); use e.g. configs/accelerate/multi_gpu.yaml")
        if not isinstance(self.extra_args, list) or not all(isinstance(a, str) for a in self.extra_args):
            raise ConfigError(f"{where}.extra_args: must be a list of strings (`accelerate launch` flags, e.g. "
                              "[--mixed_precision, bf16])")
        own = [a for a in self.extra_args if a.split("=", 1)[0] in _OWN_FLAGS]
        if own:
            raise ConfigError(f"{where}.extra_args: {own} are set by the launcher; use launcher.num_processes, "
                              "launcher.config_file or launcher.main_process_port instead")
        p = self.main_process_port
        if p is not None and (isinstance(p, bool) or not isinstance(p, int) or not 0 < p < 65536):
            raise ConfigError(f"{where}.main_process_port={p!r}: must be a TCP port (1-65535), or leave it out "
                              "to use a free one")

    def settings(self) -> dict[str, Any]:
        """What enters a training stage's key: only what changes its output. In-process adds nothing (existing
        runs keep their keys); accelerate adds kind and the process count (it multiplies the effective batch).
        The config file, extra flags, port and log paths do not."""
        return {} if self.kind == "inprocess" else {"launcher": {"kind": self.kind,
                                                                 "num_processes": self.num_processes}}


def parse_launcher(raw: Any) -> LauncherSpec:
    from ..config import build_config

    if raw is None:
        return LauncherSpec()
    if not isinstance(raw, dict):
        raise ConfigError("launcher: must be a mapping, e.g. {kind: accelerate, num_processes: 2}")
    return build_config(LauncherSpec, raw, where="launcher")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(spec: LauncherSpec, command: str, config_path: Path, port: int | None = None) -> list[str]:
    """The argv of one launched training stage (``command``: ``sft`` or ``rl``)."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if spec.config_file:
        cmd += ["--config_file", str(spec.config_file)]
    elif spec.num_processes > 1:
        cmd += ["--multi_gpu", "--num_machines", "1"]  # torchrun launcher; on CPU: gloo (see module doc)
    cmd += ["--num_processes", str(spec.num_processes)]
    if spec.num_processes > 1 or spec.config_file:
        cmd += ["--main_process_port", str(spec.main_process_port or port or free_port())]
    cmd += [*spec.extra_args, "-m", "astro_reasoner.cli", *(["sft"] if command == "sft" else ["rl", "train"]),
            "--config", str(config_path)]
    return cmd


def write_stage_config(cfg: Any, path: Path) -> Path:
    """``cfg`` (SFTStageConfig / RLStageConfig) as YAML: `astro sft|rl --config` rebuilds it.

    Written: the options the config was built with that differ from the defaults (``cfg.given``), as given, not
    as resolved: the launched processes resolve device and precision themselves, and TRL's derived values
    depend on their number (``generation_batch_size`` = batch x processes x steps_per_generation)."""
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    values = json.loads(json.dumps(cfg.given, default=_yaml_value))
    tmp.write_text(yaml.safe_dump(values, sort_keys=False), encoding="utf-8")
    tmp.replace(path)
    return path


def _yaml_value(value: Any) -> Any:
    """A given value YAML cannot hold as is: an enum by its value, anything else (a path) as text."""
    inner = getattr(value, "value", None)
    return inner if isinstance(inner, (str, int, float)) else str(value)


def _child_env() -> dict[str, str]:
    """This process's environment, with this copy of astro_reasoner first on PYTHONPATH (the child must run
    the same code as the pipeline, not another installed copy)."""
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([src, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    env.setdefault("OMP_NUM_THREADS", "1")  # accelerate would pick cores/processes; the stage's `threads` rules
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_launched(spec: LauncherSpec, command: str, cfg: Any, stage_dir: Path, *, echo=None) -> str:
    """Run one training stage under ``accelerate launch`` and return its output dir (``cfg.output_dir``).

    Writes ``<stage_dir>/launch_config.yaml`` (the exact config) and ``<stage_dir>/launch.log`` (appended, one
    header per attempt), streams the job's output to ``echo`` (default: stdout). Non-zero exit -> LaunchError.
    """
    from ..train.common import SUMMARY_FILE

    echo = echo or (lambda line: (sys.stdout.write(line), sys.stdout.flush()))
    config_path = write_stage_config(cfg, stage_dir / LAUNCH_CONFIG)
    cmd = launch_command(spec, command, config_path)
    log_path = stage_dir / LAUNCH_LOG
    tail: collections.deque[str] = collections.deque(maxlen=25)
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_child_env(),
                                start_new_session=True)  # its own group: an interrupt stops every rank
        try:
            assert proc.stdout is not None
            for raw in iter(proc.stdout.readline, b""):
                line = raw.decode("utf-8", errors="replace")
                log.write(line)
                log.flush()
                tail.append(line)
                echo(line)
            code = proc.wait()
        except BaseException:
            _stop(proc)
            raise
    if code != 0:
        raise LaunchError(f"the launched {command} job exited with code {code}; full output in {log_path}; "
                          f"last lines:\n{''.join(tail).rstrip()}\nFix the cause and re-run the pipeline: the "
                          "stage resumes from its last checkpoint")
    if not (Path(cfg.output_dir) / SUMMARY_FILE).exists():
        raise LaunchError(f"the launched {command} job exited 0 but wrote no {Path(cfg.output_dir) / SUMMARY_FILE}; "
                          f"see {log_path}")
    return cfg.output_dir


def _stop(proc: subprocess.Popen) -> None:
    """Stop the launched job's process group (accelerate and its ranks): SIGTERM, then SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass
