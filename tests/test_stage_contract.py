"""One stage contract (issue 13): every stage function is ``run_<stage>(inputs, out, cfg, *, policy=None,
checker=None, **options) -> dict``, and a stage that needs a policy or checker it cannot make says what to pass."""

from __future__ import annotations

import inspect

import pytest

from astro_reasoner.backends.base import Policy
from astro_reasoner.checking import AnswerChecker
from astro_reasoner.clone import run_best_of_n, run_clone
from astro_reasoner.evaluate import run_eval
from astro_reasoner.search import run_search
from astro_reasoner.train import run_filter, run_grpo, run_sft

STAGES = {"run_search": (run_search, "problems"), "run_clone": (run_clone, "trees"),
          "run_best_of_n": (run_best_of_n, "trees"), "run_eval": (run_eval, "problems"),
          "run_filter": (run_filter, "prompts"), "run_sft": (run_sft, "data"), "run_grpo": (run_grpo, "prompts")}
P = inspect.Parameter


@pytest.mark.parametrize("name", STAGES)
def test_every_stage_has_the_one_signature(name):
    fn, inputs = STAGES[name]
    sig = inspect.signature(fn)  # annotations as written (the Protocols are imported for type checking only)
    params = list(sig.parameters.values())
    positional = [p for p in params if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)]
    assert [p.name for p in positional] == [inputs, "out", "cfg"]
    assert all(p.default is P.empty for p in positional), "inputs, out and cfg are required"
    assert [p.name for p in params[3:5]] == ["policy", "checker"]
    for p, protocol in zip(params[3:5], (Policy, AnswerChecker)):
        assert p.kind is P.KEYWORD_ONLY and p.default is None
        assert p.annotation == f"{protocol.__name__} | None"  # the Protocol, not a concrete backend or checker
    assert all(p.kind is P.KEYWORD_ONLY for p in params[5:]), "stage-specific options are keyword-only"
    assert sig.return_annotation == "dict[str, Any]"  # the stage's stats


def test_search_says_what_to_pass_without_policy_or_checker(tmp_path):
    from astro_reasoner.search import SearchConfig

    with pytest.raises(TypeError, match=r"run_search needs policy and checker: pass policy=make_backend"):
        run_search([], tmp_path, SearchConfig())
    assert not any(tmp_path.iterdir())  # refused before anything is written


def test_clone_needs_a_checker(tmp_path):
    from astro_reasoner.clone import CloneConfig

    with pytest.raises(TypeError, match=r"run_clone needs checker: pass checker=Checker\(\)"):
        run_clone(tmp_path / "trees.jsonl", tmp_path / "out", CloneConfig())


def test_eval_needs_a_policy(tmp_path):
    from astro_reasoner.evaluate import EvalConfig

    with pytest.raises(TypeError, match=r"run_eval needs policy"):
        run_eval({}, tmp_path / "e", EvalConfig(datasets=["x.jsonl"]))
