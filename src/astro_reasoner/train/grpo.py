"""ASTRO §3.4: RL with verifiable rewards (GRPO, no KL), as thin glue over TRL's ``GRPOTrainer``.

Data: ``rl.jsonl`` rows ``{"problem_id", "prompt": [messages], "answer": gold}``. TRL samples
``num_generations`` completions per prompt and calls our reward (rewards.correctness_reward through the
checker's process pool) with the ``answer`` column.

Behaviour logging (the input of the reward/behaviour correlation analysis): the reward function also counts
self-reflections and backtracks in every completion (``astro_reasoner.behaviour.analyze_behaviour``) and
reports batch means through TRL's ``log_metric`` side channel, so TRL averages them over each logging step,
across processes, and sends them to tensorboard with its own metrics (reward, completion length...).
``BehaviourMetricsCallback`` writes one line per logging step to ``output_dir/metrics.jsonl``; with
``save_completions`` every completion goes to ``output_dir/completions.jsonl`` (``completions.rank{k}.jsonl`` for
other ranks) with its reward and counts.
"""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import ConfigError
from ..io import DataError, append_jsonl, numbered_jsonl, read_jsonl, write_jsonl
from .card import install_model_card
from .common import (add_umask_callback, lora_config, prepare_environment, resolve_model_path, save_final,
                     start_run, train_loop, write_summary)
from .runtime import check_runtime
from ..checking import AnswerChecker, completion_text
from .rewards import RewardValues, correctness_reward
from .sft import check_messages

if TYPE_CHECKING:  # annotations only: the protocol every backend (and test double) implements
    from .trl_configs import RLStageConfig  # imports TRL: `astro rl filter` (load_rl_rows) must not need it
    from ..backends.base import Policy

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
# metrics.jsonl field <- TRL log key (TRL's own metrics, and ours logged through log_metric)
METRIC_KEYS = {
    "reward_mean": "reward", "reward_std": "reward_std", "length_mean": "completions/mean_length",
    "clipped_ratio": "completions/clipped_ratio", "correct_frac": "correct_frac",
    "unparseable_frac": "unparseable_frac", "reflections_mean": "behaviour/reflections_mean",
    "backtracks_mean": "behaviour/backtracks_mean", "steps_mean": "behaviour/steps_mean",
    "backtrack_frac": "behaviour/backtrack_frac", "frac_reward_zero_std": "frac_reward_zero_std",
    "loss": "loss", "grad_norm": "grad_norm", "learning_rate": "learning_rate", "entropy": "entropy",
}


