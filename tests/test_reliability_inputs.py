"""Malformed inputs (issue 14, item 3): every one ends with exit != 0 and exactly one ``error:`` line that
names the file:line, the field or the key -- no traceback, no partial output, earlier outputs untouched.

Each case runs the real CLI entry point (``astro_reasoner.cli.main``) in-process; the whole working directory
is hashed before and after, so a case that writes anything (an output dir, a lock, a truncated file) fails.
"""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest

from astro_reasoner.cli import main

OK_PROBLEMS = '{"id": "p1", "problem": "What is 1 + 1?", "answer": "2"}\n'
PIPELINE = """run_dir: {run}
model: tiny
data:
  train: {{synth: {{steps: 1, n: 4}}}}
  test: {{synth: {{steps: {steps}, n: 2, seed: 1}}}}
search: {{iterations: 2}}
"""


def _write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")
    return path


def _csv(rows: list[list[str]]) -> str:
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    return buf.getvalue()


def _snapshot(root: Path) -> dict[str, str]:
    """Every file and directory under root (with a hash of its bytes): nothing may appear, change or go."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


# (id, files to create {name: content}, argv (with {d} for the directory), what the error line must name)
CASES = [
    ("5000-digit integer", {"p.jsonl": '{"problem": "x", "answer": ' + "7" * 5000 + "}\n"},
     ["data", "check", "{d}/p.jsonl"], "p.jsonl:1"),
    ("100k-deep nesting", {"p.jsonl": OK_PROBLEMS + '{"problem": ' + "[" * 100_000 + "]" * 100_000 + "}\n"},
     ["data", "check", "{d}/p.jsonl"], "p.jsonl:2"),
    ("100k-deep JSON array file", {"p.json": "[" * 100_000 + "]" * 100_000},
     ["data", "check", "{d}/p.json"], "p.json"),
    ("non-UTF-8 CSV", {"p.csv": b"problem,answer\nWhat is 1+1?,2\n\xff\xfe bad,3\n"},
     ["data", "check", "{d}/p.csv"], "p.csv:3"),
    ("CSV field over 128 KiB", {"p.csv": _csv([["problem", "answer"], ["x" * (129 << 10), "2"]])},
     ["data", "check", "{d}/p.csv"], "p.csv:2"),
    ("lone surrogate", {"p.jsonl": OK_PROBLEMS + '{"problem": "bad \\ud800 text", "answer": "3"}\n'},
     ["data", "check", "{d}/p.jsonl"], "p.jsonl:2: field 'problem'"),
    ("lone surrogate in meta", {"p.jsonl": '{"problem": "ok", "answer": "3", "meta": {"note": ["\\udfff"]}}\n'},
     ["data", "check", "{d}/p.jsonl"], "field 'meta.note[0]'"),
    ("invalid YAML", {"p.jsonl": OK_PROBLEMS, "c.yaml": "k: 2\niterations: [1,\n"},
     ["search", "--problems", "{d}/p.jsonl", "--out", "{d}/R", "--config", "{d}/c.yaml"], "c.yaml:3"),
    ("non-UTF-8 YAML", {"p.jsonl": OK_PROBLEMS, "c.yaml": b"k: 2\n# caf\xe9\n"},
     ["search", "--problems", "{d}/p.jsonl", "--out", "{d}/R", "--config", "{d}/c.yaml"], "c.yaml:2"),
    ("!!python tag", {"p.jsonl": OK_PROBLEMS, "c.yaml": "k: !!python/object/apply:os.system [touch {d}/pwned]\n"},
     ["search", "--problems", "{d}/p.jsonl", "--out", "{d}/R", "--config", "{d}/c.yaml"], "c.yaml:1"),
    ("!!python tag in an override", {"p.jsonl": OK_PROBLEMS},
     ["search", "--problems", "{d}/p.jsonl", "--out", "{d}/R", "k=!!python/name:os.system"], "override k="),
    ("k=[1,", {"p.jsonl": OK_PROBLEMS},
     ["search", "--problems", "{d}/p.jsonl", "--out", "{d}/R", "k=[1,"], "override k="),
    ("k=1e400", {"p.jsonl": OK_PROBLEMS},
     ["search", "--problems", "{d}/p.jsonl", "--out", "{d}/R", "k=1e400"], ": k:"),
    ("5000-digit override", {"p.jsonl": OK_PROBLEMS},
     ["search", "--problems", "{d}/p.jsonl", "--out", "{d}/R", "iterations=" + "9" * 5000], "override iterations="),
    ("max_tokens=.inf", {"p.jsonl": OK_PROBLEMS},
     ["eval", "--model", "tiny", "--out", "{d}/E", "--datasets", "{d}/p.jsonl", "max_tokens=.inf"], "max_tokens"),
    ("instruction with a bare \\boxed{}",  # used to crash after eval_config.json was written
     {"p.jsonl": OK_PROBLEMS, "c.yaml": 'eval:\n  instruction: "Solve {problem} Put it in \\\\boxed{}."\n'},
     ["eval", "--model", "{m}", "--out", "{d}/E", "--datasets", "{d}/p.jsonl", "--config", "{d}/c.yaml",
      "n=1", "k=1", "temperature=0", "max_tokens=4"], "instruction: {}"),
    ("--until bogus", {"pipe.yaml": PIPELINE.format(run="{d}/run", steps=1)},
     ["pipeline", "{d}/pipe.yaml", "--until", "bogus"], "bogus"),
    ("--force bogus", {"pipe.yaml": PIPELINE.format(run="{d}/run", steps=1)},
     ["pipeline", "{d}/pipe.yaml", "--force", "bogus"], "bogus"),
    ("synth steps 99 (--status)", {"pipe.yaml": PIPELINE.format(run="{d}/run", steps=99)},
     ["pipeline", "{d}/pipe.yaml", "--status"], "data.test.synth"),
    ("synth steps 99 (run)", {"pipe.yaml": PIPELINE.format(run="{d}/run", steps=99)},
     ["pipeline", "{d}/pipe.yaml"], "steps=99"),
    ("check --gold ''", {}, ["check", "--gold", "", "--completion", "The answer is 2."], "--gold"),
    ("trees file that is not JSONL", {"R/trees.jsonl": '{\n  "problem_id": "p1"\n}', "p.jsonl": OK_PROBLEMS},
     ["trees", "stats", "{d}/R"], "trees.jsonl:1"),
]


def _run(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.err + captured.out


@pytest.mark.parametrize("name,files,argv,names", CASES, ids=[c[0] for c in CASES])
def test_malformed_input_gives_one_error_line(tmp_path, capsys, request, name, files, argv, names):
    if "{m}" in argv:  # the tiny model: the error must come before (and without) any work with it
        model = str(request.getfixturevalue("tiny_model_dir"))
        argv = [a.replace("{m}", model) for a in argv]
        capsys.readouterr()  # building the fixture printed progress bars
    for rel, content in files.items():
        if isinstance(content, str):
            content = content.replace("{d}", str(tmp_path))
        _write(tmp_path / rel, content)
    before = _snapshot(tmp_path)
    code, text = _run([a.replace("{d}", str(tmp_path)) for a in argv], capsys)
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert code != 0, text
    assert len(errors) == 1, text
    assert names in errors[0], errors[0]
    assert "Traceback" not in text
    assert len(text.strip().splitlines()) == 1, text  # the error line is all that is printed
    assert _snapshot(tmp_path) == before  # no partial output, earlier files byte-identical
    assert not (tmp_path / "pwned").exists()


def _fail_with(err: int):
    """A replacement for tempfile.mkstemp / open that fails like a full disk or a forbidden directory."""
    def fail(*args, **kwargs):
        raise OSError(err, os.strerror(err))
    return fail


@pytest.mark.parametrize("err,fix", [(errno.ENOSPC, "free some disk space"), (errno.EACCES, "permissions")])
def test_disk_full_and_permission_denied_are_one_line(tmp_path, capsys, monkeypatch, err, fix):
    import tempfile

    _write(tmp_path / "p.jsonl", OK_PROBLEMS)
    monkeypatch.setattr(tempfile, "mkstemp", _fail_with(err))
    code, text = _run(["data", "convert", str(tmp_path / "p.jsonl"), "-o", str(tmp_path / "out.jsonl")], capsys)
    assert code == 1 and "Traceback" not in text
    (line,) = text.strip().splitlines()
    assert line.startswith("error: ") and "out.jsonl" in line and fix in line, line
    assert not (tmp_path / "out.jsonl").exists()


def test_append_on_a_full_disk_names_the_file_and_keeps_earlier_records(tmp_path, monkeypatch):
    """An append that fails mid-way (ENOSPC) raises an OSError naming the file; records already there stay."""
    from astro_reasoner import io
    from astro_reasoner.errors import format_error

    path = tmp_path / "trees.jsonl"
    io.append_jsonl(path, [{"problem_id": "a"}])
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", _fail_with(errno.ENOSPC))
    with pytest.raises(OSError) as info:
        io.append_jsonl(path, [{"problem_id": "b"}])
    monkeypatch.setattr(os, "fsync", real_fsync)
    msg = format_error(info.value)
    assert msg is not None and str(path) in msg and "resumes" in msg
    assert io.done_ids(path) >= {"a"}


def test_file_name_is_not_a_format_string(tmp_path):
    from astro_reasoner.data import load_problems

    for name in ("prob{lems}.jsonl", "p{i.__class__.__mro__}.jsonl", "p{i:05d}{}.jsonl"):
        path = _write(tmp_path / name, OK_PROBLEMS.replace('"id": "p1", ', ""))
        (p,) = load_problems(str(path))
        assert p.id == f"{path.stem}-00000"


def test_utf8_bom_is_accepted(tmp_path):
    from astro_reasoner.config import read_yaml_mapping
    from astro_reasoner.data import load_problems
    from astro_reasoner.io import read_json, read_jsonl

    bom = "\ufeff"
    assert load_problems(str(_write(tmp_path / "a.jsonl", bom + OK_PROBLEMS)))[0].id == "p1"
    assert load_problems(str(_write(tmp_path / "a.json", bom + "[" + OK_PROBLEMS + "]")))[0].id == "p1"
    assert load_problems(str(_write(tmp_path / "a.csv", bom + "problem,answer\nWhat?,2\n")))[0].answer == "2"
    assert list(read_jsonl(_write(tmp_path / "r.jsonl", bom + OK_PROBLEMS)))[0]["id"] == "p1"
    assert read_json(_write(tmp_path / "r.json", bom + '{"a": 1}')) == {"a": 1}
    assert read_yaml_mapping(_write(tmp_path / "c.yaml", bom + "k: 4\n")) == {"k": 4}


def test_a_key_given_twice_in_a_yaml_config_is_refused_with_both_lines(tmp_path):
    """PyYAML keeps the last of two equal keys silently: a recipe edited twice ran a setting nobody saw."""
    from astro_reasoner.config import ConfigError, read_yaml_mapping, yaml_value

    path = _write(tmp_path / "c.yaml", "search:\n  k: 3\n  verify_steps: true\n  verify_steps: false\n")
    with pytest.raises(ConfigError, match=r"c.yaml:4: .*'verify_steps' is given twice \(first on line 3\)"):
        read_yaml_mapping(path)
    with pytest.raises(ConfigError, match="given twice"):
        yaml_value("{a: 1, a: 2}", "k=")
    assert read_yaml_mapping(_write(tmp_path / "ok.yaml", "a: {k: 1}\nb: {k: 1}\n")) == {"a": {"k": 1}, "b": {"k": 1}}


def test_atomic_writes_honour_the_umask_like_appends(tmp_path):
    from astro_reasoner.io import append_jsonl, write_json, write_jsonl

    old = os.umask(0o022)
    try:
        append_jsonl(tmp_path / "a.jsonl", [{"x": 1}])
        write_jsonl(tmp_path / "w.jsonl", [{"x": 1}])
        write_json(tmp_path / "w.json", {"x": 1})
        os.umask(0o077)
        write_json(tmp_path / "private.json", {"x": 1})
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == {"a.jsonl": 0o644, "w.jsonl": 0o644, "w.json": 0o644, "private.json": 0o600}


def test_status_does_not_need_the_run_to_be_valid_to_report_synth(tmp_path, capsys):
    """`--status` of a good config still works (the synth check is not over-eager)."""
    _write(tmp_path / "pipe.yaml", PIPELINE.format(run=tmp_path / "run", steps=2))
    code, text = _run(["pipeline", str(tmp_path / "pipe.yaml"), "--status"], capsys)
    assert code == 0 and "todo" in text, text
