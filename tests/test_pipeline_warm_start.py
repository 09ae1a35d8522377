"""The pipeline's optional warm start (issue 16): SFT the model on solver-written direct solutions first, and
start search, both arms and the "base" row from that checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from astro_reasoner.config import ConfigError
from astro_reasoner.pipeline.config import load_pipeline_config
from astro_reasoner.pipeline.stages import build_graph
from pipeline_helpers import pipeline_config

PUZZLES = {"task": "countdown", "counts": [3], "min_number": 1, "max_number": 3, "min_target": 2, "max_target": 9}
WARM = {"data": {"synth": {**PUZZLES, "split": "train", "n": 6, "seed": 5}}, "per_problem": 2,
        "sft": {"max_steps": 3, "per_device_train_batch_size": 4, "max_length": 384, "report_to": "none",
                "threads": 1, "learning_rate": 1e-3}}


def _countdown_config(tmp_path, model, **top):
    top.setdefault("data", {"train": {"synth": {**PUZZLES, "split": "train", "n": 3, "seed": 0}},
                            "test": {"synth": {**PUZZLES, "split": "test", "n": 2, "seed": 0}}})
    return pipeline_config(tmp_path, model, **top)


def test_warm_start_is_upstream_of_search_both_arms_and_the_base_row(tmp_path, tiny_model_dir):
    cfg = load_pipeline_config(_countdown_config(tmp_path, tiny_model_dir, warm_start=WARM))
    cfg.validate()
    graph = build_graph(cfg)
    for name in ("search", "clone-astro", "sft-direct", "sft-astro", "eval-base"):
        assert "warm-start" in graph.stages[name].deps, name
    assert graph.stages["warm-start"].deps == ()  # keyed on the test spec, not the train set
    resized = load_pipeline_config(_countdown_config(tmp_path, tiny_model_dir, warm_start=WARM,
                                                     data={"train": {"synth": {**PUZZLES, "split": "train", "n": 2}},
                                                           "test": {"synth": {**PUZZLES, "split": "test", "n": 2, "seed": 0}}}))
    assert build_graph(resized).key("warm-start") == graph.key("warm-start")
    # a changed warm-start setting re-runs everything downstream of it
    other = load_pipeline_config(_countdown_config(tmp_path, tiny_model_dir,
                                                   warm_start={**WARM, "per_problem": 3}))
    assert build_graph(other).key("search") != graph.key("search")
    assert "warm-start" not in build_graph(load_pipeline_config(_countdown_config(tmp_path, tiny_model_dir))).stages


@pytest.mark.parametrize("bad, match", [
    ({"per_problem": 1}, "exactly one of data"),
    ({**WARM, "sft_data": "x.jsonl"}, "exactly one of data"),
    ({**WARM, "epochs": 2}, "unknown key"),
    ({"data": {"synth": {"steps": 2, "n": 4}}}, "only .*countdown"),
    ({**WARM, "per_problem": 0}, "per_problem"),
    ({**WARM, "replay": -1}, "replay=-1"),
    ({**WARM, "replay": True}, "replay=True"),
    ({**WARM, "select": {"n": 2}}, "select: a mapping with data"),
    ({**WARM, "select": {"data": {"synth": {**PUZZLES, "split": "test", "n": 4}}}}, "leak it"),
    ({**WARM, "select": {"data": {"synth": {**PUZZLES, "split": "validation", "n": 4}}, "k": 2}}, "unknown key"),
])
def test_bad_warm_start_sections_fail_before_any_work(tmp_path, tiny_model_dir, bad, match):
    with pytest.raises(ConfigError, match=match):  # at load: configs validate on construction
        load_pipeline_config(_countdown_config(tmp_path, tiny_model_dir, warm_start=bad))


def test_replay_mixes_the_same_warm_start_rows_into_both_arms(tmp_path, tiny_model_dir):
    from astro_reasoner.io import read_jsonl, write_jsonl
    from astro_reasoner.pipeline.warm_start import replay_mix

    plain = build_graph(load_pipeline_config(_countdown_config(tmp_path, tiny_model_dir, warm_start=WARM)))
    cfg = load_pipeline_config(_countdown_config(tmp_path, tiny_model_dir, warm_start={**WARM, "replay": 3}))
    graph = build_graph(cfg)
    # replay is read by the SFT stages only: the warm start and the search are not redone when it changes
    assert graph.key("warm-start") == plain.key("warm-start") and graph.key("search") == plain.key("search")
    assert graph.key("sft-direct") != plain.key("sft-direct")

    def row(pid, text, **extra):
        return {"problem_id": pid, "prompt": [{"role": "user", "content": pid}],
                "completion": [{"role": "assistant", "content": text}], **extra}
    warm = tmp_path / "warm-start"
    write_jsonl(warm / "sft.jsonl", [row(f"w{i}", f"solution {i}", mode="warmstart") for i in range(12)])
    mixed = {}
    for mode, n in (("direct", 2), ("astro", 5)):
        clone = tmp_path / f"clone-{mode}"
        write_jsonl(clone / "sft.jsonl", [row(f"p{i}", f"{mode} trace {i}", mode=mode, trace_index=i)
                                          for i in range(n)])
        (tmp_path / f"sft-{mode}").mkdir()
        data, replayed = replay_mix(cfg, {"warm-start": warm}, clone / "sft.jsonl", tmp_path / f"sft-{mode}")
        rows = list(read_jsonl(data))
        assert replayed == 3 and len(rows) == n + 3 and rows[:n] == list(read_jsonl(clone / "sft.jsonl"))
        mixed[mode] = rows[n:]
    assert mixed["direct"] == mixed["astro"]  # the arms differ only in their search traces
    assert all(r["mode"] == "replay" and r["problem_id"].startswith("w") for r in mixed["direct"])
    assert len({r["problem_id"] for r in mixed["direct"]}) == 3
    # without replay the arm's own file is used as it is; more rows than the warm start has is one clear error
    assert replay_mix(plain_cfg := load_pipeline_config(_countdown_config(tmp_path, tiny_model_dir, warm_start=WARM)),
                      {"warm-start": warm}, tmp_path / "clone-direct" / "sft.jsonl", tmp_path) == \
        (tmp_path / "clone-direct" / "sft.jsonl", 0) and plain_cfg.warm_start.get("replay") is None
    big = load_pipeline_config(_countdown_config(tmp_path, tiny_model_dir, warm_start={**WARM, "replay": 13}))
    with pytest.raises(ConfigError, match="only 12 rows"):
        replay_mix(big, {"warm-start": warm}, tmp_path / "clone-direct" / "sft.jsonl", tmp_path)


@pytest.mark.e2e
def test_warm_start_trains_on_train_puzzles_and_becomes_the_base_model(tmp_path, tiny_model_dir):
    from astro_reasoner.io import read_json, read_jsonl
    from astro_reasoner.pipeline.runner import DONE

    select = {"data": {"synth": {**PUZZLES, "split": "validation", "n": 3, "seed": 0}}, "n": 1, "max_tokens": 24}
    warm = {**WARM, "sft": {**WARM["sft"], "save_steps": 2}, "select": select}
    path = _countdown_config(tmp_path, tiny_model_dir, warm_start=warm)
    cfg = load_pipeline_config(path)
    cfg.validate()
    build_graph(cfg).run(until="eval-base")
    run = tmp_path / "run"
    stats = read_json(run / "warm-start" / DONE)["stats"]
    # checkpoint-2 and the final model (step 3) were scored on the validation puzzles; the best one is the base
    assert set(stats["validation"]["pass@1_by_step"]) == {"2", "3"} and stats["examples"] == 12
    chosen = stats["validation"]["selected_step"]
    assert stats["checkpoint"] == str(run / "warm-start" / "model" / ("checkpoint-2" if chosen == 2 else ""))\
        .rstrip("/")
    val = list(read_jsonl(run / "warm-start" / "select" / "validation.jsonl"))
    assert val and all(r["id"].startswith("countdown-validation-") for r in val)
    rows = list(read_jsonl(run / "warm-start" / "sft.jsonl"))
    test_texts = {r["problem"] for r in read_jsonl(run / "data" / "test.jsonl")}
    assert all(r["problem_id"].startswith("countdown-train-") for r in rows)
    assert not test_texts & {r["prompt"][-1]["content"] for r in rows}
    assert read_json(run / "eval-base" / DONE)["stats"]["model"] == stats["checkpoint"]
    assert yaml.safe_load(path.read_text())["model"] == str(tiny_model_dir)  # the config names the raw model


# ---- math: a problem file whose records carry a worked solution (GSM8K's `solution`), sliced by offset/limit ----

def _math_file(path, n: int = 10, start: int = 0):
    """Tiny GSM8K-like records: record 3 has no solution, record 4's last line does not state its answer."""
    import json

    lines = []
    for i in range(start, start + n):
        rec = {"id": f"m{i}", "problem": f"Sam has {i} apples and buys 2 more. How many apples does he have?",
               "answer": str(i + 2), "solution": f"Sam has {i} + 2 = <<{i}+2={i + 2}>>{i + 2} apples."}
        if i == 3:
            del rec["solution"]
        if i == 4:
            rec["solution"] = "Sam buys 2 apples."
        lines.append(json.dumps(rec))
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _math_config(tmp_path, warm_start=None, **data):
    train = _math_file(tmp_path / "train.jsonl")
    test = _math_file(tmp_path / "test.jsonl", n=1, start=1)  # m1's text is also a warm-start problem
    ws = {"data": {"path": train, "offset": 0, "limit": 6}, "per_problem": 1,
          "sft": {"max_steps": 2, "per_device_train_batch_size": 2, "max_length": 256, "report_to": "none",
                  "threads": 1, "learning_rate": 1e-3}}
    data = {"train": {"path": train, "offset": 6, "limit": 2}, "test": test, **data}
    return train, pipeline_config(tmp_path, "smollm2-135m", data=data,
                                  warm_start=ws if warm_start is None else warm_start(ws, train))