def load_rl_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows ``{"problem_id", "prompt": [...], "answer"}`` from rl.jsonl, validated."""
    rows = []
    for lineno, rec in numbered_jsonl(path):
        where = f"{path}:{lineno}"
        prompt = check_messages(rec.get("prompt"), where, "prompt", roles=("system", "user", "assistant"))
        answer = rec.get("answer")
        if answer is None or str(answer).strip() == "":
            raise DataError(f"{where}: field 'answer' (the gold answer the reward checks against) is missing")
        rows.append({"problem_id": str(rec.get("problem_id", lineno)), "prompt": prompt, "answer": str(answer)})
        if rec.get("task"):  # another task's fields (astro_reasoner.tasks): the reward needs them
            rows[-1]["task"] = rec["task"]
    if any("task" in r for r in rows):  # one column for every row (math rows: None)
        rows = [{**r, "task": r.get("task")} for r in rows]
    if not rows:
        raise DataError(f"{path}: no prompts; run `astro clone` first (it writes rl.jsonl)")
    return rows


def behaviour_counter():
    """``analyze_behaviour`` from the shared behaviour module, or a ConfigError saying how to proceed."""
    try:
        from ..behaviour import analyze_behaviour
    except ImportError as exc:
        raise ConfigError(f"behaviour_logging=true needs astro_reasoner.behaviour.analyze_behaviour, which cannot "
                          f"be imported ({exc}); update astro-reasoner, or set behaviour_logging=false") from None
    return analyze_behaviour


def completions_path(out_dir: str | Path, rank: int) -> Path:
    return Path(out_dir) / ("completions.jsonl" if rank == 0 else f"completions.rank{rank}.jsonl")


class LoggedCorrectnessReward:
    """TRL reward function: ``correctness_reward`` plus behaviour metrics and the per-completion log.

    A callable object rather than a closure so that its parts are visible; TRL names it ``correctness``
    (``rewards/correctness/mean`` in the logs).
    """

    def __init__(self, checker: AnswerChecker, values: RewardValues, analyze=None,
                 completions_file: Path | None = None):
        self.__name__ = "correctness"
        self.checker, self.values, self.analyze, self.completions_file = checker, values, analyze, completions_file

    def __call__(self, prompts, completions, answer, problem_id=None, trainer_state=None, log_metric=None,
                 **kwargs) -> list[float]:
        rewards = correctness_reward(prompts, completions, answer, checker=self.checker, values=self.values,
                                     log_metric=log_metric, task=kwargs.get("task"))
        texts = [completion_text(c) or "" for c in completions]
        counts = [self.analyze(t).counts() for t in texts] if self.analyze else None
        if counts and log_metric is not None:
            n = len(counts)
            log_metric("behaviour/reflections_mean", sum(c["reflections"] for c in counts) / n)
            log_metric("behaviour/backtracks_mean", sum(c["backtracks"] for c in counts) / n)
            log_metric("behaviour/steps_mean", sum(c["steps"] for c in counts) / n)
            log_metric("behaviour/backtrack_frac", sum(c["backtracks"] > 0 for c in counts) / n)
        if self.completions_file is not None:
            # "step" = the first optimizer step trained on these samples (global_step when they were drawn + 1)
            step = (trainer_state.global_step if trainer_state is not None else 0) + 1
            ids = problem_id or [None] * len(texts)
            append_jsonl(self.completions_file, [
                {"step": step, "problem_id": pid, "reward": r, "completion": t, **(counts[i] if counts else {})}
                for i, (pid, r, t) in enumerate(zip(ids, rewards, texts))])
        return rewards


def _truncate_after(path: Path, step: int) -> None:
    """Drop records logged after ``step`` (a resumed run re-does those steps)."""
    if path.exists():
        write_jsonl(path, [r for r in read_jsonl(path, tolerate_torn_tail=True) if r.get("step", 0) <= step])


def make_metrics_callback(out_dir: str, rank: int, save_completions: bool):
    """A ``TrainerCallback`` writing ``metrics.jsonl`` (main process) at each log event; on (re)start it drops
    lines of steps a resumed run will redo, from metrics.jsonl and this rank's completions file."""
    from transformers import TrainerCallback

    class BehaviourMetricsCallback(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                _truncate_after(Path(out_dir) / METRICS_FILE, state.global_step)
            if save_completions:
                _truncate_after(completions_path(out_dir, rank), state.global_step)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs or "reward" not in logs:
                return
            rec = {"step": state.global_step, "epoch": state.epoch, "time": round(time.time(), 3)}
            rec.update({k: logs[src] for k, src in METRIC_KEYS.items() if logs.get(src) is not None})
            append_jsonl(Path(out_dir) / METRICS_FILE, [rec])

    return BehaviourMetricsCallback()


def build_grpo_trainer(cfg: RLStageConfig, checker: AnswerChecker):
    """The configured TRL ``GRPOTrainer`` (not yet trained; ``cfg`` is its ``args``), rewarding through
    ``checker``."""
    from datasets import Dataset
    from trl import GRPOTrainer

    analyze = behaviour_counter() if cfg.behaviour_logging else None
    model_path = resolve_model_path(cfg.model)
    rows = load_rl_rows(cfg.prompts)
    rank = cfg.process_index
    reward = LoggedCorrectnessReward(
        checker, RewardValues(cfg.reward_correct, cfg.reward_wrong, cfg.reward_unparseable), analyze,
        completions_path(cfg.output_dir, rank) if cfg.save_completions else None)
    trainer = GRPOTrainer(model=model_path, reward_funcs=[reward], args=cfg, train_dataset=Dataset.from_list(rows),
                          peft_config=lora_config(cfg),
                          callbacks=[make_metrics_callback(cfg.output_dir, rank, cfg.save_completions)])
    install_model_card(trainer, cfg.model)  # "fine-tuned version of <base model>", not of None
    add_umask_callback(trainer)
    return trainer, {"model_path": model_path, "prompts": len(rows)}


def run_grpo(prompts: str | Path, out: str | Path, cfg: RLStageConfig, *, policy: Policy | None = None,
             checker: AnswerChecker | None = None) -> dict[str, Any]:
    """Train with GRPO on ``prompts`` (rl.jsonl), save an HF checkpoint in ``out`` (plus metrics.jsonl); return
    ``{"checkpoint": out, "skipped": bool}`` (skipped: ``out`` already held this finished run).

    ``prompts`` and ``out`` replace ``cfg.prompts`` / ``cfg.output_dir`` (the config keeps both fields so that a
    YAML file describes the whole run). ``checker`` rewards the completions (default: a ``Checker`` with
    ``cfg.checker_workers`` / ``cfg.checker_deadline``, made and closed here). ``policy`` is not used (TRL
    samples from the model it trains, ``cfg.model``); it is accepted so every stage is called the same way.
    Checkpoints every ``save_steps``; re-running the same command resumes from the latest one.
    """
    from ..checking import Checker

    if (str(prompts), str(out)) != (cfg.prompts, cfg.output_dir):
        cfg = cfg.with_changes(prompts=str(prompts), output_dir=str(out))
    rt = check_runtime(cfg)  # device/precision errors before anything is written
    prepare_environment(cfg)
    if cfg.behaviour_logging:
        behaviour_counter()  # fail before training if the behaviour counter is missing
    finished, resume_from, lock = start_run(cfg)  # noqa: F841 - the lock is held for the run
    if finished:
        log.warning("%s already holds this finished RL run; skipping (overwrite=true to retrain)", cfg.output_dir)
        return {"checkpoint": cfg.output_dir, "skipped": True}
    started = time.time()
    # a checker made here is closed here; a given one stays open for the caller
    made = Checker(workers=cfg.checker_workers, deadline=cfg.checker_deadline) if checker is None else None
    with made if made is not None else nullcontext(checker) as checker:
        trainer, info = build_grpo_trainer(cfg, checker)
        train_loop(trainer, cfg, rt, resume_from)
    save_final(trainer, cfg, info["model_path"])
    write_summary(trainer, cfg, {"stage": "rl", "data": info}, started)
    return {"checkpoint": cfg.output_dir, "skipped": False}
