"""Stage configs: one dataclass per stage, filled from defaults < YAML file < ``key=value`` overrides.

Each stage module defines its own dataclass (e.g. ``search.config.SearchConfig``) and gives it a
``validate()`` method that raises :class:`ConfigError` with the cause and the fix. This module holds only
the shared loading logic.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """An invalid setting. The message says which key, why, and what to do instead."""


def require(ok: bool, message: str) -> None:
    """Raise ``ConfigError(message)`` unless ``ok``: one line per invariant in a ``validate()`` method."""
    if not ok:
        raise ConfigError(message)


def parse_overrides(items: list[str] | tuple[str, ...] | None) -> dict[str, Any]:
    """``["k=1", "a.b=x"]`` -> ``{"k": 1, "a.b": "x"}``; values are parsed as YAML scalars/lists."""
    out: dict[str, Any] = {}
    for item in items or ():
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. iterations=20)")
        key, _, raw = item.partition("=")
        out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
    return out


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: cannot be {value!r}")
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            value = [value]
        inner = args[0] if args else Any
        items = [_coerce(v, inner, key) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        try:
            f = float(value)
        except ValueError:
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
        if f != int(f):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return int(f)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if tp is str:
        return str(value)
    return value


def build_config(cls: type[T], values: dict[str, Any] | None = None, *, where: str = "config") -> T:
    """Build and validate ``cls`` from a flat mapping; unknown keys are an error that lists valid ones."""
    values = dict(values or {})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} for {cls.__name__}; "
                          f"valid keys: {', '.join(sorted(names))}")
    kwargs = {k: _coerce(v, hints[k], f"{where}: {k}") for k, v in values.items()}
    cfg = cls(**kwargs)
    validate = getattr(cfg, "validate", None)
    if callable(validate):
        validate()
    return cfg


def read_yaml_mapping(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """A YAML file whose top level is a mapping (an empty file is ``{}``); errors say which file and why."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{what} {path} not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def yaml_section(path: str | Path | None, section: str) -> str | None:
    """``section`` if the YAML file at ``path`` has that top-level key (a pipeline config holding every
    stage's settings), else None (the whole file is this stage's). A missing file gives None: ``load_config``
    reports it."""
    if path is None or not Path(path).exists():
        return None
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    return section if isinstance(data, dict) and section in data else None


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | dict | None = None,
                *, section: str | None = None) -> T:
    """defaults < YAML file (optionally one ``section`` of it) < overrides, then ``validate()``."""
    values: dict[str, Any] = {}
    where = cls.__name__
    if path:
        data = read_yaml_mapping(path)
        if section is not None:
            data = data.get(section) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping{f' under {section!r}' if section else ''}")
        values.update(data)
        where = str(path) + (f" [{section}]" if section else "")
    if isinstance(overrides, dict):
        values.update(overrides)
    else:
        values.update(parse_overrides(overrides))
    return build_config(cls, values, where=where)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
