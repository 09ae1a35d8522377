"""Turning raw records (from any file format or the hub) into validated :class:`Problem` records.

Common schemas are mapped: the problem text from ``problem``/``question``/``prompt``; the answer from
``answer``/``final_answer``, from GSM8K's ``"... #### 72"`` or from the last ``\\boxed{}`` of a MATH
``solution``; the id from ``id``/``problem_id``/``unique_id``, else synthesized from the position (stable
for a given file). Every error names where (``file:line``) and which field, and says how to fix it; all
errors of a file are collected before anything is returned, so nothing downstream sees half a data set.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..answers import last_boxed
from ..io import DataError
from ..types import Problem

PROBLEM_KEYS = ("problem", "question", "prompt", "Problem", "Question")
ANSWER_KEYS = ("answer", "final_answer", "Answer", "expected_answer")
ID_KEYS = ("id", "problem_id", "unique_id", "ID")
MAX_ERRORS = 20
_GSM8K_NUMBER = re.compile(r"-?[\d,]*\.?\d+")


@dataclass
class Row:
    """One raw record and where it came from (``where`` is e.g. ``data.jsonl:12`` or ``repo[test] row 12``)."""

    where: str
    data: Any


@dataclass
class LoadReport:
    """What loading did, for ``astro data check``."""

    mapped: dict[str, str] = field(default_factory=dict)  # our field -> the source field it came from
    synthesized_ids: int = 0
    answers_from: dict[str, int] = field(default_factory=dict)  # "answer" / "#### N" / "boxed solution"


def _first_key(d: dict, keys: tuple[str, ...]) -> str | None:
    return next((k for k in keys if k in d), None)


def _text(value: Any, where: str, key: str) -> str:
    if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
        users = [m.get("content") for m in value if m.get("role") == "user"]  # a chat prompt
        value = users[-1] if users else None
    if not isinstance(value, str):
        raise DataError(f"{where}: field '{key}' must be a string, got {type(value).__name__}")
    if not value.strip():
        raise DataError(f"{where}: field '{key}' is empty; every problem needs text")
    return value


def _answer(d: dict, where: str, report: LoadReport) -> tuple[str, dict[str, Any]]:
    """(answer, extra meta) from the answer field, a GSM8K '#### N' answer, or a MATH boxed solution."""
    key = _first_key(d, ANSWER_KEYS)
    if key is not None:
        value = d[key]
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise DataError(f"{where}: field '{key}' must be a string or a number, got {type(value).__name__}")
        if isinstance(value, float):
            value = str(int(value)) if value.is_integer() else repr(value)
        value = str(value).strip()
        if "####" in value:  # GSM8K: reasoning, then "#### 72"
            reasoning, _, final = value.rpartition("####")
            final = final.strip()
            if _GSM8K_NUMBER.fullmatch(final):
                final = final.replace(",", "")
            report.answers_from["#### N"] = report.answers_from.get("#### N", 0) + 1
            report.mapped.setdefault("answer", f"{key} (after ####)")
            value, extra = final, {"solution": reasoning.strip()}
        else:
            report.answers_from[key] = report.answers_from.get(key, 0) + 1
            report.mapped.setdefault("answer", key)
            extra = {}
        if not value:
            raise DataError(f"{where}: field '{key}' is empty; every problem needs a gold answer")
        return value, extra
    if isinstance(d.get("solution"), str):
        boxed = last_boxed(d["solution"])
        if boxed is None or not boxed.strip():
            raise DataError(f"{where}: no 'answer' field and no \\boxed{{}} answer in 'solution'; add an "
                            "'answer' field")
        report.answers_from["boxed solution"] = report.answers_from.get("boxed solution", 0) + 1
        report.mapped.setdefault("answer", "last \\boxed{} of solution")
        return boxed.strip(), {}
    raise DataError(f"{where}: missing field 'answer' (looked for {', '.join(ANSWER_KEYS)}, or a 'solution' "
                    "with a \\boxed{} answer)")


def _jsonable(value: Any) -> Any:
    """Values from Parquet/Arrow (numpy scalars, dates) as plain JSON."""
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def _lone_surrogate(value: Any, field: str, depth: int = 0) -> str | None:
    """The field (``meta.notes[2]``) of the first string holding a lone surrogate (``"\\ud800"`` in JSON):
    it cannot be written as UTF-8, so the tokenizer or the next JSONL write would fail on it later."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return field
    elif depth < 50 and isinstance(value, dict):
        for k, v in value.items():
            hit = _lone_surrogate(k, f"{field}.<key>", depth + 1) or _lone_surrogate(v, f"{field}.{k}", depth + 1)
            if hit:
                return hit.lstrip(".")
    elif depth < 50 and isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            hit = _lone_surrogate(v, f"{field}[{i}]", depth + 1)
            if hit:
                return hit
    return None


