"""Loading problems: a file path (JSONL, JSON, Parquet, CSV), a named benchmark, or a hub data set id.

``load_problems(spec)`` resolves ``spec`` in this order:
1. a named benchmark -- ``math500``, ``amc23``, ``aime24``, ``gsm8k`` (``gsm8k:train`` / ``gsm8k:test``):
   the local file ``<data_dir>/<name>.jsonl`` (or .json/.parquet/.csv) when a data directory is given
   (``data_dir=``, ``--data-dir``, ``ASTRO_DATA_DIR``), else the hub data set it names (ASTRO §3.1 evaluates
   on MATH-500, AMC 2023 and AIME 2024);
2. an existing file;
3. a hub id ``owner/name[@config][:split]`` loaded with ``datasets.load_dataset``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..io import DataError, jsonl_rows, parse_json, write_jsonl
from ..types import Problem
from .validate import LoadReport, Row, to_problems

DATA_DIR_ENV = "ASTRO_DATA_DIR"
FORMATS = (".jsonl", ".json", ".parquet", ".csv")
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+(@[\w.-]+)?(:[\w.-]+)?$")


@dataclass(frozen=True)
class Benchmark:
    hub: str
    config: str | None
    splits: tuple[str, ...]  # the first one is the default
    source: str  # "{split}" is filled in
    file: str  # stem of the local file in a data directory
    id_format: str  # "{i}" is the position in the split


BENCHMARKS = {
    "math500": Benchmark("HuggingFaceH4/MATH-500", None, ("test",), "MATH-500", "math500", "math500-{i:03d}"),
    "amc23": Benchmark("math-ai/amc23", None, ("test",), "AMC 2023", "amc23", "amc23-{i:03d}"),
    "aime24": Benchmark("HuggingFaceH4/aime_2024", None, ("train",), "AIME 2024", "aime24", "aime24-{i:03d}"),
    "gsm8k": Benchmark("openai/gsm8k", "main", ("test", "train"), "GSM8K {split}", "gsm8k_{split}",
                       "gsm8k-{split}-{i:04d}"),
}


# ---- reading files ----------------------------------------------------------------------------------------------

def _rows_jsonl(path: Path) -> Iterator[Row]:
    # The project's one JSONL reader and bad-line policy; non-object lines are reported by validation.
    for lineno, data in jsonl_rows(path):
        yield Row(f"{path}:{lineno}", data)


def _rows_json(path: Path) -> Iterator[Row]:
    """A JSON array of objects (or an object holding one such array), with the line each element starts on."""
    text = _read_text(path)
    top = parse_json(text, path)  # the same errors as every JSON file we read
    if isinstance(top, dict):
        lists = [k for k, v in top.items() if isinstance(v, list)]
        if len(lists) != 1:
            raise DataError(f"{path}: expected a JSON array of problems (or an object with exactly one list, "
                            f"e.g. {{\"data\": [...]}}); found keys {sorted(top)[:10]}")
        for i, item in enumerate(top[lists[0]]):
            yield Row(f"{path}: {lists[0]}[{i}]", item)
        return
    if not isinstance(top, list):
        raise DataError(f"{path}: expected a JSON array of problems, got {type(top).__name__}")
    # Walk the (valid) array once more, element by element, to know the line each element starts on.
    decoder = json.JSONDecoder()
    pos = _skip_ws(text, _skip_ws(text, 0) + 1)  # just after '['
    line = text.count("\n", 0, pos) + 1
    while pos < len(text) and text[pos] != "]":
        item, end = decoder.raw_decode(text, pos)
        yield Row(f"{path}:{line}", item)
        line += text.count("\n", pos, end)
        nxt = _skip_ws(text, end)
        if nxt < len(text) and text[nxt] == ",":
            nxt = _skip_ws(text, nxt + 1)
        line += text.count("\n", end, nxt)
        pos = nxt


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _read_text(path: Path) -> str:
    """The file as UTF-8 text (a leading BOM dropped); else a DataError naming the line of the bad byte."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 text (byte {raw[exc.start]:#04x}); save the file as UTF-8") \
            from None


def _rows_csv(path: Path) -> Iterator[Row]:
    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # e.g. a field over the csv module's 128 KiB limit
            raise DataError(f"{path}:{reader.line_num + 1}: not valid CSV ({exc}); fix that row") from None
        yield Row(f"{path}:{reader.line_num}", {k: v for k, v in row.items() if k is not None})


