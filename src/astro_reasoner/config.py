"""Stage configs: one dataclass per stage, filled from defaults < YAML file < ``key=value`` overrides.

Each stage module defines its own dataclass (e.g. ``search.config.SearchConfig``) whose ``__post_init__``
runs its ``validate()`` method, which raises :class:`ConfigError` naming the field, the cause and the fix: a
stage config is valid from the moment it exists. This module holds only the shared loading logic.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import ConfigError  # noqa: F401 (defined in errors.py, which imports nothing of ours; re-exported)

T = TypeVar("T")


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
        out[key.strip()] = yaml_value(raw, f"override {key.strip()}=") if raw.strip() else ""
    return out


def did_you_mean(unknown: list[str] | tuple[str, ...], valid) -> str:
    """``"learning_rat (did you mean learning_rate?), bogus"``: each unknown key with its closest valid one."""
    import difflib

    valid = sorted(valid)
    out = []
    for key in unknown:
        close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
        out.append(f"{key} (did you mean {close[0]}?)" if close else key)
    return ", ".join(out)


def flag_overrides(items: list[str] | tuple[str, ...] | None) -> list[str]:
    """TRL/argparse-style arguments as ``key=value`` overrides: ``--learning_rate 1e-5``, ``--learning-rate=1e-5``
    and a lone ``--flag`` (= true) become ``learning_rate=1e-5`` / ``flag=true``; other items pass unchanged.
    A token after ``--key`` is its value unless it is another ``--option`` or a ``key=value`` override."""
    import re

    items = list(items or ())
    out: list[str] = []
    i = 0
    while i < len(items):
        item = items[i]
        i += 1
        if not item.startswith("--") or len(item) == 2:
            out.append(item)
            continue
        key, eq, value = item[2:].partition("=")
        key = key.replace("-", "_")
        if not eq:
            nxt = items[i] if i < len(items) else None
            if nxt is not None and not nxt.startswith("--") and not re.match(r"^[A-Za-z_][\w.]*=", nxt):
                value, i = nxt, i + 1
            else:
                value = "true"
        out.append(f"{key}={value}")
    return out


class StrictSafeLoader(yaml.SafeLoader):
    """PyYAML's safe loader (no ``!!python`` tags), except that a key given twice in one mapping is an error:
    PyYAML keeps the last value silently, so an edited recipe could hold two settings and run the one its
    reader did not see. (PyYAML has no option for this; the check is ours.)"""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: the base class reports it
                    continue
                if first is not None and key != "<<":
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} is given twice (first on line {first}); keep one",
                        key_node.start_mark)
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def safe_load(text: str) -> Any:
    """``yaml.safe_load`` that refuses duplicate keys (StrictSafeLoader)."""
    return yaml.load(text, Loader=StrictSafeLoader)  # noqa: S506 (a SafeLoader subclass)


def yaml_value(text: str, where: str) -> Any:
    """``text`` parsed as YAML (safe loader: no ``!!python`` tags); any failure is one-line ConfigError."""
    try:
        return safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}{text[:80]!r}: not a valid YAML value ({yaml_problem(exc)}); quote a string, "
                          "close brackets, e.g. k=4 or stop='[a, b]'") from None
    except (ValueError, RecursionError) as exc:  # a 5,000-digit integer, 100k nested brackets
        raise ConfigError(f"{where}{text[:80]!r}: {_too_big(exc)}") from None


def yaml_problem(exc: BaseException) -> str:
    """A YAML error in one line (PyYAML's own message spans several, with a caret drawing)."""
    parts = [getattr(exc, "context", None), getattr(exc, "problem", None)]
    mark = getattr(exc, "problem_mark", None)
    text = "; ".join(p for p in parts if p) or str(exc).splitlines()[0]
    return f"{text}, line {mark.line + 1} column {mark.column + 1}" if mark is not None else text


def _too_big(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply to read"
    return f"value out of range ({str(exc)[:120]})"


def check_template(template: str, key: str, fields: tuple[str, ...]) -> None:
    """A ``str.format`` template must use exactly ``fields`` (plain ``{name}``, each at least once): a stray
    ``\\boxed{}`` would raise IndexError at the first prompt, and ``{problem.__class__}`` would read attributes."""
    import string

    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"{key}: not a valid template ({exc}); write literal braces doubled, e.g. "
                          "\\boxed{{}}") from None
    used = set()
    for _, name, spec, conv in parts:
        if name is None:
            continue
        if name not in fields or spec or conv:
            raise ConfigError(f"{key}: {{{name}{'!' + conv if conv else ''}{':' + spec if spec else ''}}} is not a "
                              f"placeholder; use only {', '.join('{' + f + '}' for f in fields)} and write literal "
                              "braces doubled, e.g. \\boxed{{}}")
        used.add(name)
    missing = [f for f in fields if f not in used]
    if missing:
        raise ConfigError(f"{key}: must contain the placeholder {{{missing[0]}}} where the {missing[0]} goes")


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
            raise ConfigError(f"{key}: expected an integer, got {_show(value)}")
        if isinstance(value, int):
            if abs(value) > 2**63:
                raise ConfigError(f"{key}: {_show(value)} is out of range; give an integer below 2**63")
            return value
        try:
            f = float(value)
        except (ValueError, OverflowError):
            raise ConfigError(f"{key}: expected an integer, got {_show(value)}") from None
        if not math.isfinite(f) or f != int(f) or abs(f) > 2**63:
            raise ConfigError(f"{key}: expected a (finite) integer, got {_show(value)}")
        return int(f)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            f = float(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{key}: expected a number, got {_show(value)}") from None
        if not math.isfinite(f):
            raise ConfigError(f"{key}: expected a finite number, got {_show(value)}")
        return f
    if tp is str:
        if isinstance(value, (list, tuple, dict)):  # not silently "['a', 'b']": a union tries its next type
            raise ConfigError(f"{key}: expected a string, got {_show(value)}")
        return str(value)
    return value


def _show(value: Any) -> str:
    """``repr`` cut to 60 characters (and safe for huge integers, whose str() Python refuses)."""
    try:
        text = repr(value)
    except ValueError:
        return "an integer with thousands of digits"
    return text if len(text) <= 60 else text[:57] + "..."


def build_config(cls: type[T], values: dict[str, Any] | None = None, *, where: str = "config") -> T:
    """Build and validate ``cls`` from a flat mapping; unknown keys are an error that lists valid ones."""
    values = dict(values or {})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    renamed = getattr(cls, "RENAMED_KEYS", {})  # keys a config class had before: name the fix
    for key in unknown:
        if key in renamed:
            raise ConfigError(f"{where}: {key!r} is no longer a key of {cls.__name__}; use {renamed[key]}")
    if unknown:
        # A TRL config has ~200 keys: listing them all would bury the message
        listing = (f"valid keys: {', '.join(sorted(names))}" if len(names) <= 60 else
                   f"valid keys: the {len(names)} fields of {cls.__name__} (TRL's documented options plus ours)")
        raise ConfigError(f"{where}: unknown key(s) {did_you_mean(unknown, names)} for {cls.__name__}; {listing}")
    kwargs = {k: _coerce(v, hints[k], f"{where}: {k}") for k, v in values.items()}
    cfg = cls(**kwargs)  # stage configs validate here, in __post_init__
    validate = getattr(cfg, "validate", None)  # other config classes (e.g. the pipeline's) validate on demand
    if callable(validate):
        validate()
    return cfg


def read_yaml_mapping(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """A YAML file whose top level is a mapping (an empty file is ``{}``); errors say which file and why."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{what} {path} not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte {exc.object[exc.start]:#04x}); save the file as "
                          "UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror})") from None
    try:
        data = safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: not valid YAML ({yaml_problem(exc)}); only plain YAML is read (no "
                          "!!python tags)") from None
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"{path}: {_too_big(exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def yaml_section(path: str | Path | None, section: str) -> str | None:
    """``section`` if the YAML file at ``path`` has that top-level key (a pipeline config holding every
    stage's settings), else None (the whole file is this stage's). A missing file gives None: ``load_config``
    reports it."""
    if path is None or not Path(path).exists():
        return None
    data = read_yaml_mapping(path)
    return section if section in data else None


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
