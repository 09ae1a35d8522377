"""The pipeline's optional warm start (issue 16): SFT the model on solver-written direct solutions first, and
start search, both arms and the "base" row from that checkpoint."""

from __future__ import annotations

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
    ({**WARM, "select": {"n": 2}}, "select: a mapping with data"),
    ({**WARM, "select": {"data": {"synth": {**PUZZLES, "split": "test", "n": 4}}}}, "leak it"),
    ({**WARM, "select": {"data": {"synth": {**PUZZLES, "split": "validation", "n": 4}}, "k": 2}}, "unknown key"),
])
def test_bad_warm_start_sections_fail_before_any_work(tmp_path, tiny_model_dir, bad, match):
    with pytest.raises(ConfigError, match=match):  # at load: configs validate on construction
        load_pipeline_config(_countdown_config(tmp_path, tiny_model_dir, warm_start=bad))


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
