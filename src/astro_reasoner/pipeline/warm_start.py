"""The pipeline's optional warm start (issue 16; the paper's starting point in miniature).

SFT ``model`` on DIRECT solutions (one attempt, no reflection, no backtracking) and make that checkpoint the base
of everything else (search, both arms, the "base" row). The rows come from ``warm_start.data`` by task
(``tasks.direct_solutions``: Countdown's solver, or a math record's worked ``solution`` such as GSM8K's), or from
an SFT JSONL (``sft_data``). With ``select:``, every saved checkpoint is scored on VALIDATION problems and the
best one is kept (early stopping; the test split is never looked at).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..config import ConfigError, build_config
from ..data.specs import load_spec
from ..io import read_json

log = logging.getLogger(__name__)


def held_out_texts(cfg) -> set[str]:
    """The held-out problems' texts, from the test spec itself (the warm start does not depend on the train
    spec, so resizing the train set does not redo it)."""
    d = cfg.data
    return {p.problem.strip() for p in load_spec(d.test, d.data_dir, d.eval_limit, where="data.test")}


def build_rows(cfg, out: Path) -> tuple[str, dict[str, Any], set[str]]:
    """(the SFT JSONL to train on, its stats, the texts of the problems it trains on) for ``cfg.warm_start``."""
    from ..clone.export import direct_row
    from ..io import write_jsonl
    from ..tasks import direct_solutions

    ws = cfg.warm_start or {}
    if "sft_data" in ws:
        return str(ws["sft_data"]), {}, set()
    problems = load_spec(ws["data"], cfg.data.data_dir, where="warm_start.data")
    held_out = held_out_texts(cfg)
    kept = [p for p in problems if p.problem.strip() not in held_out]  # never train on the test split
    sols, skipped = direct_solutions(kept, int(ws.get("per_problem", 1)), cfg.seed)
    rows = [direct_row(p, text, j) for p, j, text in sols]
    if not rows:
        why = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in skipped.items() if n)
        raise ConfigError(f"warm_start.data: none of its {len(kept)} problems has a usable worked solution "
                          f"({why or 'none left after dropping the test problems'}); give problems whose records "
                          "carry a 'solution' ending in the answer (e.g. gsm8k:train), or an SFT JSONL as sft_data")
    write_jsonl(out / "sft.jsonl", rows)
    stats = {"examples": len(rows), "dropped_test_overlap": len(problems) - len(kept),
             **{f"skipped_{reason}": n for reason, n in skipped.items()}}
    used = {r["problem_id"] for r in rows}
    return str(out / "sft.jsonl"), stats, {p.problem.strip() for p in kept if p.id in used}


def replay_mix(cfg, inputs: dict[str, Path], data: Path, out: Path) -> tuple[Path, int]:
    """(the SFT JSONL an arm trains on, the number of warm-start rows mixed in): ``data`` itself without
    ``warm_start.replay``; else ``data`` plus ``replay`` rows of the warm start's SFT data, drawn with a stable
    seed so both arms get the same rows (the arms still differ only in their search traces)."""
    import random

    from ..io import read_jsonl, stable_seed, write_jsonl

    n = int((cfg.warm_start or {}).get("replay", 0))
    if not n:
        return data, 0
    ws = cfg.warm_start
    source = Path(ws["sft_data"]) if "sft_data" in ws else inputs["warm-start"] / "sft.jsonl"
    pool = list(read_jsonl(source))
    if len(pool) < n:
        raise ConfigError(f"warm_start.replay={n}: the warm start has only {len(pool)} rows ({source}); "
                          f"use replay <= {len(pool)}")
    picked = random.Random(stable_seed(cfg.seed, "replay")).sample(pool, n)
    keys = ("problem_id", "prompt", "completion")  # the arm's rows carry more keys; the trainer reads these
    rows = [*read_jsonl(data), *({k: r[k] for k in keys} | {"mode": "replay", "n_backtracks": 0} for r in picked)]
    write_jsonl(out / "sft_mix.jsonl", rows)
    return out / "sft_mix.jsonl", n


def run_warm_start(b, out: Path, inputs: dict[str, Path]) -> dict[str, Any]:
    """The ``warm-start`` stage (``b``: the stage builder, for its training launcher and policies)."""
    from ..train import SFTStageConfig

    ws = b.cfg.warm_start or {}
    data, stats, trained_on = build_rows(b.cfg, out)
    cfg = build_config(SFTStageConfig, {**(ws.get("sft") or {}), "model": b.cfg.model, "data": data,
                                        "output_dir": str(out / "model"), "seed": b.cfg.seed},
                       where="pipeline section 'warm_start.sft'")
    trained = b.train("sft", cfg, out)
    ckpt = trained.pop("checkpoint")
    stats.update(trained)
    if ws.get("select"):
        ckpt, stats["validation"] = select_checkpoint(b, Path(ckpt), ws["select"], out / "select", trained_on)
    return {"checkpoint": ckpt, **stats}


def select_checkpoint(b, final: Path, sel: dict[str, Any], out: Path,
                      trained_on: set[str] = frozenset()) -> tuple[str, dict[str, Any]]:
    """Early stopping on held-out VALIDATION problems: evaluate each saved ``checkpoint-N`` and the final
    model, keep the highest pass@1 (ties: the fewest steps). Problems of the test split or of the warm start's
    own training rows are dropped from the validation set (by text)."""
    from ..data import write_problems
    from ..evaluate import EvalConfig, run_eval

    problems = load_spec(sel["data"], b.cfg.data.data_dir, where="warm_start.select.data")
    excluded = held_out_texts(b.cfg) | set(trained_on)
    problems = [p for p in problems if p.problem.strip() not in excluded]
    if not problems:
        raise ConfigError("warm_start.select.data: every validation problem is a test or warm-start training "
                          "problem; use a disjoint slice")
    out.mkdir(parents=True, exist_ok=True)
    write_problems(out / "validation.jsonl", problems)
    steps = {int(p.name.split("-")[1]): p for p in final.glob("checkpoint-*") if p.name.split("-")[1].isdigit()}
    final_step = int(read_json(final / "train_summary.json").get("global_step", 0) or 0)
    steps[final_step] = final  # the final model (its own checkpoint-N, if saved, is the same weights)
    n = int(sel.get("n", 2))
    cfg = build_config(EvalConfig, {"datasets": [str(out / "validation.jsonl")], "n": n, "k": n,
                                    "seed": b.cfg.seed, "bootstrap": 0,
                                    **{k: v for k, v in sel.items() if k not in ("data", "n")}},
                       where="pipeline section 'warm_start.select'")
    scores: dict[str, Any] = {}
    for step in sorted(steps):
        model = str(steps[step])
        summary = b.with_policy(model, out / f"step-{step}",
                                lambda policy: run_eval(None, out / f"step-{step}", cfg, policy=policy, model=model))
        scores[str(step)] = summary.get("overall", {}).get("pass@1")
        log.info("warm start: step %d, validation pass@1 %s", step, scores[str(step)])
    best = max(sorted(steps), key=lambda s: (scores[str(s)] or 0.0, -s))
    return str(steps[best]), {"pass@1_by_step": scores, "selected_step": best, "problems": len(problems),
                              "samples": n}
