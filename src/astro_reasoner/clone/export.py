"""SFT and RL datasets in TRL's formats, a dataset card, and an optional push to the Hugging Face Hub.

- ``sft.jsonl``: conversational prompt-completion rows, as TRL's ``SFTTrainer`` expects (``astro sft`` trains
  on all tokens by default, as the paper does, or on the completion only): ``prompt`` = the system + user messages of the search prompt, ``completion`` =
  ``[{"role": "assistant", "content": cot}]``, plus ``problem_id``, ``mode``, ``n_backtracks``, ``trace_index``,
  ``rewritten`` and ``selfeval_votes``.
- ``rl.jsonl``: ``prompt`` + gold ``answer`` + ``problem_id`` (+ ``solved_in_search``) for GRPO.

Training prompts are zero-shot (``few_shot=0``; our choice): the search may show the model a worked example
to get the step format out of a small model, but the trained model must produce that format from the
instruction alone, which is also how ``astro eval`` prompts it by default. Both files load with
``datasets.load_dataset("json", data_files=...)``.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from ..io import DataError, jsonl_lines, write_files_atomic
from ..prompts import PromptConfig, problem_messages
from ..types import CotRecord, Problem

TRAIN_PROMPT = PromptConfig(few_shot=0)


def training_messages(problem: str | Problem) -> list[dict[str, str]]:
    return problem_messages(problem, TRAIN_PROMPT)  # a Problem gets its task's prompt


def sft_row(problem: str | Problem, rec: CotRecord) -> dict[str, Any]:
    """The TRL conversational prompt-completion row of one kept CoT."""
    return {"problem_id": rec.problem_id, "prompt": training_messages(problem),
            "completion": [{"role": "assistant", "content": rec.cot}], "mode": rec.mode,
            "n_backtracks": int(rec.n_backtracks), "trace_index": int(rec.trace_index),
            "rewritten": bool(rec.rewritten), "selfeval_votes": list(rec.votes)}


def direct_row(problem: Problem, text: str, index: int = 0) -> dict[str, Any]:
    """The SFT row of a direct solution written outside search (the warm start's: a task's solver or a record's
    worked solution): one attempt, no reflection, no backtracking; ``index`` tells draws of one problem apart."""
    return {"problem_id": problem.id, "prompt": training_messages(problem),
            "completion": [{"role": "assistant", "content": text}], "mode": "warmstart",
            "n_backtracks": 0, "trace_index": int(index)}


def rl_row(problem_id: str, problem: str | Problem, answer: str, solved: bool) -> dict[str, Any]:
    from ..tasks import task_fields

    fields = task_fields(problem) if isinstance(problem, Problem) else {}
    return {"problem_id": problem_id, "prompt": training_messages(problem), "answer": answer,
            "solved_in_search": bool(solved), **({"task": fields} if fields else {})}  # the reward reads it


def _dist(values: Sequence[int]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    xs = sorted(values)
    return {"n": len(xs), "min": xs[0], "mean": round(statistics.fmean(xs), 1), "median": xs[len(xs) // 2],
            "p90": xs[min(len(xs) - 1, int(0.9 * len(xs)))], "max": xs[-1]}


def _pct(a: int, b: int) -> str:
    return f"{a}/{b} ({100 * a / b:.1f}%)" if b else "n/a (0)"


def dataset_card(stats: dict[str, Any], lengths: Sequence[int], length_unit: str, config: dict[str, Any]) -> str:
    """README.md for the output directory (Hub dataset card with YAML front matter)."""
    ex = stats["examples"]
    lines = [
        "---", "configs:", "- config_name: sft", "  data_files: sft.jsonl", "- config_name: rl",
        "  data_files: rl.jsonl", "tags: [astro, math, reasoning, long-cot, procedure-cloning]", "---", "",
        f"# ASTRO procedure-cloning data ({config.get('mode')} mode)", "",
        "Long chain-of-thought made from MCTS search trees by `astro clone` (astro-reasoner): each trace visits "
        "wrong answers, reflects, backtracks to an earlier step and ends at a correct answer (ASTRO, "
        "arXiv 2507.00417, §2.2-2.3). `direct` mode keeps the correct path only (baseline).", "",
        "| file | rows | use |", "|---|---|---|",
        f"| `sft.jsonl` | {ex} | TRL `SFTTrainer` (conversational prompt-completion) |",
        f"| `rl.jsonl` | {stats['rl_prompts']} | TRL `GRPOTrainer` (prompt + gold `answer`) |", "",
        "```python", "from datasets import load_dataset",
        "sft = load_dataset(\"json\", data_files=\"sft.jsonl\", split=\"train\")",
        "rl = load_dataset(\"json\", data_files=\"rl.jsonl\", split=\"train\")", "```", "",
        "## Where the examples went", "",
        f"- trees read: {stats['trees']} (malformed lines skipped: {stats['malformed']}, duplicate ids: "
        f"{stats['duplicate_ids']})",
        f"- trees without a correct terminal (no trace): {stats['no_correct']}",
        f"- trees whose correct terminals all failed self-evaluation (no trace): {stats.get('no_approved', 0)}",
        f"- trees without a wrong terminal (k = 0 traces only): {stats['no_wrong']}",
        f"- traces: {stats['traces']} (short of the sampled backtrack count: {stats['short']}, duplicates "
        f"dropped: {stats['duplicates']})",
        f"- template round trip through the behaviour counter: {_pct(stats['roundtrip_ok'], stats['traces'])}",
        f"- LM rewrite accepted: {_pct(stats['rewrite_accepted'], stats['rewrite_attempted'])}"
        + (f" — rejections: {dict(stats['rewrite_reasons'])}" if stats["rewrite_reasons"] else ""),
        f"- correct terminals passing self-evaluation: {_pct(stats['selfeval_kept'], stats['selfeval_judged'])}"
        + (f" (votes: {dict(stats['votes'])})" if stats["votes"] else ""),
        f"- dropped by the final answer re-check: {stats['recheck_dropped']}",
        f"- dropped as too long: {stats['too_long']}",
        f"- exported: {ex}", "",
        "## SFT mix (ASTRO §3.3: per problem one k = 0 and three k >= 1 solutions)", "",
        f"- k = 0 examples: {stats['mix']['k0']} ({stats['mix']['k0_per_problem']} per problem); k >= 1 "
        f"examples: {stats['mix']['k_ge_1']} ({stats['mix']['k_ge_1_per_problem']} per problem), over "
        f"{stats['mix']['problems']} problems", "",
        "## Backtracks per example", "", "| backtracks | examples |", "|---|---|",
        *[f"| {k} | {v} |" for k, v in sorted(stats["backtrack_distribution"].items(), key=lambda kv: int(kv[0]))],
        "", f"## Length of the chain-of-thought ({length_unit})", "",
        "| n | min | mean | median | p90 | max |", "|---|---|---|---|---|---|",
    ]
    d = _dist(lengths)
    lines.append("| " + " | ".join(str(d.get(k, "-")) for k in ("n", "min", "mean", "median", "p90", "max")) + " |")
    lines += ["", "## Settings", "", "```yaml", yaml.safe_dump(config, sort_keys=False).rstrip(), "```", ""]
    return "\n".join(lines)


def write_outputs(out_dir: Path, sft: list[dict], rl: list[dict], card: str) -> None:
    write_files_atomic({out_dir / "sft.jsonl": jsonl_lines(sft), out_dir / "rl.jsonl": jsonl_lines(rl),
                        out_dir / "README.md": card})  # all or nothing (a full disk leaves no empty file)


def backtrack_distribution(rows: Sequence[dict]) -> dict[int, int]:
    return dict(sorted(Counter(int(r["n_backtracks"]) for r in rows).items()))


def push_to_hub(out_dir: str | Path, repo_id: str, *, private: bool = False, token: str | None = None) -> str:
    """Upload ``sft`` and ``rl`` as two configs of one Hub dataset, with the card. Returns the dataset URL."""
    from datasets import load_dataset
    from huggingface_hub import HfApi

    out = Path(out_dir)
    try:
        for name in ("sft", "rl"):
            ds = load_dataset("json", data_files=str(out / f"{name}.jsonl"), split="train")
            ds.push_to_hub(repo_id, config_name=name, split="train", private=private, token=token)
        HfApi(token=token).upload_file(path_or_fileobj=str(out / "README.md"), path_in_repo="README.md",
                                       repo_id=repo_id, repo_type="dataset")
    except Exception as exc:  # noqa: BLE001 - network/auth errors of any kind become one clear message
        raise DataError(f"push to the Hub ({repo_id}) failed: {type(exc).__name__}: {exc}. The files are intact "
                        f"in {out}; check your token (`huggingface-cli login` or HF_TOKEN), that HF_HUB_OFFLINE "
                        f"is not set, and re-run with --push-to-hub") from None
    return f"https://huggingface.co/datasets/{repo_id}"