def _rows_parquet(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
    for i, rec in enumerate(table.to_pylist()):
        yield Row(f"{path}: row {i + 1}", rec)


READERS = {".jsonl": _rows_jsonl, ".ndjson": _rows_jsonl, ".json": _rows_json, ".parquet": _rows_parquet,
           ".csv": _rows_csv}


def load_file(path: str | os.PathLike, *, source: str | None = None, id_format: str | None = None,
              report: LoadReport | None = None) -> list[Problem]:
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path}: unknown file type {path.suffix!r}; use one of {', '.join(READERS)}")
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    # The file name is data, never a format string: "prob{lems}.jsonl" must not be formatted.
    make_id = (lambda i: id_format.format(i=i)) if id_format else (lambda i: f"{path.stem}-{i:05d}")
    return to_problems(reader(path), source=source or path.stem, make_id=make_id, origin=str(path), report=report)


# ---- the hub ----------------------------------------------------------------------------------------------------

def load_hub(repo: str, config: str | None = None, split: str = "test", *, source: str | None = None,
             id_format: str | None = None, report: LoadReport | None = None) -> list[Problem]:
    """A data set from the Hugging Face hub (needs network, or a copy in the local ``datasets`` cache)."""
    import datasets

    try:
        ds = datasets.load_dataset(repo, config, split=split)
    except Exception as exc:  # noqa: BLE001 - offline, unknown repo, bad split: all say the same to the user
        what = f"{repo!r}" + (f" (config {config!r})" if config else "")
        raise DataError(
            f"could not load {what}, split {split!r}, from the hub: {type(exc).__name__}: {str(exc)[:300]}\n"
            f"Offline? Download it once on a machine with network, or point --data-dir / ${DATA_DIR_ENV} at a "
            "directory of JSONL files (one object per line with 'problem' and 'answer')."
        ) from None
    name = repo.split("/")[-1]
    make_id = (lambda i: id_format.format(i=i)) if id_format else (lambda i: f"{name}-{split}-{i:05d}")
    rows = (Row(f"{repo}[{split}] row {i + 1}", rec) for i, rec in enumerate(ds))
    return to_problems(rows, source=source or repo, make_id=make_id, origin=repo,
                       report=report, ids_from_data=id_format is None)


# ---- resolution -------------------------------------------------------------------------------------------------

def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path | None:
    value = data_dir if data_dir not in (None, "") else os.environ.get(DATA_DIR_ENV) or None
    return Path(value).expanduser() if value else None


def _benchmark(name: str, data_dir: Path | None, report: LoadReport | None) -> list[Problem]:
    base, _, split = name.partition(":")
    bench = BENCHMARKS[base]
    split = split or bench.splits[0]
    if split not in bench.splits:
        raise DataError(f"{base} has no split {split!r}; use one of: " + ", ".join(f"{base}:{s}" for s in
                                                                                  bench.splits))
    source, stem = bench.source.format(split=split), bench.file.format(split=split)
    id_format = bench.id_format.replace("{split}", split)
    if data_dir is None:
        return load_hub(bench.hub, bench.config, split, source=source, id_format=id_format, report=report)
    for ext in FORMATS:
        if (data_dir / (stem + ext)).is_file():
            return load_file(data_dir / (stem + ext), source=source, id_format=id_format, report=report)
    raise DataError(f"{name}: no {stem}.jsonl (or {', '.join(FORMATS[1:])}) in the data directory {data_dir}; "
                    f"put the file there, or unset --data-dir/${DATA_DIR_ENV} to load {bench.hub} from the hub")


def load_problems(spec: str | os.PathLike, data_dir: str | os.PathLike | None = None, limit: int | None = None,
                  *, report: LoadReport | None = None) -> list[Problem]:
    """Problems from a file, a named benchmark, or a hub id (see the module docstring); the first ``limit``."""
    if limit is not None and limit < 1:
        raise DataError(f"limit={limit}: must be at least 1 (or unset for all problems)")
    text = str(spec).strip()
    if text.split(":")[0].lower() in BENCHMARKS and not Path(text).exists():
        problems = _benchmark(text.lower(), resolve_data_dir(data_dir), report)
    elif Path(text).expanduser().exists():
        problems = load_file(Path(text).expanduser(), report=report)
    elif _HUB_ID.match(text) and Path(text).suffix.lower() not in READERS:
        repo, _, split = text.partition(":")
        repo, _, config = repo.partition("@")
        problems = load_hub(repo, config or None, split or "test", report=report)
    else:
        raise DataError(f"{text}: not a file, a named benchmark ({', '.join(BENCHMARKS)}; gsm8k:train), or a "
                        "hub id (owner/name[@config][:split])")
    return problems[:limit] if limit else problems


def write_problems(path: str | os.PathLike, problems: list[Problem]) -> int:
    """Write problems as JSONL (temp file + rename: a crash never leaves half a file). Returns the count."""
    return write_jsonl(path, (p.to_json() for p in problems))