def test_a_problem_file_with_solutions_is_a_warm_start_source(tmp_path):
    from astro_reasoner.io import read_jsonl
    from astro_reasoner.pipeline.warm_start import build_rows

    _, path = _math_config(tmp_path)
    cfg = load_pipeline_config(path)
    assert "warm-start" in build_graph(cfg).stages["search"].deps
    (tmp_path / "ws").mkdir()
    data, stats, trained_on = build_rows(cfg, tmp_path / "ws")
    # problems 0-5: m1 is a test problem (dropped), m3 has no solution, m4's does not end in the answer
    assert stats == {"examples": 3, "dropped_test_overlap": 1, "skipped_no_solution": 1,
                     "skipped_answer_not_in_last_step": 1}
    rows = list(read_jsonl(data))
    assert [r["problem_id"] for r in rows] == ["m0", "m2", "m5"] and len(trained_on) == 3
    assert rows[1]["completion"][0]["content"] == "Sam has 2 + 2 = 4 apples.\n\nThe answer is \\boxed{4}."


def test_a_warm_start_file_without_usable_solutions_is_one_config_error(tmp_path):
    from astro_reasoner.pipeline.warm_start import build_rows

    no_solution = tmp_path / "bare.jsonl"
    no_solution.write_text('{"id": "a", "problem": "Q?", "answer": "1"}\n{"id": "b", "problem": "R?", "answer": "2"}\n')
    _, path = _math_config(tmp_path, lambda ws, train: {**ws, "data": {"path": str(no_solution)}})
    with pytest.raises(ConfigError, match=r"none of its 2 problems has a usable worked solution \(2 no solution\)"):
        build_rows(load_pipeline_config(path), tmp_path)
    _, path = _math_config(tmp_path, lambda ws, train: {**ws, "data": {"path": train, "offset": 50}})
    with pytest.raises(ConfigError, match="offset: 50 is past the end"):
        build_rows(load_pipeline_config(path), tmp_path)


