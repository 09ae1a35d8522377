"""End to end on Countdown: search -> clone -> eval with the tiny random Llama, every stage reading the task
from the record (issue 16).

A random model never writes a Countdown solution, so the fixture first fits the tiny model to solver-written
direct solutions of three small puzzles (our own ``run_sft``); sampled at temperature 1 it then writes both
right and wrong solutions, which gives search correct and wrong terminals and clone something to linearize.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

PUZZLE_OPTIONS = dict(split="all", counts=(3,), min_number=1, max_number=3, min_target=2, max_target=9)


class Recording:
    """The real backend, with the prompts it was asked to continue written down (to see which prompt each
    stage built)."""

    def __init__(self, policy):
        self.policy, self.prompts = policy, []

    def __getattr__(self, name):
        return getattr(self.policy, name)

    def generate(self, prompts, params):
        self.prompts.extend(prompts)
        return self.policy.generate(prompts, params)


@pytest.fixture(scope="module")
def countdown_problems():
    from astro_reasoner.tasks import countdown_solver as cd

    return cd.synthesize(3, seed=0, **PUZZLE_OPTIONS)


@pytest.fixture(scope="module")
def countdown_tuned_tiny(tiny_model_dir, countdown_problems, tmp_path_factory) -> Path:
    from astro_reasoner.io import write_jsonl
    from astro_reasoner.prompts import PromptConfig, problem_messages
    from astro_reasoner.tasks import countdown_solver as cd
    from astro_reasoner.train import SFTStageConfig, run_sft

    tmp = tmp_path_factory.mktemp("countdown-format")
    rows = [{"problem_id": p.id, "prompt": problem_messages(p, PromptConfig(few_shot=0)),
             "completion": [{"role": "assistant", "content": cd.direct_solution(
                 p.meta["numbers"], p.meta["target"], random.Random(j))}]}
            for p in countdown_problems for j in range(4)]
    write_jsonl(tmp / "sft.jsonl", rows)
    cfg = SFTStageConfig(
        model=str(tiny_model_dir), data=str(tmp / "sft.jsonl"), output_dir=str(tmp / "m"), max_steps=70,
        learning_rate=1e-2, per_device_train_batch_size=4, lr_scheduler_type="constant", logging_steps=35,
        save_steps=1000, report_to="none", max_length=384, threads=1)
    return Path(run_sft(cfg.data, cfg.output_dir, cfg)["checkpoint"])


def test_countdown_search_clone_eval(countdown_tuned_tiny, countdown_problems, tmp_path):
    from astro_reasoner.backends import make_backend
    from astro_reasoner.checking import Checker
    from astro_reasoner.clone.config import CloneConfig
    from astro_reasoner.clone.run import run_clone
    from astro_reasoner.data import load_problems
    from astro_reasoner.evaluate.config import EvalConfig
    from astro_reasoner.evaluate.run import run_eval
    from astro_reasoner.io import read_jsonl, write_jsonl
    from astro_reasoner.search.config import SearchConfig
    from astro_reasoner.search.run import run_search
    from astro_reasoner.tasks.countdown import verify
    from astro_reasoner.tasks.countdown_solver import to_record

    # A file in the shape whose `problem` wording says nothing useful: the prompt comes from the fields.
    data = tmp_path / "countdown.jsonl"
    write_jsonl(data, [{**to_record(p), "problem": "(see numbers)"} for p in countdown_problems])
    problems = load_problems(str(data))
    backend = make_backend("hf", str(countdown_tuned_tiny), threads=1)
    policy = Recording(backend)
    try:
        with Checker(workers=1, warmup=False) as checker:
            run_search(problems, tmp_path / "search",
                       SearchConfig(iterations=8, k=3, rollouts=1, max_depth=6, max_step_tokens=64,
                                    max_rollout_tokens=160, few_shot=0, temperature=0.7, early_stop_correct=1,
                                    early_stop_wrong=1), policy=policy, checker=checker)
            trees = list(read_jsonl(tmp_path / "search" / "trees.jsonl"))
            assert policy.prompts and all("Numbers: " in x and "(see numbers)" not in x for x in policy.prompts)
            policy.prompts.clear()
            assert len(trees) == 3
            terminals = [(t, n) for t in trees for n in t["nodes"] if n["terminal"] and n["answer"]]
            for t, n in terminals:  # every verdict is the countdown verifier's, on the whole expression
                assert t["task"]["task"] == "countdown"
                expected = verify(n["step"], tuple(t["task"]["numbers"]), t["task"]["target"])[0].value
                assert n["verdict"] == expected
            correct = [n for _, n in terminals if n["verdict"] == "correct"]
            assert correct and any(n["verdict"] == "wrong" for _, n in terminals)
            assert all(any(op in n["answer"] for op in "+-*/") for n in correct)  # never the bare target

            stats = run_clone(tmp_path / "search", tmp_path / "clone", CloneConfig(max_backtracks=1), checker=checker)
            assert stats["examples"] >= 1 and stats["recheck_dropped"] == 0
            assert stats["roundtrip_ok"] == stats["traces"]  # the behaviour counter reads countdown CoTs back
            sft = list(read_jsonl(tmp_path / "clone" / "sft.jsonl"))
            assert any(r["n_backtracks"] >= 1 for r in sft)
            for r in sft:
                assert r["prompt"][-1]["content"].endswith(".") and "Numbers: " in r["prompt"][-1]["content"]
                assert "(see numbers)" not in r["prompt"][-1]["content"]
            rl = list(read_jsonl(tmp_path / "clone" / "rl.jsonl"))
            assert all(r["task"]["task"] == "countdown" and r["answer"] == str(r["task"]["target"]) for r in rl)

            summary = run_eval(None, tmp_path / "eval", EvalConfig(datasets=[str(data)], n=2, k=2, max_tokens=256,
                                                                    temperature=0.3, bootstrap=20),
                               policy=policy, checker=checker, progress=False)
            assert len(policy.prompts) == 3  # one eval call per problem (2 samples each), the countdown prompt
            for p, prompt in zip(problems, policy.prompts):
                assert f"Numbers: {', '.join(map(str, p.meta['numbers']))}. Target: {p.meta['target']}." in prompt
    finally:
        backend.close()
    samples = list(read_jsonl(tmp_path / "eval" / "samples.jsonl"))
    assert len(samples) == 6 and summary["overall"]["pass@1"] is not None
    by_id = {p.id: p for p in problems}
    for s in samples:  # eval's verdicts are the countdown verifier's too
        p = by_id[s["problem_id"]]
        assert s["verdict"] == verify(s["text"], tuple(p.meta["numbers"]), p.meta["target"])[0].value
    assert all("Left: " in s["text"] for s in samples)  # the fitted format: the prompt was the countdown one
    assert json.loads((tmp_path / "eval" / "summary.json").read_text())["datasets"]["countdown"]
