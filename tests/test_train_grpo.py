"""GRPO on the tiny model (SFT first, as in the real pipeline), behaviour logging, resume.

A random model's samples are all unparseable, so every group has zero reward variance, zero advantage and
zero gradient. The chain below first SFTs the tiny model to answer \\boxed{3} or \\boxed{5} at random; its
GRPO groups then mix +1 and -1 samples and the update is real. Threads: OMP_NUM_THREADS=1 (conftest).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from train_helpers import cot_of, short_answer_rl, short_answer_sft

from astro_reasoner.checking import Checker
from astro_reasoner.io import read_jsonl, write_jsonl
from astro_reasoner.train.config import FilterConfig, RLStageConfig, SFTStageConfig


def rl_cfg(model, prompts, out, **kw) -> RLStageConfig:
    base = dict(model=str(model), prompts=str(prompts), output_dir=str(out), learning_rate=1e-3, max_steps=2,
                per_device_train_batch_size=8, max_completion_length=8, report_to="none", save_steps=1,
                checker_workers=1)
    cfg = RLStageConfig(**{**base, **kw})
    return cfg


@pytest.fixture(scope="module")
def chain(tiny_model_dir, tmp_path_factory):
    from astro_reasoner.train.grpo import run_grpo
    from astro_reasoner.train.sft import run_sft

    d = tmp_path_factory.mktemp("grpo")
    sft = SFTStageConfig(model=str(tiny_model_dir), data=str(short_answer_sft(d / "sft.jsonl")),
                         output_dir=str(d / "sft"), learning_rate=1e-2, max_steps=30, per_device_train_batch_size=8,
                         lr_scheduler_type="constant", report_to="none", logging_steps=10, max_length=256,
                         completion_only_loss=True,  # the fixture needs a model that answers, fast
                         bf16=False)  # its exact samples feed the filter's pass-rate band: the same on every CPU
    sft_dir = run_sft(sft.data, sft.output_dir, sft)["checkpoint"]
    cfg = rl_cfg(sft_dir, short_answer_rl(d / "rl.jsonl"), d / "rl")
    assert run_grpo(cfg.prompts, cfg.output_dir, cfg) == {"checkpoint": cfg.output_dir, "skipped": False}
    return sft_dir, cfg


def test_grpo_two_steps_change_parameters(chain):
    import torch
    from transformers import AutoModelForCausalLM

    sft_dir, cfg = chain
    before = dict(AutoModelForCausalLM.from_pretrained(sft_dir).named_parameters())
    after = dict(AutoModelForCausalLM.from_pretrained(cfg.output_dir).named_parameters())
    changed = [n for n, p in before.items() if not torch.equal(p, after[n])]
    assert len(changed) == len(before), f"unchanged: {sorted(set(before) - set(changed))}"
    summary = json.loads((Path(cfg.output_dir) / "train_summary.json").read_text())
    assert summary["global_step"] == 2 and summary["config"]["beta"] == 0.0


def test_metrics_jsonl_has_reward_length_and_behaviour_per_step(chain):
    _, cfg = chain
    rows = list(read_jsonl(Path(cfg.output_dir) / "metrics.jsonl"))
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        for key in ("reward_mean", "length_mean", "reflections_mean", "backtracks_mean", "correct_frac"):
            assert isinstance(r[key], float), (key, r)
        assert -1.0 <= r["reward_mean"] <= 1.0 and 1 <= r["length_mean"] <= 8
    assert any(r["grad_norm"] > 0 for r in rows), "no step had reward variance"
    # Every completion is logged with its reward; the rewards agree with the checker and with metrics.jsonl.
    comps = list(read_jsonl(Path(cfg.output_dir) / "completions.jsonl"))
    assert len(comps) == 2 * 8 and {c["step"] for c in comps} == {1, 2}
    with Checker(workers=1) as checker:
        verdicts = checker.check_batch([("3", c["completion"]) for c in comps])
    assert [c["reward"] for c in comps] == [1.0 if v.correct else -1.0 for v in verdicts]
    for step, row in zip((1, 2), rows):
        step_rewards = [c["reward"] for c in comps if c["step"] == step]
        assert row["reward_mean"] == pytest.approx(sum(step_rewards) / len(step_rewards))


def test_resume_from_a_checkpoint_redoes_later_steps_once(chain):
    from astro_reasoner.train.grpo import run_grpo

    _, cfg = chain
    out = Path(cfg.output_dir)
    more = rl_cfg(cfg.model, cfg.prompts, out, max_steps=3, resume=str(out / "checkpoint-1"),
                  report_to="tensorboard")
    run_grpo(more.prompts, more.output_dir, more)
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == [1, 2, 3]
    steps = [c["step"] for c in read_jsonl(out / "completions.jsonl")]
    assert steps == sorted(steps) and {s: steps.count(s) for s in set(steps)} == {1: 8, 2: 8, 3: 8}
    events = b"".join(p.read_bytes() for p in out.rglob("events.out.tfevents.*"))
    assert b"behaviour/reflections_mean" in events and b"reward" in events  # tensorboard got them too


def test_reward_logs_behaviour_counts(tmp_path):
    from astro_reasoner.behaviour import analyze_behaviour
    from astro_reasoner.train.grpo import LoggedCorrectnessReward
    from astro_reasoner.train.rewards import RewardValues

    gold, cot = cot_of(1)  # one wrong step, one reflection, one backtrack, then the right answer
    logged: dict[str, list[float]] = {}
    with Checker(workers=1) as checker:
        reward = LoggedCorrectnessReward(checker, RewardValues(), analyze_behaviour, tmp_path / "c.jsonl")
        out = reward(prompts=[None, None], completions=[[{"role": "assistant", "content": cot}],
                                                         [{"role": "assistant", "content": "\\boxed{0}"}]],
                     answer=[gold, gold], problem_id=["p1", "p1"], trainer_state=None,
                     log_metric=lambda k, v: logged.setdefault(k, []).append(v))
    assert out == [1.0, -1.0]
    assert logged["behaviour/reflections_mean"] == [0.5] and logged["behaviour/backtracks_mean"] == [0.5]
    assert logged["behaviour/backtrack_frac"] == [0.5] and logged["correct_frac"] == [0.5]
    rows = list(read_jsonl(tmp_path / "c.jsonl"))
    assert [(r["reflections"], r["backtracks"], r["reward"]) for r in rows] == [(1, 1, 1.0), (0, 0, -1.0)]


def test_difficulty_filter_keeps_the_band_and_resumes(chain, tmp_path):
    from astro_reasoner.train.filter import pass_rates_path, run_filter

    sft_dir, _ = chain  # answers \boxed{3} or \boxed{5} at random, never 7
    easy = read_jsonl(short_answer_rl(tmp_path / "a.jsonl", gold="3", n=3))
    hard = read_jsonl(short_answer_rl(tmp_path / "b.jsonl", gold="7", n=2))
    rows = [*easy, *[{**r, "problem_id": f"h{i}"} for i, r in enumerate(hard)]]
    write_jsonl(tmp_path / "rl.jsonl", rows)
    cfg = FilterConfig(prompts=str(tmp_path / "rl.jsonl"), model=sft_dir, out=str(tmp_path / "kept.jsonl"), n=8,
                       keep="0.1-0.9", max_tokens=8, batch_size=2, checker_workers=1,
                       backend_options={"batch_size": 16})
    res = run_filter(cfg.prompts, cfg.out, cfg)
    rates = {r["problem_id"]: r for r in read_jsonl(pass_rates_path(cfg.out))}
    assert set(rates) == {"p0", "p1", "p2", "h0", "h1"} and all(r["n"] == 8 for r in rates.values())
    assert rates["h0"]["pass_rate"] == 0.0 and rates["h1"]["pass_rate"] == 0.0  # too hard
    assert all(0 < rates[p]["pass_rate"] < 1 for p in ("p0", "p1", "p2")), rates
    kept = list(read_jsonl(cfg.out))
    assert [k["problem_id"] for k in kept] == ["p0", "p1", "p2"] and kept[0]["source"] == "fixture"
    assert (res["kept"], res["too_hard"], res["too_easy"], res["total"]) == (3, 2, 0, 5)
    # Compute per stage: every sampled token is counted (1..8 per sample with max_tokens=8).
    assert 5 * 8 <= res["generated_tokens"] <= 5 * 8 * 8
    assert res["generated_tokens"] == sum(r["generated_tokens"] for r in rates.values())
    # Re-running resumes from the pass-rates file: no model is loaded (this path does not exist).
    other = FilterConfig(**{**cfg.__dict__, "model": str(tmp_path / "no-such-model"), "keep": "0.0-0.2"})
    again = run_filter(cfg.prompts, cfg.out, other)
    assert again["kept"] == 2 and [k["problem_id"] for k in read_jsonl(cfg.out)] == ["h0", "h1"]
    assert again["generated_tokens"] == res["generated_tokens"]  # resumed: the tokens sampled before still count


def test_difficulty_filter_stops_when_enough_prompts_are_in_the_band(chain, tmp_path):
    from astro_reasoner.train.filter import pass_rates_path, run_filter

    sft_dir, _ = chain  # answers \boxed{3} or \boxed{5} at random, never 7
    hard = [{**r, "problem_id": f"h{i}"} for i, r in enumerate(read_jsonl(short_answer_rl(tmp_path / "b.jsonl",
                                                                                           gold="7", n=2)))]
    write_jsonl(tmp_path / "rl.jsonl", [*hard, *read_jsonl(short_answer_rl(tmp_path / "a.jsonl", gold="3", n=3))])
    cfg = FilterConfig(prompts=str(tmp_path / "rl.jsonl"), model=sft_dir, out=str(tmp_path / "kept.jsonl"), n=8,
                       keep="0.1-0.9", max_tokens=8, batch_size=2, checker_workers=1, enough=2,
                       backend_options={"batch_size": 16})
    res = run_filter(cfg.prompts, cfg.out, cfg)
    # batch 1 (h0, h1): none in the band; batch 2 (p0, p1): two, enough; p2 is never sampled
    assert set(r["problem_id"] for r in read_jsonl(pass_rates_path(cfg.out))) == {"h0", "h1", "p0", "p1"}
    assert [k["problem_id"] for k in read_jsonl(cfg.out)] == ["p0", "p1"]
    assert (res["kept"], res["too_hard"], res["total"]) == (2, 2, 4)
    # resumed with enough already found: nothing sampled, no model loaded (this path does not exist)
    again = run_filter(cfg.prompts, cfg.out, FilterConfig(**{**cfg.__dict__, "model": str(tmp_path / "none")}))
    assert again == res
    # asking for more than were found scores the rest
    more = run_filter(cfg.prompts, cfg.out, FilterConfig(**{**cfg.__dict__, "enough": 3}))
    assert (more["kept"], more["total"]) == (3, 5)
