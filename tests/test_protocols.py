"""Every Policy / AnswerChecker implementation, real or test double, matches its Protocol: ``isinstance``
(runtime_checkable: every member exists) and, method by method, the Protocol's exact signature (parameter names,
kinds, defaults, annotations, return type). A double whose methods drift from the Protocol fails here."""

from __future__ import annotations

import importlib
import inspect

import pytest

from astro_reasoner.backends.base import Policy
from astro_reasoner.checking import AnswerChecker, Checker
from astro_reasoner.types import Completion, GenParams


def methods(protocol: type) -> list[str]:
    return [name for name, v in vars(protocol).items() if inspect.isfunction(v) and not name.startswith("_")]


def shape(fn) -> tuple:
    """The signature without ``self``, annotations resolved (``from __future__ import annotations`` makes
    them strings), so ``list[str]`` and ``Sequence[str]`` differ and a missing annotation shows."""
    sig = inspect.signature(fn, eval_str=True)
    params = list(sig.parameters.values())[1:]
    return [(p.name, p.kind, p.default, p.annotation) for p in params], sig.return_annotation


def assert_conforms(obj, protocol: type) -> None:
    assert isinstance(obj, protocol), f"{type(obj).__name__} lacks a member of {protocol.__name__}"
    for name in methods(protocol):
        got, want = shape(getattr(type(obj), name)), shape(getattr(protocol, name))
        assert got == want, f"{type(obj).__name__}.{name}{got} differs from {protocol.__name__}.{name}{want}"


def _double(module: str, cls: str, *args):
    return getattr(importlib.import_module(module), cls)(*args)


POLICY_DOUBLES = [
    ("search_helpers", "ScriptedPolicy"),
    ("test_search_hand", "TablePolicy"),
    ("test_search_hand", "CrashingPolicy", 99),
    ("test_search_hand", "CountingPolicy"),
    ("test_clone_policy", "ScriptedClonePolicy", lambda solution: 1),
    ("test_eval_run", "Scripted", {"": ["x"]}),
    ("test_countdown_eval_viz", "Scripted", ["x"]),
]
REAL_BACKENDS = [("astro_reasoner.backends.hf", "HFBackend"), ("astro_reasoner.backends.ct2", "CT2Backend"),
                 ("astro_reasoner.backends.openai_http", "OpenAIBackend"),
                 ("astro_reasoner.backends.llamacpp", "LlamaServerBackend")]


@pytest.mark.parametrize("spec", POLICY_DOUBLES, ids=[f"{m}.{c}" for m, c, *_ in POLICY_DOUBLES])
def test_policy_doubles_conform(spec):
    assert_conforms(_double(*spec), Policy)


@pytest.mark.parametrize("module, cls", REAL_BACKENDS, ids=[c for _, c in REAL_BACKENDS])
def test_real_backends_conform(module, cls):
    klass = getattr(importlib.import_module(module), cls)
    bare = klass.__new__(klass)  # no model loaded: the class-level members and the methods are what count
    assert_conforms(bare, Policy)


def test_the_real_checker_conforms():
    checker = Checker(workers=1, warmup=False)  # its worker pool starts at the first check, never here
    try:
        assert_conforms(checker, AnswerChecker)
    finally:
        checker.close()


def test_a_drifting_double_is_caught():
    class Drifted:
        name, deterministic = "drifted", True

        def generate(self, prompts: list[str], params: GenParams) -> list[list[Completion]]:  # list, not Sequence
            return []

        def apply_chat_template(self, messages, continue_text=""):  # no annotations
            return ""

        def count_tokens(self, text: str) -> int:
            return 0

        def close(self) -> None:
            pass

    assert isinstance(Drifted(), Policy)  # isinstance alone only sees the names
    with pytest.raises(AssertionError, match="generate"):
        assert_conforms(Drifted(), Policy)
    del Drifted.generate
    assert not isinstance(Drifted(), Policy)
    assert not isinstance(object(), AnswerChecker)
