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
    data = {"train": {"synth": {**PUZZLES, "split": "train", "n": 3, "seed": 0}},
            "test": {"synth": {**PUZZLES, "split": "test", "n": 2, "seed": 0}}}
    return pipeline_config(tmp_path, model, data=data, **top)


def test_warm_start_is_upstream_of_search_both_arms_and_the_base_row(tmp_path, tiny_model_dir):
    cfg = load_pipeline_config(_countdown_config(tmp_path, tiny_model_dir, warm_start=WARM))
    cfg.validate()
    graph = build_graph(cfg)
    for name in ("search", "clone-astro", "sft-direct", "sft-astro", "eval-base"):
        assert "warm-start" in graph.stages[name].deps, name
    assert graph.stages["warm-start"].deps == ("data",)
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
])
def test_bad_warm_start_sections_fail_before_any_work(tmp_path, tiny_model_dir, bad, match):
    with pytest.raises(ConfigError, match=match):  # at load: configs validate on construction
        load_pipeline_config(_countdown_config(tmp_path, tiny_model_dir, warm_start=bad))


@pytest.mark.e2e
def test_warm_start_trains_on_train_puzzles_and_becomes_the_base_model(tmp_path, tiny_model_dir):
    from astro_reasoner.io import read_json, read_jsonl
    from astro_reasoner.pipeline.runner import DONE

    path = _countdown_config(tmp_path, tiny_model_dir, warm_start=WARM)
    cfg = load_pipeline_config(path)
    cfg.validate()
    build_graph(cfg).run(until="eval-base")
    run = tmp_path / "run"
    warm = read_json(run / "warm-start" / DONE)["stats"]
    assert warm["checkpoint"] == str(run / "warm-start" / "model") and warm["examples"] == 12
    rows = list(read_jsonl(run / "warm-start" / "sft.jsonl"))
    test_texts = {r["problem"] for r in read_jsonl(run / "data" / "test.jsonl")}
    assert all(r["problem_id"].startswith("countdown-train-") for r in rows)
    assert not test_texts & {r["prompt"][-1]["content"] for r in rows}
    assert read_json(run / "eval-base" / DONE)["stats"]["model"] == warm["checkpoint"]
    assert yaml.safe_load(path.read_text())["model"] == str(tiny_model_dir)  # the config names the raw model
