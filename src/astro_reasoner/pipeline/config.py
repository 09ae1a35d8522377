"""`PipelineConfig`: the top level of a pipeline YAML; each stage keeps its own config dataclass.

A pipeline file has a few top-level keys (run dir, model, backend, data) and one section per stage whose
keys are exactly that stage's config dataclass fields (``search:`` -> ``SearchConfig``...). Every section
is validated before the first stage starts, so a typo fails in a second, not after an hour of search.
An optional top-level ``server:`` (backends.server.ServerSpec) makes every generating stage start a server
for the checkpoint it generates with (``backend: openai`` only).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ConfigError, build_config, did_you_mean, read_yaml_mapping, yaml_value

SECTIONS = ("search", "clone", "sft", "rl_filter", "rl", "eval", "report")


@dataclass
class DataSpec:
    """``train``/``test``: a problem spec (data/specs.py): a source for ``load_problems`` (path, benchmark name,
    hub id), a slice of one ``{path: ..., offset: N, limit: M}``, or a ``synth`` mapping for the synthetic
    generator. ``eval``: extra datasets evaluated besides ``test``."""

    train: Any = None
    test: Any = None
    eval: list[str] = field(default_factory=list)
    data_dir: str | None = None
    train_limit: int | None = None
    eval_limit: int | None = None


@dataclass
class PipelineConfig:
    run_dir: str = "runs/astro"
    seed: int = 0
    model: str = "smollm2-135m"
    backend: str = "hf"
    backend_options: dict[str, Any] = field(default_factory=dict)
    data: DataSpec = field(default_factory=DataSpec)
    # Which trained variants to build (ASTRO §4: ASTRO vs the Direct baseline from the same trees).
    modes: list[str] = field(default_factory=lambda: ["direct", "astro"])
    # Evaluate intermediate RL checkpoints too: they are the points of the backtracks-vs-accuracy
    # correlation (ASTRO §4.3 reports r > 0.8 across RL checkpoints).
    eval_rl_checkpoints: bool = True
    # What the numbers of this run mean (its size, what to read into them, where the full experiment is):
    # printed above the final table and written at the top of report/results.md.
    about: str | None = None
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    # With backend: openai, how to start a server for a given checkpoint (backends.server.ServerSpec):
    # every generating stage (search, difficulty filter, each evaluation) then gets its own server running
    # *its* checkpoint. Without it, backend_options.base_url must already serve cfg.model, and stages that
    # need another checkpoint fail fast (the backend refuses a server serving another model).
    server: dict[str, Any] | None = None
    # Optional warm start (issue 16; the paper's starting point in miniature): SFT ``model`` on direct
    # solutions first, and use that checkpoint as the base of everything else (search, both arms, "base" row).
    # Keys: ``data`` (a synth spec of a task with a solver, e.g. {synth: {task: countdown, ...}}, or problems whose
    # records carry a worked ``solution``, e.g. {path: gsm8k:train, offset: 0, limit: 1600}; data/specs.py) or
    # ``sft_data`` (an SFT JSONL you wrote), ``per_problem`` (solutions per puzzle), ``sft`` (SFTStageConfig),
    # ``select`` (optional: evaluate every saved checkpoint on VALIDATION problems and keep the best),
    # ``replay`` (optional, default 0: mix this many of the warm start's rows into EACH arm's SFT data, the same
    # rows for both arms: a rehearsal so that SFT on the search's few paths does not undo the warm start).
    warm_start: dict[str, Any] | None = None
    # How the training stages (sft-*, rl-*, the warm start's SFT) run (pipeline/launch.py): {kind: inprocess}
    # (default) or {kind: accelerate, num_processes: N, config_file: configs/accelerate/....yaml, extra_args: []}.
    launcher: dict[str, Any] | None = None

    @property
    def run_dir_path(self) -> Path:
        return Path(self.run_dir)

    def section(self, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.sections.get(name) or {})

    def validate(self) -> None:
        from ..backends import BACKEND_KINDS

        if self.backend not in BACKEND_KINDS:
            raise ConfigError(f"backend: {self.backend!r} is not a backend; use one of {', '.join(BACKEND_KINDS)}")
        bad = [m for m in self.modes if m not in ("astro", "direct")]
        if bad or not self.modes:
            raise ConfigError(f"modes: {self.modes!r}; use a subset of [direct, astro]")
        if self.about is not None and not isinstance(self.about, str):
            raise ConfigError(f"about: must be text (a YAML string, e.g. `about: |` and indented lines), "
                              f"not {type(self.about).__name__}")
        if self.server is not None:
            self.server_spec()
        self.launcher_spec()
        if self.warm_start is not None:
            self._validate_warm_start()
        if self.data.train is None or self.data.test is None:
            raise ConfigError("data: both data.train and data.test are needed (a path, a benchmark name, "
                              "or {synth: {steps: 2, n: 50, seed: 0}})")
        from ..data.specs import check_spec

        for split in ("train", "test"):  # checked here too, so `--status` and a dry start catch it
            check_spec(getattr(self.data, split), f"data.{split}")

    def _validate_warm_start(self) -> None:
        from ..data.specs import check_spec, slices_overlap

        ws = self.warm_start
        if not isinstance(ws, dict):
            raise ConfigError("warm_start: must be a mapping with data (or sft_data), per_problem and sft")
        unknown = sorted(set(ws) - {"data", "sft_data", "per_problem", "sft", "select", "replay"})
        if unknown:
            raise ConfigError(f"warm_start: unknown key(s) {unknown}; use data or sft_data, per_problem, sft, select, "
                              "replay")
        replay = ws.get("replay", 0)
        if isinstance(replay, bool) or not isinstance(replay, int) or replay < 0:
            raise ConfigError(f"warm_start.replay={replay!r}: must be a non-negative integer (warm-start rows mixed "
                              "into each arm's SFT data; 0 = none)")
        if ("data" in ws) == ("sft_data" in ws):
            raise ConfigError("warm_start: give exactly one of data (problems with direct solutions: countdown "
                              "puzzles {synth: {task: countdown, split: train, n: 640}} or records with a worked "
                              "solution {path: gsm8k:train, limit: 1600}) or sft_data (an SFT JSONL)")
        per = ws.get("per_problem", 1)
        if isinstance(per, bool) or not isinstance(per, int) or per < 1:
            raise ConfigError(f"warm_start.per_problem={per!r}: must be a positive integer")
        spec = ws.get("data")
        if "data" in ws:
            synth = spec.get("synth") if isinstance(spec, dict) else None
            if isinstance(spec, dict) and "synth" in spec and (not isinstance(synth, dict)
                                                               or synth.get("task") != "countdown"):
                raise ConfigError("warm_start.data: only {synth: {task: countdown, ...}} has a solver that writes "
                                  "direct solutions; give a problem file whose records carry a worked 'solution' "
                                  "({path: gsm8k:train, offset: 0, limit: 1600}) or write the SFT JSONL (sft_data)")
            check_spec(spec, "warm_start.data")
            if synth is None and per != 1:
                raise ConfigError(f"warm_start.per_problem={per}: a problem file gives one worked solution per "
                                  "problem; use per_problem: 1 (train longer with sft.max_steps)")
            if slices_overlap(spec, self.data.train, limit_b=self.data.train_limit):
                raise ConfigError("warm_start.data and data.train overlap (the same source, overlapping slices): "
                                  "search would run on problems the warm start trained on; use disjoint offsets")
        if not isinstance(ws.get("sft", {}) or {}, dict):
            raise ConfigError("warm_start.sft: must be a mapping of SFT settings (SFTStageConfig fields)")
        if ws.get("select") is not None:
            self._validate_select(ws["select"], spec)

    def _validate_select(self, sel: Any, warm_data: Any) -> None:
        from ..data.specs import check_spec, slices_overlap

        if not isinstance(sel, dict) or "data" not in sel:
            raise ConfigError("warm_start.select: a mapping with data (the VALIDATION problems, e.g. {synth: "
                              "{task: countdown, split: validation, n: 100}} or {path: gsm8k:train, offset: 1800, "
                              "limit: 100}) and EvalConfig settings (n, ...)")
        bad = sorted(set(sel) - {"data", "n", "max_tokens", "temperature", "top_p", "batch_size"})
        if bad:
            raise ConfigError(f"warm_start.select: unknown key(s) {bad}; use data, n, max_tokens, temperature, "
                              "top_p, batch_size")
        spec = sel["data"]
        if isinstance(spec, dict) and isinstance(spec.get("synth"), dict) and spec["synth"].get("split") == "test":
            raise ConfigError("warm_start.select.data: choosing on the test split would leak it into the table; "
                              "use split: validation")
        check_spec(spec, "warm_start.select.data")
        if slices_overlap(spec, self.data.test, limit_b=self.data.eval_limit):
            raise ConfigError("warm_start.select.data overlaps data.test (the same source, overlapping slices): "
                              "choosing on the test problems would leak them into the table; use a validation slice")
        if slices_overlap(spec, warm_data):
            raise ConfigError("warm_start.select.data overlaps warm_start.data (the same source, overlapping "
                              "slices): validation problems must not be training problems; use disjoint offsets")

    def launcher_spec(self):
        """The validated ``launcher:`` section as a LauncherSpec (in-process when absent)."""
        from .launch import parse_launcher

        return parse_launcher(self.launcher)

    def server_spec(self):
        """The validated ``server:`` section as a ServerSpec, or None."""
        from ..errors import BackendError
        from ..backends.server import ServerSpec

        if self.server is None:
            return None
        if self.backend != "openai":
            raise ConfigError(f"server: starts OpenAI-compatible servers; it needs backend: openai, not {self.backend!r}")
        if "base_url" in self.backend_options:
            raise ConfigError("server: and backend_options.base_url exclude each other (the pipeline points the "
                              "backend at the servers it starts); remove one")
        try:
            return build_config(ServerSpec, self.server, where="server")
        except BackendError as exc:
            raise ConfigError(str(exc)) from None


def _set_dotted(d: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for p in parts[:-1]:
        d = d.setdefault(p, {})
        if not isinstance(d, dict):
            raise ConfigError(f"override {dotted}: {p} is not a section")
    d[parts[-1]] = value


def load_pipeline_config(path: str | Path | None, overrides: list[str] | None = None) -> PipelineConfig:
    """Read a pipeline YAML and apply ``section.key=value`` overrides (e.g. ``search.iterations=8``)."""
    raw: dict[str, Any] = {}
    if path:
        raw = read_yaml_mapping(path, "pipeline config")
    for item in overrides or ():
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. search.iterations=8)")
        key, _, val = item.partition("=")
        _set_dotted(raw, key.strip(), yaml_value(val, f"override {key.strip()}=") if val.strip() else "")
    top = {f.name for f in dataclasses.fields(PipelineConfig)} - {"sections"} | set(SECTIONS)
    unknown = sorted(set(raw) - top - {"sections"})
    if unknown:  # a section name is a valid key too (PipelineConfig alone would not suggest it)
        raise ConfigError(f"{path or 'pipeline'}: unknown key(s) {did_you_mean(unknown, top)}; valid keys: "
                          f"{', '.join(sorted(top))}")
    sections = {name: raw.pop(name) or {} for name in SECTIONS if name in raw}
    for name, sec in sections.items():
        if not isinstance(sec, dict):
            raise ConfigError(f"{path}: section {name!r} must be a mapping of that stage's settings")
    data = raw.pop("data", {}) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: data must be a mapping with train/test")
    spec = build_config(DataSpec, data, where=f"{path or 'pipeline'} [data]")
    return build_config(PipelineConfig, {**raw, "data": spec, "sections": sections}, where=str(path or "pipeline"))
