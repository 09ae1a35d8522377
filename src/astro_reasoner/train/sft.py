"""ASTRO §3.3: supervised fine-tuning on search-derived long CoTs, as thin glue over TRL's ``SFTTrainer``.

Data: ``sft.jsonl`` in TRL's conversational prompt-completion form (``prompt`` = system/user messages,
``completion`` = the assistant CoT). The paper trains on all tokens without masking, so by default the loss
falls on the prompt and the completion (TRL ``completion_only_loss=False``); ``completion_only_loss=true``
masks the prompt, which works with any chat template (``assistant_only_loss`` would need
``{% generation %}`` markers that Llama-3.1/3.2 templates cannot be patched with).

Long CoTs: TRL truncates at ``max_length`` keeping the *start*, i.e. it cuts the final answer. We count the
examples that would be cut and warn (or drop them with ``drop_long=true``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..io import DataError, numbered_jsonl, read_jsonl
from .card import install_model_card
from .common import (add_umask_callback, lora_config, prepare_environment, resolve_model_path, save_final,
                     start_run, train_loop, write_summary)
from .runtime import check_runtime

if TYPE_CHECKING:  # annotations only: the protocols every backend / checker (and test double) implements
    from .trl_configs import SFTStageConfig  # imports TRL: `astro rl filter` (load_rl_rows) must not need it
    from ..backends.base import Policy
    from ..checking import AnswerChecker

log = logging.getLogger(__name__)


def check_messages(value: Any, where: str, field: str, *, roles: tuple[str, ...]) -> list[dict[str, str]]:
    """``value`` as a list of {"role", "content"} messages with allowed roles, or a DataError naming ``where``."""
    if not isinstance(value, list) or not value:
        raise DataError(f"{where}: field {field!r} must be a non-empty list of chat messages "
                        f"({{'role': ..., 'content': ...}}), got {type(value).__name__}")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str) or m.get("role") not in roles:
            raise DataError(f"{where}: {field}[{i}] must be a message with role in {roles} and string content, "
                            f"got {m!r:.120}")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def load_sft_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows ``{"problem_id", "prompt": [...], "completion": [...]}`` from sft.jsonl, validated."""
    rows = []
    for lineno, rec in numbered_jsonl(path):
        where = f"{path}:{lineno}"
        prompt = check_messages(rec.get("prompt"), where, "prompt", roles=("system", "user", "assistant"))
        completion = check_messages(rec.get("completion"), where, "completion", roles=("assistant",))
        rows.append({"problem_id": str(rec.get("problem_id", lineno)), "prompt": prompt, "completion": completion})
    if not rows:
        raise DataError(no_examples(path))
    return rows


def no_examples(path: str | Path) -> str:
    return (f"{path}: no examples (the file is empty); `astro clone` writes sft.jsonl from search trees, and "
            "`astro baseline best-of-n` writes an empty one when it solved no problem within the search's budget")


def require_examples(path: str | Path) -> None:
    """DataError unless ``path`` holds at least one record (checked before the run claims its output_dir)."""
    for _ in read_jsonl(path):
        return
    raise DataError(no_examples(path))


def token_lengths(tokenizer, rows: list[dict[str, Any]]) -> list[int]:
    """Tokens of each rendered prompt+completion conversation (what TRL tokenizes and truncates)."""
    lengths = []
    for row in rows:
        text = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=False)
        lengths.append(len(tokenizer(text, add_special_tokens=False)["input_ids"]))
    return lengths


