"""Best-of-N baseline: N independent full solutions per problem at the token budget its search tree used.

For each tree, the budget is the tokens the search generated for it (``tree.stats["generated_tokens"]``).
We draw whole solutions from the same policy with the same prompt (few-shot as in the search) in waves of
``batch`` samples, counting generated tokens in sample order; samples past the budget do not count, so the
baseline never gets more compute than the search had (rejection sampling with the same checker as oracle,
as the search's terminal rewards are). A problem stops at its first correct sample, at the budget, or at
``max_samples``. The kept solutions are written in the same ``sft.jsonl`` format as ``astro clone``.

Files in ``out``: ``bestofn.jsonl`` (one record per problem, appended: resumable), ``sft.jsonl``,
``rl.jsonl``, ``stats.json``, ``README.md``, ``bestofn_config.json`` (the settings; a re-run with others is
refused, see ``outdir.claim_out_dir``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import require_arguments
from ..io import append_jsonl, done_ids, read_jsonl, stable_seed, write_json, write_jsonl, write_text_atomic
from ..outdir import claim_out_dir
from ..prompts import PromptBuilder, PromptConfig
from ..sampling import CheckedSample, sample_and_check
from ..tasks import problem_from_tree
from ..types import CotRecord, GenParams
from . import export
from .config import BestOfNConfig
from .run import read_trees

if TYPE_CHECKING:  # annotations only: the protocols every backend / checker (and test double) implements
    from ..backends.base import Policy
    from ..checking import AnswerChecker

SETTINGS_FILE = "bestofn_config.json"


def _new_state(tree, budget: int) -> dict[str, Any]:
    return {"problem_id": tree.problem_id, "budget": budget, "samples": 0, "tokens": 0, "found": False,
            "text": None, "answer": None, "verdicts": {}, "over_budget": 0}


def _absorb(st: dict[str, Any], checked: list[CheckedSample], cfg: BestOfNConfig) -> bool:
    """Count one wave's samples for one problem in order; returns True when the problem is finished."""
    for s in checked:
        if st["tokens"] + s.tokens > st["budget"]:
            st["over_budget"] += 1
            return True  # the budget is spent: this and later samples do not count
        st["tokens"] += s.tokens
        st["samples"] += 1
        v = s.verdict.value
        st["verdicts"][v] = st["verdicts"].get(v, 0) + 1
        if s.correct:
            st["found"], st["text"], st["answer"] = True, s.text.strip(), s.answer
            return True
        if st["samples"] >= cfg.max_samples:
            return True
    return st["tokens"] >= st["budget"]


def run_best_of_n(trees: str | Path, out: str | Path, cfg: BestOfNConfig, *, policy: Policy | None = None,
                  checker: AnswerChecker | None = None, progress: bool = False) -> dict[str, Any]:
    """Best-of-N for every tree of ``trees`` (a trees.jsonl file or a search output directory) into ``out``;
    returns the statistics (also written to ``stats.json``). ``policy`` draws the samples and ``checker`` checks
    them: both are required once there is a problem to sample (a run where every tree is done or has no
    budget needs neither)."""
    out = Path(out)
    loaded, info = read_trees(trees)  # before anything is written
    # Records drawn with other settings must not be appended to the same file. The backend is not compared
    # (the same model served another way draws from the same distribution), as in eval.
    lock = claim_out_dir(out, dataclasses.asdict(cfg), settings_file=SETTINGS_FILE,  # noqa: F841 - held
                         holds="best-of-N records", ignore=("backend",))
    rec_path = out / "bestofn.jsonl"
    done = done_ids(rec_path)
    builder = PromptBuilder(policy, PromptConfig(few_shot=cfg.few_shot))
    no_budget = 0
    budgets: list[tuple[Any, int]] = []
    for tree in loaded:
        if tree.problem_id in done:
            continue
        budget = tree.stats.get(cfg.budget_key) or cfg.default_budget
        if not budget:
            no_budget += 1
            continue
        budgets.append((tree, int(budget)))
    if budgets:
        require_arguments("run_best_of_n", policy=policy, checker=checker)
    active: list[tuple[Any, dict[str, Any], str]] = [
        (tree, _new_state(tree, budget), builder.continuation(problem_from_tree(tree))) for tree, budget in budgets]
    bar = task = None
    if progress and active:
        from ..progress import Progress

        bar = Progress()
        bar.start()
        task = bar.add_task("best-of-n", total=len(active))
    wave = 0
    try:
        while active:
            params = GenParams(n=cfg.batch, max_tokens=cfg.max_tokens, temperature=cfg.temperature,
                               top_p=cfg.top_p, seed=stable_seed(cfg.seed, "best-of-n", wave))
            drawn = sample_and_check(policy, checker, [t for t, _, _ in active], [p for _, _, p in active], params)
            still, finished = [], []
            for (tree, st, prompt), checked in zip(active, drawn):
                (finished if _absorb(st, checked, cfg) else still).append((tree, st, prompt))
            append_jsonl(rec_path, [st for _, st, _ in finished])
            if bar:
                bar.advance(task, len(finished))
            active, wave = still, wave + 1
    finally:
        if bar:
            bar.stop()
    return _export(out, loaded, read_jsonl(rec_path) if rec_path.exists() else [], info, no_budget, cfg)


def _export(out: Path, trees, recs, info, no_budget: int, cfg: BestOfNConfig) -> dict[str, Any]:
    by_id = {t.problem_id: t for t in trees}
    recs = [r for r in recs if r["problem_id"] in by_id]
    sft = [export.sft_row(problem_from_tree(by_id[r["problem_id"]]),
                          CotRecord(key=f"{r['problem_id']}#0", problem_id=r["problem_id"], trace_index=0,
                                    mode="best-of-n", n_backtracks=0, template=r["text"], roundtrip=True,
                                    cot=r["text"]))
           for r in recs if r["found"]]
    rl = [export.rl_row(t.problem_id, problem_from_tree(t), t.answer, False) for t in trees]
    n = len(recs)
    stats = {"trees": len(trees), "malformed": info["malformed"], "no_budget": no_budget, "problems": n,
             "solved": len(sft), "solve_rate": round(len(sft) / n, 4) if n else None,
             "samples": sum(r["samples"] for r in recs), "tokens": sum(r["tokens"] for r in recs),
             "budget": sum(r["budget"] for r in recs), "messages": list(info["messages"])}
    if no_budget:
        stats["messages"].append(f"{no_budget} tree(s) have no '{cfg.budget_key}' in their stats: skipped (set "
                                 f"default_budget=N to give them a budget)")
    write_jsonl(out / "sft.jsonl", sft)
    write_jsonl(out / "rl.jsonl", rl)
    write_json(out / "stats.json", stats)
    write_text_atomic(out / "README.md", "\n".join([
        "# Best-of-N baseline (astro-reasoner)", "",
        f"Independent full solutions from `{cfg.model}` at each search tree's generated-token budget; the first "
        "correct one is kept (`sft.jsonl`, same format as `astro clone`).", "",
        f"- problems: {n}; solved within budget: {len(sft)} ({stats['solve_rate']})",
        f"- samples drawn: {stats['samples']}; tokens used: {stats['tokens']} of a total budget of "
        f"{stats['budget']}", f"- trees without a budget (skipped): {no_budget}", ""]))
    return stats