@pytest.mark.parametrize("change, match", [
    (lambda ws, f: {**ws, "data": {"path": f, "offset": -1}}, r"warm_start.data.offset: -1; must be an integer >= 0"),
    (lambda ws, f: {**ws, "data": {"path": f, "limit": 0}}, r"warm_start.data.limit: 0"),
    (lambda ws, f: {**ws, "data": {"path": f, "offset": True}}, r"warm_start.data.offset"),
    (lambda ws, f: {**ws, "data": {"path": f, "stride": 2}}, r"unknown key\(s\) \['stride'\]"),
    (lambda ws, f: {**ws, "data": {"path": 7}}, r"warm_start.data.path"),
    (lambda ws, f: {**ws, "data": {"file": f}}, r"warm_start.data: .* is not a problem source"),
    (lambda ws, f: {**ws, "per_problem": 2}, "one worked solution per problem"),
    (lambda ws, f: {**ws, "data": {"path": f, "limit": 7}}, "warm_start.data and data.train overlap"),
    (lambda ws, f: {**ws, "select": {"data": {"path": f, "offset": 5, "limit": 2}}},
     "validation problems must not be training problems"),
    (lambda ws, f: {**ws, "select": {"data": str(Path(f).with_name("test.jsonl"))}}, "overlaps data.test"),
])
def test_bad_slices_fail_at_load_with_one_config_error(tmp_path, change, match):
    _, path = _math_config(tmp_path, change)
    with pytest.raises(ConfigError, match=match):
        load_pipeline_config(path)