def row_to_problem(row: Row, index: int, source: str, make_id: Callable[[int], str],
                   report: LoadReport, ids_from_data: bool = True) -> Problem:
    d = row.data
    if not isinstance(d, dict):
        raise DataError(f"{row.where}: expected an object with 'problem' and 'answer' fields, got "
                        f"{type(d).__name__}")
    bad = _lone_surrogate(d, "")
    if bad:
        raise DataError(f"{row.where}: field '{bad}' holds a lone surrogate (an invalid character such as "
                        "\\ud800); fix the text or drop that character")
    pkey = _first_key(d, PROBLEM_KEYS)
    if pkey is None:
        raise DataError(f"{row.where}: missing field 'problem' (looked for {', '.join(PROBLEM_KEYS)})")
    report.mapped.setdefault("problem", pkey)
    text = _text(d[pkey], row.where, pkey)
    answer, extra = _answer(d, row.where, report)
    ikey = _first_key(d, ID_KEYS) if ids_from_data else None
    if ikey is None or d[ikey] is None:
        pid = make_id(index)
        report.synthesized_ids += 1
    else:
        pid = d[ikey]
        if isinstance(pid, bool) or not isinstance(pid, (str, int)):
            raise DataError(f"{row.where}: field '{ikey}' must be a string or an integer, got "
                            f"{type(pid).__name__}")
        pid = str(pid).strip()
        if not pid:
            raise DataError(f"{row.where}: field '{ikey}' is empty; give an id or drop the field to have one "
                            "made up from the position")
        report.mapped.setdefault("id", ikey)
    src = d.get("source") if isinstance(d.get("source"), str) and d.get("source") else source
    used = {pkey, ikey, "source", _first_key(d, ANSWER_KEYS)}
    meta = dict(d["meta"]) if isinstance(d.get("meta"), dict) else {}
    meta.update({k: v for k, v in d.items() if k not in used and k != "meta"})
    meta.update(extra)
    problem = Problem(id=pid, problem=text, answer=answer, source=src, meta=_jsonable(meta))
    if "task" in meta:  # a task's own fields (e.g. countdown's numbers and target) must be usable now, not mid-run
        from ..tasks import task_fields

        try:
            task_fields(problem)
        except DataError as exc:
            raise DataError(f"{row.where}: {exc}") from None
    return problem


def to_problems(rows: Iterable[Row], *, source: str, make_id: Callable[[int], str], origin: str,
                report: LoadReport | None = None, ids_from_data: bool = True) -> list[Problem]:
    """Validate and map every row; raises one :class:`DataError` listing up to 20 problems found.

    ``ids_from_data=False`` numbers the rows with ``make_id`` even when they carry ids (named benchmarks
    from the hub get the same ids as the local files, e.g. ``math500-007``; the hub's id stays in meta).
    """
    report = report if report is not None else LoadReport()
    problems: list[Problem] = []
    errors: list[str] = []
    first_seen: dict[str, str] = {}
    n_errors = 0
    for index, row in enumerate(rows):
        try:
            p = row_to_problem(row, index, source, make_id, report, ids_from_data)
        except DataError as exc:
            n_errors += 1
            if len(errors) < MAX_ERRORS:
                errors.append(str(exc))
            continue
        if p.id in first_seen:
            n_errors += 1
            if len(errors) < MAX_ERRORS:
                errors.append(f"{row.where}: field 'id': duplicate id {p.id!r} (first at {first_seen[p.id]}); "
                              "ids must be unique -- rename one, or drop the id fields to have ids made up")
            continue
        first_seen[p.id] = row.where
        problems.append(p)
    if n_errors:
        more = f"\n... and {n_errors - len(errors)} more" if n_errors > len(errors) else ""
        head = f"{origin}: {n_errors} bad record{'s' if n_errors > 1 else ''}:\n" if n_errors > 1 else ""
        raise DataError(head + "\n".join(errors) + more)
    if not problems:
        raise DataError(f"{origin}: no problems found (empty file?); expected one record per problem with "
                        "'problem' and 'answer' fields")
    return problems


def check_synth_options(options: Any, where: str) -> None:
    """Validate a ``{synth: {...}}`` data spec without generating anything (a pipeline config's data)."""
    import inspect

    from ..config import ConfigError
    from ..tasks.math_synth import synthesize, validate_options

    if options is None:
        return
    if not isinstance(options, dict):
        raise ConfigError(f"{where}: expected a mapping of synthesize() options, e.g. {{steps: 2, n: 50}}")
    sig = inspect.signature(synthesize)
    try:
        bound = sig.bind(**options)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}; valid keys: {', '.join(sig.parameters)}") from None
    bound.apply_defaults()
    a = bound.arguments
    for key in ("steps", "n", "seed", "min_value", "max_value", "max_factor"):
        if isinstance(a[key], bool) or not isinstance(a[key], int):
            raise ConfigError(f"{where}.{key}: expected an integer, got {a[key]!r}")
    if not isinstance(a["ops"], str):
        raise ConfigError(f"{where}.ops: expected a string such as '+-*/', got {a['ops']!r}")
    try:
        validate_options(a["steps"], a["n"], a["ops"], a["min_value"], a["max_value"], a["max_factor"])
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
