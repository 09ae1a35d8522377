"""Stage configs are validated on construction: an invalid value fails where it is written, naming the field."""

from __future__ import annotations

import dataclasses

import pytest

from astro_reasoner.clone.config import BestOfNConfig, CloneConfig
from astro_reasoner.config import ConfigError, build_config
from astro_reasoner.evaluate.config import EvalConfig
from astro_reasoner.search.config import SearchConfig
from astro_reasoner.train.config import FilterConfig, RLStageConfig, SFTStageConfig

PATHS = {"model": "m", "output_dir": "o"}

# (config class, the required fields a valid instance needs, the bad field, its value, a part of the message)
CASES = [
    (SearchConfig, {}, "k", 0, "k=0 must be an integer >= 1"),
    (CloneConfig, {}, "merge", "sideways", "merge='sideways' is not one of"),
    (BestOfNConfig, {"model": "m"}, "max_tokens", 0, "max_tokens=0 must be >= 1"),
    (EvalConfig, {}, "k", 32, "k=32 with n=16"),
    (SFTStageConfig, {**PATHS, "data": "d"}, "max_length", 4, "max_length=4"),
    (RLStageConfig, {**PATHS, "prompts": "p"}, "num_generations", 1, "num_generations=1"),
    (FilterConfig, {"model": "m", "prompts": "p", "out": "o"}, "keep", "0.9-0.1", "keep='0.9-0.1'"),
]


@pytest.mark.parametrize("cls, required, field, value, needle", CASES, ids=[c[0].__name__ for c in CASES])
def test_an_invalid_field_fails_at_construction(cls, required, field, value, needle):
    cls(**required)  # the valid baseline builds
    with pytest.raises(ConfigError) as err:
        cls(**required, **{field: value})
    assert needle in str(err.value)


@pytest.mark.parametrize("cls, required, field, value, needle", CASES, ids=[c[0].__name__ for c in CASES])
def test_replace_validates_too(cls, required, field, value, needle):
    with pytest.raises(ConfigError, match=field):
        dataclasses.replace(cls(**required), **{field: value})


def test_required_paths_of_the_train_configs_are_checked_at_construction():
    with pytest.raises(ConfigError, match="model is not set"):
        SFTStageConfig(data="d", output_dir="o")
    with pytest.raises(ConfigError, match="prompts is not set"):
        RLStageConfig(**PATHS)
    with pytest.raises(ConfigError, match="out is not set"):
        FilterConfig(model="m", prompts="p")


def test_normalisation_happens_at_construction():
    cfg = CloneConfig(merge="lca", max_backtracks="0:1,1:3")
    assert cfg.merge == "deepest" and cfg.max_backtracks == {0: 0.25, 1: 0.75}
    assert build_config(SearchConfig, {"k": "2"}).k == 2