def apply_length_limit(rows: list[dict[str, Any]], lengths: list[int], cfg: SFTStageConfig,
                       *, main_process: bool = True) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Warn about (or drop, with ``drop_long``) examples longer than ``max_length``. Returns rows and stats."""
    stats: dict[str, Any] = {"examples": len(rows), "tokens_max": max(lengths), "tokens_mean":
                             round(sum(lengths) / len(lengths), 1), "too_long": 0, "dropped": 0}
    if cfg.max_length is None:
        return rows, stats
    long_ids = [i for i, n in enumerate(lengths) if n > cfg.max_length]
    stats["too_long"] = len(long_ids)
    if not long_ids:
        return rows, stats
    if cfg.drop_long:
        skip = set(long_ids)
        rows = [r for i, r in enumerate(rows) if i not in skip]
        stats["dropped"] = len(long_ids)
        if not rows:
            raise DataError(f"{cfg.data}: all {len(lengths)} examples exceed max_length={cfg.max_length} tokens "
                            f"(longest {max(lengths)}); raise max_length")
        msg = (f"dropped {len(long_ids)} of {len(lengths)} examples longer than max_length={cfg.max_length} "
               f"tokens (longest {max(lengths)})")
    else:
        msg = (f"{len(long_ids)} of {len(lengths)} examples exceed max_length={cfg.max_length} tokens (longest "
               f"{max(lengths)}); TRL truncates their END, where the final answer is. Raise max_length, or set "
               "drop_long=true to drop them")
    if main_process:
        log.warning(msg)
    return rows, stats


def build_sft_trainer(cfg: SFTStageConfig):
    """The configured TRL ``SFTTrainer`` (not yet trained; ``cfg`` is its ``args``) and a dict of data statistics."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTTrainer

    model_path = resolve_model_path(cfg.model)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.chat_template is None:
        raise DataError(f"{model_path}: the tokenizer has no chat template; SFT on chat data needs one (use an "
                        "instruct model, or set chat_template_path=...)")
    rows = load_sft_rows(cfg.data)
    rows, stats = apply_length_limit(rows, token_lengths(tokenizer, rows), cfg,
                                     main_process=cfg.process_index == 0)
    stats["model_path"] = model_path
    dataset = Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])
    trainer = SFTTrainer(model=model_path, args=cfg, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=lora_config(cfg))
    install_model_card(trainer, cfg.model)  # "fine-tuned version of <base model>", not of None
    add_umask_callback(trainer)
    return trainer, stats


def run_sft(data: str | Path, out: str | Path, cfg: SFTStageConfig, *, policy: Policy | None = None,
            checker: AnswerChecker | None = None) -> dict[str, Any]:
    """Train on ``data`` (sft.jsonl), save an HF checkpoint (safetensors + tokenizer + chat template) in ``out``;
    return ``{"checkpoint": out, "skipped": bool}`` (skipped: ``out`` already held this finished run).

    ``data`` and ``out`` replace ``cfg.data`` / ``cfg.output_dir`` (the config keeps both fields so that a YAML
    file, e.g. the pipeline's ``launch_config.yaml``, describes the whole run). ``policy`` and ``checker`` are
    not used (the trainer loads ``cfg.model`` itself; SFT checks no answers); they are accepted so every stage
    is called the same way. Re-running with the same config skips a finished run and resumes an interrupted
    one from its latest ``checkpoint-N`` (``resume=auto``).
    """
    if (str(data), str(out)) != (cfg.data, cfg.output_dir):
        cfg = cfg.with_changes(data=str(data), output_dir=str(out))
    rt = check_runtime(cfg)  # device/precision errors before anything is written
    prepare_environment(cfg)
    require_examples(cfg.data)  # an empty sft.jsonl: one line now, not a claimed output_dir and a library error
    finished, resume_from, lock = start_run(cfg)  # noqa: F841 - the lock is held for the run
    if finished:
        log.warning("%s already holds this finished SFT run; skipping (overwrite=true to retrain)", cfg.output_dir)
        return {"checkpoint": cfg.output_dir, "skipped": True}
    started = time.time()
    trainer, stats = build_sft_trainer(cfg)
    train_loop(trainer, cfg, rt, resume_from)
    save_final(trainer, cfg, stats["model_path"])
    write_summary(trainer, cfg, {"stage": "sft", "data": stats}, started)
    return {"checkpoint": cfg.output_dir, "skipped": False}
