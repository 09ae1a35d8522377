"""Difficulty filter for RL prompts (``astro rl filter``): ``run_filter(prompts, out, cfg, *, policy, checker)``.

ASTRO §3.4 runs RL on prompts of moderate difficulty for the SFT model: a prompt the model always solves or
never solves gives every sample in its GRPO group the same reward, hence zero advantage and no learning
signal (TRL logs these as ``frac_reward_zero_std``; it has no dynamic sampling to drop them). We sample
``n`` solutions per prompt with the policy to be trained, check them, and keep prompts whose pass rate lies
in an inclusive band (default 0.1-0.9).

Outputs: ``--out`` holds the kept prompts (rl.jsonl rows plus ``pass_rate``); ``<out>.pass_rates.jsonl``
holds every prompt's counts, appended as batches finish, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..io import append_jsonl, done_ids, read_jsonl, stable_seed, write_jsonl
from ..sampling import sample_and_check
from ..types import GenParams, Verdict
from .config import FilterConfig, parse_band
from .grpo import load_rl_rows

if TYPE_CHECKING:  # annotations only: the protocols every backend / checker (and test double) implements
    from ..backends.base import Policy
    from ..checking import AnswerChecker

log = logging.getLogger(__name__)


def pass_rates_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".pass_rates.jsonl")


def score_batch(policy: Policy, checker: AnswerChecker, rows: list[dict[str, Any]], cfg: FilterConfig
                ) -> list[dict[str, Any]]:
    """Sample ``cfg.n`` solutions for each row and return one pass-rate record per row."""
    prompts = [policy.apply_chat_template(r["prompt"]) for r in rows]
    params = GenParams(n=cfg.n, max_tokens=cfg.max_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                       seed=stable_seed(cfg.seed, "rl-filter", *[r["problem_id"] for r in rows]))
    drawn = sample_and_check(policy, checker, rows, prompts, params)  # checked by the row's task
    records = []
    for row, checked in zip(rows, drawn):
        correct = sum(s.correct for s in checked)
        records.append({"problem_id": row["problem_id"], "n": len(checked), "correct": correct,
                        "unparseable": sum(s.verdict is Verdict.UNPARSEABLE for s in checked),
                        "pass_rate": correct / len(checked) if checked else 0.0,
                        "truncated": sum(s.finish_reason == "length" for s in checked),
                        "generated_tokens": sum(s.tokens for s in checked)})
    return records


def run_filter(prompts: str | Path, out: str | Path, cfg: FilterConfig, *, policy: Policy | None = None,
               checker: AnswerChecker | None = None) -> dict[str, Any]:
    """Score the prompts of ``prompts`` (an rl.jsonl; resuming from the pass-rates file beside ``out``) and
    write the kept ones to ``out``: every prompt (or the first ``cfg.limit``), or batch by batch until
    ``cfg.enough`` of them are in the band. ``prompts`` and ``out`` replace ``cfg.prompts`` / ``cfg.out``.

    ``policy``/``checker`` default to ``make_backend(cfg.backend, cfg.model, **cfg.backend_options)`` and a
    ``Checker``, made only if there is something to score and closed here; pass your own to reuse open ones.
    Returns the stats: ``total`` (prompts scored), ``kept``, ``too_easy`` (pass rate above the band),
    ``too_hard`` (below it), ``out``, ``pass_rates`` (the file) and ``generated_tokens`` (sampled for the pass
    rates, this run and resumed ones: the stage's compute).
    """
    from ..progress import Progress

    cfg = dataclasses.replace(cfg, prompts=str(prompts), out=str(out))

    lo, hi = parse_band(cfg.keep)
    rows = load_rl_rows(cfg.prompts)[: cfg.limit]
    raw = list(read_jsonl(cfg.prompts))  # kept prompts keep every field of their rl.jsonl record
    rates_file = pass_rates_path(cfg.out)
    done = done_ids(rates_file)
    todo = [r for r in rows if r["problem_id"] not in done]

    def count_in_band(records) -> int:
        return sum(lo <= r["pass_rate"] <= hi for r in records)

    in_band = count_in_band(read_jsonl(rates_file)) if done else 0
    if cfg.enough is not None and in_band >= cfg.enough:
        todo = []  # a resumed run that had already found enough
    own = []
    try:
        if todo and policy is None:
            from ..backends import make_backend

            policy = make_backend(cfg.backend, cfg.model, **cfg.backend_options)
            own.append(policy)
        if todo and checker is None:
            from ..checking import Checker

            checker = Checker(workers=cfg.checker_workers, deadline=cfg.checker_deadline)
            own.append(checker)
        with Progress() as progress:
            task = progress.add_task(f"pass rates (n={cfg.n})", total=len(rows), completed=len(rows) - len(todo))
            for i in range(0, len(todo), cfg.batch_size):
                if cfg.enough is not None and in_band >= cfg.enough:
                    log.info("%d prompts in the band: enough (enough=%d); %d prompts left unscored", in_band,
                             cfg.enough, len(todo) - i)
                    break
                batch = todo[i: i + cfg.batch_size]
                records = score_batch(policy, checker, batch, cfg)
                append_jsonl(rates_file, records)
                in_band += count_in_band(records)
                progress.advance(task, len(batch))
    finally:
        for obj in own:
            obj.close()
    rates = {r["problem_id"]: r for r in read_jsonl(rates_file)}
    scored = [(row, rec) for row, rec in zip(rows, raw) if row["problem_id"] in rates]  # all unless `enough`
    kept, easy, hard = [], 0, 0
    for row, rec in scored:
        rate = rates[row["problem_id"]]["pass_rate"]
        if rate > hi:
            easy += 1
        elif rate < lo:
            hard += 1
        else:
            kept.append({**rec, "pass_rate": rate})
    write_jsonl(cfg.out, kept)
    log.info("kept %d of %d prompts (pass rate in [%s, %s]); %d too easy, %d too hard",
             len(kept), len(scored), lo, hi, easy, hard)
    tokens = sum(int(rates[row["problem_id"]].get("generated_tokens", 0)) for row, _ in scored)
    return {"total": len(scored), "kept": len(kept), "too_easy": easy, "too_hard": hard, "out": str(cfg.out),
            "pass_rates": str(rates_file), "generated_tokens": tokens}
