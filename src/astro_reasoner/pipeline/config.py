"""`PipelineConfig`: the top level of a pipeline YAML; each stage keeps its own config dataclass.

A pipeline file has a few top-level keys (run dir, model, backend, data) and one section per stage whose
keys are exactly that stage's config dataclass fields (``search:`` -> ``SearchConfig``...). Every section
is validated before the first stage starts, so a typo fails in a second, not after an hour of search.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..config import ConfigError, build_config, read_yaml_mapping

SECTIONS = ("search", "clone", "sft", "rl_filter", "rl", "eval", "report")


@dataclass
class DataSpec:
    """``train``/``test``: a problem spec for ``load_problems`` (path, benchmark name, hub id) or a
    ``synth`` mapping for the synthetic generator. ``eval``: extra datasets evaluated besides ``test``."""

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
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)

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
        if self.data.train is None or self.data.test is None:
            raise ConfigError("data: both data.train and data.test are needed (a path, a benchmark name, "
                              "or {synth: {steps: 2, n: 50, seed: 0}})")


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
        _set_dotted(raw, key.strip(), yaml.safe_load(val) if val.strip() else "")
    sections = {name: raw.pop(name) or {} for name in SECTIONS if name in raw}
    for name, sec in sections.items():
        if not isinstance(sec, dict):
            raise ConfigError(f"{path}: section {name!r} must be a mapping of that stage's settings")
    data = raw.pop("data", {}) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: data must be a mapping with train/test")
    spec = build_config(DataSpec, data, where=f"{path or 'pipeline'} [data]")
    return build_config(PipelineConfig, {**raw, "data": spec, "sections": sections}, where=str(path or "pipeline"))