def test_bad_data_slices_fail_at_load_too(tmp_path):
    _, path = _math_config(tmp_path, train={"path": str(tmp_path / "train.jsonl"), "offset": "6"})
    with pytest.raises(ConfigError, match="data.train.offset: '6'"):
        load_pipeline_config(path)


def test_slices_of_one_file_are_disjoint_problems(tmp_path):
    from astro_reasoner.data.specs import load_spec, slices_overlap

    f = _math_file(tmp_path / "p.jsonl")
    assert [p.id for p in load_spec({"path": f, "offset": 6, "limit": 2})] == ["m6", "m7"]
    assert [p.id for p in load_spec({"path": f, "offset": 8})] == ["m8", "m9"]
    assert [p.id for p in load_spec({"path": f, "offset": 2}, limit=1)] == ["m2"]
    assert not slices_overlap({"path": f, "limit": 6}, {"path": f, "offset": 6})
    assert slices_overlap({"path": f, "limit": 7}, {"path": f, "offset": 6})
    assert slices_overlap(f, {"path": f, "offset": 9}) and slices_overlap(f, {"path": f}, limit_a=3)
    assert not slices_overlap(f, {"path": f, "offset": 3}, limit_a=3)  # data.train_limit / eval_limit count too
    assert not slices_overlap({"path": f}, {"path": f + "x"}) and not slices_overlap({"synth": {}}, {"path": f})


@pytest.mark.e2e
def test_math_warm_start_trains_on_its_slice_and_selects_on_validation(tmp_path, tiny_model_dir):
    from astro_reasoner.io import read_json, read_jsonl
    from astro_reasoner.pipeline.runner import DONE

    def warm(ws, train):  # validation: m6-m8 of the file plus m0 again (a training problem: dropped)
        val = tmp_path / "val.jsonl"
        val.write_text("".join(line + "\n" for line in (tmp_path / "train.jsonl").read_text().splitlines()[6:9])
                       + (tmp_path / "train.jsonl").read_text().splitlines()[0].replace('"m0"', '"v0"') + "\n")
        return {**ws, "sft": {**ws["sft"], "save_steps": 1},
                "select": {"data": str(val), "n": 1, "max_tokens": 16}}

    _, path = _math_config(tmp_path, warm)
    raw = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**raw, "model": str(tiny_model_dir)}))
    build_graph(load_pipeline_config(path)).run(until="warm-start")
    run = tmp_path / "run" / "warm-start"
    stats = read_json(run / DONE)["stats"]
    assert stats["examples"] == 3 and stats["skipped_no_solution"] == 1
    assert set(stats["validation"]["pass@1_by_step"]) == {"1", "2"} and stats["validation"]["problems"] == 3
    assert [r["id"] for r in read_jsonl(run / "select" / "validation.jsonl")] == ["m6", "m7", "m8"]
