"""Problem loading: every file format, schema mapping, named benchmarks, hub ids, and bad-input errors."""

from __future__ import annotations

import json

import pytest

from astro_reasoner.cli import main
from astro_reasoner.data import LoadReport, load_problems, write_problems
from astro_reasoner.io import DataError
from astro_reasoner.types import Problem

ROWS = [{"id": "a", "problem": "What is 2 + 2?", "answer": "4"},
        {"id": "b", "problem": "What is half of 3?", "answer": "\\frac{3}{2}", "level": 2}]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_jsonl_json_csv_parquet_load_the_same(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = [write_jsonl(tmp_path / "p.jsonl", ROWS)]
    (tmp_path / "p.json").write_text(json.dumps(ROWS, indent=2), encoding="utf-8")
    (tmp_path / "wrapped.json").write_text(json.dumps({"data": ROWS}), encoding="utf-8")
    (tmp_path / "p.csv").write_text("id,problem,answer,level\na,What is 2 + 2?,4,\n"
                                    "b,What is half of 3?,\\frac{3}{2},2\n", encoding="utf-8")
    pq.write_table(pa.Table.from_pylist([{"level": None, **ROWS[0]}, ROWS[1]]), tmp_path / "p.parquet")
    paths += [tmp_path / "p.json", tmp_path / "wrapped.json", tmp_path / "p.csv", tmp_path / "p.parquet"]
    for path in paths:
        problems = load_problems(path)
        assert [(p.id, p.problem, p.answer) for p in problems] == [(r["id"], r["problem"], r["answer"])
                                                                   for r in ROWS], path
        assert problems[0].source == path.stem
    assert load_problems(tmp_path / "p.parquet")[1].meta == {"level": 2}


def test_schema_mapping(tmp_path):
    rows = [
        {"question": "Q1?", "answer": "Natalia sold 48/2 = 24 clips.\n#### 1,024"},  # GSM8K raw
        {"problem": "Q2?", "solution": "So $x = \\boxed{\\frac{1}{2}}$."},  # MATH raw: answer in the solution
        {"prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "Q3?"}], "final_answer": 7},
        {"problem": "Q4?", "answer": 2.5, "unique_id": "test/algebra/1.json", "source": "mine"},
        {"Question": "Q5?", "Answer": 12.0},
    ]
    report = LoadReport()
    problems = load_problems(write_jsonl(tmp_path / "mixed.jsonl", rows), report=report)
    assert [p.problem for p in problems] == ["Q1?", "Q2?", "Q3?", "Q4?", "Q5?"]
    assert [p.answer for p in problems] == ["1024", "\\frac{1}{2}", "7", "2.5", "12"]
    assert problems[0].meta["solution"] == "Natalia sold 48/2 = 24 clips."
    assert problems[1].meta["solution"].startswith("So $x")
    assert problems[3].id == "test/algebra/1.json" and problems[3].source == "mine"
    assert problems[0].id == "mixed-00000" and problems[4].id == "mixed-00004"  # made up from the position
    assert report.synthesized_ids == 4 and report.answers_from["#### N"] == 1


def test_synthesized_ids_are_stable_and_limit_keeps_them(tmp_path):
    path = write_jsonl(tmp_path / "noids.jsonl", [{"problem": f"Q{i}", "answer": str(i)} for i in range(12)])
    assert [p.id for p in load_problems(path)] == [p.id for p in load_problems(path)]
    assert [p.id for p in load_problems(path, limit=3)] == ["noids-00000", "noids-00001", "noids-00002"]


def test_named_benchmarks_from_a_data_dir(data_dir, monkeypatch):
    sizes = {"math500": 500, "amc23": 40, "aime24": 30, "gsm8k": 1319, "gsm8k:test": 1319, "gsm8k:train": 7473}
    for name, size in sizes.items():
        problems = load_problems(name, data_dir=data_dir)
        assert len(problems) == size and len({p.id for p in problems}) == size
    assert load_problems("math500", data_dir=data_dir)[0].id == "math500-000"
    assert load_problems("gsm8k:train", data_dir=data_dir, limit=1)[0].source == "GSM8K train"
    monkeypatch.setenv("ASTRO_DATA_DIR", str(data_dir))
    assert len(load_problems("AIME24")) == 30
    with pytest.raises(DataError, match="no split 'dev'.*gsm8k:train"):
        load_problems("gsm8k:dev")


def test_named_benchmark_missing_from_data_dir(tmp_path):
    with pytest.raises(DataError, match="no math500.jsonl .* in the data directory"):
        load_problems("math500", data_dir=tmp_path)


def test_hub_ids_fail_clearly_when_offline(monkeypatch):
    monkeypatch.delenv("ASTRO_DATA_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match="(?s)HuggingFaceH4/MATH-500.*Offline\\?.*--data-dir"):
        load_problems("math500")
    with pytest.raises(DataError, match="'openai/gsm8k' \\(config 'main'\\), split 'train'"):
        load_problems("openai/gsm8k@main:train")


def test_unknown_spec(tmp_path):
    with pytest.raises(DataError, match="not a file, a named benchmark"):
        load_problems("no-such-thing")
    with pytest.raises(DataError, match="unknown file type"):
        (tmp_path / "p.txt").write_text("x")
        load_problems(tmp_path / "p.txt")


@pytest.mark.parametrize("lines, message", [
    (['{"id": "a", "problem": "Q", "answer": "1"}', '{"id": "b", "problem": "Q2", "answer": '],
     r"bad\.jsonl:2: not valid JSON"),
    (['{"id": "a", "answer": "1"}'], r"bad\.jsonl:1: missing field 'problem'"),
    (['{"id": "a", "problem": "Q"}'], r"bad\.jsonl:1: missing field 'answer'"),
    (['{"id": "a", "problem": "  ", "answer": "1"}'], r"bad\.jsonl:1: field 'problem' is empty"),
    (['{"id": "a", "problem": "Q", "answer": ""}'], r"bad\.jsonl:1: field 'answer' is empty"),
    (['{"id": "a", "problem": 12, "answer": "1"}'], r"bad\.jsonl:1: field 'problem' must be a string, got int"),
    (['{"id": "a", "problem": "Q", "answer": [1]}'], r"bad\.jsonl:1: field 'answer' must be a string or a number"),
    (['{"id": true, "problem": "Q", "answer": "1"}'], r"bad\.jsonl:1: field 'id' must be a string or an integer"),
    (['["Q", "1"]'], r"bad\.jsonl:1: expected an object"),
    (['{"id": "a", "problem": "Q", "answer": "1"}', "", '{"id": "a", "problem": "Q2", "answer": "2"}'],
     r"bad\.jsonl:3: field 'id': duplicate id 'a' \(first at .*bad\.jsonl:1\)"),
    ([], r"bad\.jsonl: no problems found \(empty file\?\)"),
    (['{"problem": "Q", "solution": "no box"}'], r"bad\.jsonl:1: no 'answer' field and no \\boxed"),
])
def test_bad_input_names_file_line_and_field(tmp_path, lines, message):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    with pytest.raises(DataError, match=message):
        load_problems(path)


def test_all_bad_records_are_listed_at_once(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"problem": "Q", "answer": ""}, {"problem": "", "answer": "1"},
                                                {"problem": "ok", "answer": "1"}])
    with pytest.raises(DataError) as err:
        load_problems(path)
    assert "2 bad records" in str(err.value) and "bad.jsonl:1" in str(err.value) and "bad.jsonl:2" in str(err.value)


def test_json_and_csv_errors_name_the_line(tmp_path):
    (tmp_path / "bad.json").write_text('[\n  {"problem": "Q", "answer": "1"},\n  {"problem": "Q2"}\n]\n')
    with pytest.raises(DataError, match=r"bad\.json:3: missing field 'answer'"):
        load_problems(tmp_path / "bad.json")
    (tmp_path / "broken.json").write_text('[\n  {"problem": "Q",\n')
    with pytest.raises(DataError, match=r"broken\.json:3: not valid JSON"):
        load_problems(tmp_path / "broken.json")
    (tmp_path / "bad.csv").write_text("problem,answer\nQ,1\nQ2,\n")
    with pytest.raises(DataError, match=r"bad\.csv:3: field 'answer' is empty"):
        load_problems(tmp_path / "bad.csv")


def test_write_problems_round_trip(tmp_path):
    problems = [Problem("x1", "Q?", "5", "src", {"k": [1, 2]})]
    assert write_problems(tmp_path / "out" / "p.jsonl", problems) == 1
    assert load_problems(tmp_path / "out" / "p.jsonl") == problems


def test_cli_check_convert_show(tmp_path, data_dir, capsys):
    assert main(["data", "check", "amc23", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "ok: 40 problems" in out and "answers: integer 40" in out
    src = write_jsonl(tmp_path / "in.jsonl", [{"question": "Q?", "answer": "x\n#### 3"}])
    assert main(["data", "convert", str(src), "-o", str(tmp_path / "out.jsonl")]) == 0
    assert json.loads((tmp_path / "out.jsonl").read_text())["answer"] == "3"
    assert main(["data", "show", "aime24", "--data-dir", str(data_dir), "-n", "1"]) == 0
    assert "[aime24-000]" in capsys.readouterr().out


def test_cli_bad_input_is_one_error_line_and_writes_nothing(tmp_path, capsys):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"problem": "Q", "answer": "1"}, {"problem": "Q", "answer": ""}])
    out = tmp_path / "out.jsonl"
    assert main(["data", "convert", str(bad), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bad.jsonl:2: field 'answer' is empty" in err
    assert not out.exists()
    assert main(["data", "check", str(bad)]) == 1
