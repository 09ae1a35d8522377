"""``run_clone(trees, out, cfg, *, policy, checker)``: trees.jsonl (-> self-eval of correct terminals) ->
traces -> CoT (-> rewrite) -> re-check -> sft.jsonl / rl.jsonl.

Files in ``out``: ``selfeval.jsonl`` (the votes on every correct terminal, one record per tree, when the
filter is on), ``traces.jsonl`` (every trace, with its moves), ``cots.jsonl`` (one record per trace with the
CoT and what happened to it), ``sft.jsonl``, ``rl.jsonl``, ``README.md`` (dataset card), ``stats.json``
(including the SFT mix: k = 0 and k >= 1 examples per problem), ``clone_config.json``. The LM stages append
per batch, so a run resumes where it stopped.
Trees are read with the one tree reader (``trees.iter_trees``): a malformed line stops the run with
one error naming file:line, and only a torn last line (a search still writing, or killed) is dropped. Trees
that parse but are broken, and trees without a correct or wrong terminal, are counted and reported
(``stats["messages"]``).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..behaviour import load_patterns, load_phrases
from ..config import ConfigError
from ..errors import require_arguments
from ..io import DirLock, append_jsonl, done_ids, read_jsonl, write_json, write_jsonl
from ..outdir import claim_out_dir
from ..tasks import gold_of, problem_from_tree
from ..types import CotRecord, SearchTree, Verdict
from . import export
from .config import NOT_FINGERPRINTED, CloneConfig
from .linearize import LinearizeStats, linearize_tree, validate_tree
from .render import render_path, render_trace, trace_signature
from .rewrite import rewrite_batch
from .selfeval import selfeval_batch

if TYPE_CHECKING:  # annotations only: the protocols every backend / checker (and test double) implements
    from ..backends.base import Policy
    from ..checking import AnswerChecker

MAX_MESSAGES = 20


def read_trees(path: str | Path) -> tuple[list[SearchTree], dict[str, Any]]:
    """Trees from a trees.jsonl file or a search output directory, through the search's own reader (one
    bad-line policy: a malformed line, a non-tree line or a repeated problem id is a DataError naming
    file:line; only a torn last line is dropped). Trees whose structure is broken are skipped and counted."""
    from ..trees import iter_trees

    info: dict[str, Any] = {"malformed": 0, "duplicate_ids": 0, "messages": []}
    trees: list[SearchTree] = []
    for where, tree in iter_trees(path):
        problem = validate_tree(tree)
        if problem:
            info["malformed"] += 1
            info["messages"].append(f"{where}: broken tree for {tree.problem_id!r}: {problem}; skipped")
            continue
        trees.append(tree)
    if not trees and not info["malformed"]:
        info["messages"].append(f"{path}: the trees file is empty")
    return trees, info


# Outputs of a clone run, deleted by --overwrite (clone_config.json is rewritten by the claim).
OUTPUTS = ("selfeval.jsonl", "cots.jsonl", "traces.jsonl", "sft.jsonl", "rl.jsonl", "README.md", "stats.json")


def _check_out_dir(out: Path, cfg: CloneConfig, overwrite: bool) -> DirLock:
    """Claim ``out`` (kept by run_clone for the whole run): the settings are compared with those in
    clone_config.json, except the keys ``CloneConfig.fingerprint`` leaves out (they do not change outputs)."""
    now = dataclasses.asdict(cfg)
    lock = claim_out_dir(out, now, settings_file="clone_config.json", holds="clone outputs",
                         record={"fingerprint": cfg.fingerprint(), "config": now}, under="config",
                         ignore=NOT_FINGERPRINTED, overwrite=overwrite, overwrite_flag="--overwrite")
    if overwrite:
        for name in OUTPUTS:
            (out / name).unlink(missing_ok=True)
    return lock


def _token_counter(cfg: CloneConfig, policy: Policy | None) -> tuple[Callable[[str], int], str]:
    if policy is not None:
        return policy.count_tokens, "tokens"
    if cfg.tokenizer:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(cfg.tokenizer)
        return (lambda t: len(tok(t, add_special_tokens=False)["input_ids"])), "tokens"
    if cfg.max_tokens is not None:
        raise ConfigError("max_tokens needs a tokenizer: set tokenizer=PATH_OR_HUB_ID (the model you will "
                          "fine-tune) or model=... ")
    return (lambda t: len(t.split())), "whitespace words; set tokenizer=... for tokens"


def make_policy(cfg: CloneConfig, **backend_options: Any) -> Policy:
    """The LM for rewrite/self-eval from ``cfg.backend`` and ``cfg.model``."""
    if not cfg.model:
        raise ConfigError("rewrite/selfeval need an LM: set model=... (and backend=hf|openai), or turn them off")
    from ..backends import make_backend

    return make_backend(cfg.backend, cfg.model, **backend_options)


def run_clone(trees: str | Path, out: str | Path, cfg: CloneConfig, *, policy: Policy | None = None,
              checker: AnswerChecker | None = None, overwrite: bool = False, progress: bool = False
              ) -> dict[str, Any]:
    """Run procedure cloning end to end on ``trees`` (a trees.jsonl file or a search output directory) into
    ``out``; returns the statistics (also written to ``stats.json``).

    ``checker`` is required (it tells answers apart and re-checks the CoTs). ``policy`` is the LM for rewrite /
    self-evaluation; without one, a run that needs it makes its own from ``cfg.model`` and closes it."""
    require_arguments("run_clone", checker=checker)
    out = Path(out)
    lock = _check_out_dir(out, cfg, overwrite)  # noqa: F841 - held for the run
    loaded, info = read_trees(trees)
    phrases, patterns = load_phrases(cfg.phrases_file), load_patterns(cfg.phrases_file)

    owned = policy is None and cfg.uses_lm
    if owned:
        policy = make_policy(cfg)
    try:
        votes = _selfeval_terminals(loaded, out / "selfeval.jsonl", cfg, policy) if cfg.selfeval else {}
        lin = LinearizeStats()
        traces, tree_of = [], {t.problem_id: t for t in loaded}
        for tree in loaded:
            approved = None
            if cfg.selfeval:
                approved = {int(nid) for nid, v in votes[tree.problem_id].items()
                            if v.count("yes") >= cfg.required_votes}
            tr, st = linearize_tree(tree, cfg, same=checker.equivalent_batch, approved=approved)
            for t in tr:
                t.meta["votes"] = list(votes.get(tree.problem_id, {}).get(str(t.meta["correct_node"]), []))
            lin.merge(st)
            traces.extend(tr)
        write_jsonl(out / "traces.jsonl", (t.to_json() for t in traces))
        count, unit = _token_counter(cfg, policy)
        _process(traces, tree_of, out / "cots.jsonl", cfg, checker, policy, phrases, patterns, count, progress)
    finally:
        if owned:
            policy.close()
    return _export(out, cfg, loaded, traces, tree_of, info, lin, count, unit, votes)


def _selfeval_terminals(trees, path: Path, cfg: CloneConfig, policy: Policy) -> dict[str, dict[str, list[str]]]:
    """Votes on every correct terminal's solution path (ASTRO §2.3 self-evaluation, applied to the correct
    terminals, so astro and direct data pass the same filter): problem id -> {node id: votes}. Resumable."""
    done = {r["problem_id"]: r["votes"] for r in (read_jsonl(path) if path.exists() else [])}
    todo = [t for t in trees if t.problem_id not in done]
    for i in range(0, len(todo), cfg.batch_size):
        batch = todo[i:i + cfg.batch_size]
        items = [{"problem": t.problem, "cot": render_path(t, n.id), "key": f"{t.problem_id}#{n.id}",
                  "tree": t.problem_id, "node": n.id} for t in batch for n in t.terminals(Verdict.CORRECT)]
        results = selfeval_batch(policy, items, votes=cfg.votes, temperature=cfg.selfeval_temperature,
                                 max_tokens=cfg.selfeval_max_tokens, seed=cfg.seed)
        recs = {t.problem_id: {} for t in batch}
        for it, v in zip(items, results):
            recs[it["tree"]][str(it["node"])] = v
        append_jsonl(path, [{"problem_id": pid, "votes": v} for pid, v in recs.items()])
        done.update(recs)
    return done


def _key(trace) -> str:
    return f"{trace.problem_id}#{trace.meta.get('trace_index', 0)}"


def _process(traces, tree_of, cots_path: Path, cfg: CloneConfig, checker: AnswerChecker, policy: Policy | None,
             phrases, patterns, count,
             progress: bool) -> None:
    """Render, rewrite, self-evaluate and re-check every trace not yet in ``cots.jsonl``; append per batch."""
    done = done_ids(cots_path, key="key")
    todo = [t for t in traces if _key(t) not in done]
    bar = None
    if progress and todo:
        from ..progress import Progress

        bar = Progress(transient=False)
        bar.start()
        task = bar.add_task("clone", total=len(todo))
    try:
        for i in range(0, len(todo), cfg.batch_size):
            batch = todo[i:i + cfg.batch_size]
            append_jsonl(cots_path, _process_batch(batch, tree_of, cfg, checker, policy, phrases, patterns, count))
            if bar:
                bar.advance(task, len(batch))
    finally:
        if bar:
            bar.stop()


def _process_batch(batch, tree_of, cfg, checker, policy, phrases, patterns, count) -> list[dict]:
    recs: list[CotRecord] = []
    for tr in batch:
        tree = tree_of[tr.problem_id]
        reflect = cfg.mode == "astro"
        cot = render_trace(tr, tree, phrases, use_phrases=cfg.phrases, reflect=reflect, seed=cfg.seed,
                           patterns=patterns, q_threshold=cfg.q_threshold, q_min_visits=cfg.q_min_visits)
        sig = trace_signature(tr, tree, reflect=reflect, use_phrases=cfg.phrases)
        recs.append(CotRecord(key=_key(tr), problem_id=tr.problem_id, trace_index=tr.meta.get("trace_index", 0),
                              mode=cfg.mode, n_backtracks=tr.meta.get("n_backtracks", 0), template=cot,
                              roundtrip=sig.matches(cot, patterns), cot=cot, votes=list(tr.meta.get("votes", []))))
    items = [{"problem": tree_of[r.problem_id].problem, "answer": gold_of(tree_of[r.problem_id]),
              "cot": r.cot, "n_backtracks": r.n_backtracks, "key": r.key} for r in recs]
    if cfg.rewrite:
        for r, it, res in zip(recs, items, rewrite_batch(policy, checker, items, temperature=cfg.rewrite_temperature,
                                                         max_tokens=cfg.rewrite_max_tokens, seed=cfg.seed,
                                                         patterns=patterns)):
            r.cot = it["cot"] = res.text
            r.rewritten, r.rewrite_reason = res.accepted, res.reason
    checks = checker.check_batch([(gold_of(tree_of[r.problem_id]), r.cot) for r in recs])
    for r, chk in zip(recs, checks):
        r.final_answer, r.verdict = chk.answer, chk.verdict
        r.length = count(r.cot)
        if r.kept and chk.verdict is not Verdict.CORRECT:  # every exported CoT must re-check CORRECT
            r.kept, r.drop = False, "recheck"
        elif r.kept and cfg.max_tokens is not None and r.length > cfg.max_tokens:
            r.kept, r.drop = False, "too_long"
    return [r.to_json() for r in recs]


def _mix(sft: list[dict], trees: int) -> dict[str, Any]:
    """The SFT mix (ASTRO §3.3: per problem one k = 0 and three k >= 1 solutions)."""
    per: dict[str, list[int]] = {}
    for r in sft:
        per.setdefault(r["problem_id"], [0, 0])[int(r["n_backtracks"]) > 0] += 1
    k0, k1 = sum(v[0] for v in per.values()), sum(v[1] for v in per.values())
    return {"k0": k0, "k_ge_1": k1, "problems": len(per), "trees": trees,
            "k0_per_problem": round(k0 / len(per), 3) if per else None,
            "k_ge_1_per_problem": round(k1 / len(per), 3) if per else None,
            "problems_with": dict(Counter(f"{a}+{b}" for a, b in per.values()))}


def _export(out: Path, cfg: CloneConfig, trees, traces, tree_of, info, lin: LinearizeStats, count,
            unit: str, votes: dict[str, dict[str, list[str]]]) -> dict[str, Any]:
    keys = {_key(t) for t in traces}
    cots = out / "cots.jsonl"
    recs = {r.key: r for r in map(CotRecord.from_json, read_jsonl(cots) if cots.exists() else []) if r.key in keys}
    kept = [recs[_key(t)] for t in traces if _key(t) in recs and recs[_key(t)].kept]
    sft = [export.sft_row(problem_from_tree(tree_of[r.problem_id]), r) for r in kept]
    solved = {t.problem_id for t in traces}
    rl = [export.rl_row(t.problem_id, problem_from_tree(t), t.answer, t.problem_id in solved) for t in trees]
    all_recs = list(recs.values())
    rewritten = [r for r in all_recs if r.rewrite_reason is not None]
    judged = [v for tv in votes.values() for v in tv.values()]
    stats: dict[str, Any] = {
        "trees": len(trees) + info["malformed"] + info["duplicate_ids"], "valid_trees": len(trees),
        "malformed": info["malformed"], "duplicate_ids": info["duplicate_ids"],
        "no_correct": lin.no_correct, "no_approved": lin.no_approved, "no_wrong": lin.no_wrong, "short": lin.short,
        "duplicates": lin.duplicates, "traces": len(traces),
        "roundtrip_ok": sum(r.roundtrip for r in all_recs),
        "rewrite_attempted": len(rewritten), "rewrite_accepted": sum(r.rewritten for r in rewritten),
        "rewrite_reasons": dict(Counter(r.rewrite_reason.split(" (")[0] for r in rewritten if not r.rewritten)),
        "selfeval_judged": len(judged), "selfeval_kept": sum(v.count("yes") >= cfg.required_votes for v in judged),
        "votes": dict(Counter(x for v in judged for x in v)),
        "recheck_dropped": sum(r.drop == "recheck" for r in all_recs),
        "too_long": sum(r.drop == "too_long" for r in all_recs),
        "examples": len(sft), "rl_prompts": len(rl),
        "backtrack_distribution": {str(k): v for k, v in export.backtrack_distribution(sft).items()},
        "mix": _mix(sft, len(trees)),
        "length_unit": unit,
    }
    stats["roundtrip_rate"] = round(stats["roundtrip_ok"] / len(all_recs), 4) if all_recs else None
    stats["messages"] = _messages(stats, info)
    lengths = [r.length for r in kept]
    stats["lengths"] = export._dist(lengths)
    if sft:  # no example: no empty dataset files for a later stage to train on (the CLI exits 1)
        export.write_outputs(out, sft, rl, export.dataset_card(stats, lengths, unit, dataclasses.asdict(cfg)))
    write_json(out / "stats.json", stats)
    return stats


def _messages(stats: dict[str, Any], info: dict[str, Any]) -> list[str]:
    msgs = list(info["messages"][:MAX_MESSAGES])
    if len(info["messages"]) > MAX_MESSAGES:
        msgs.append(f"... and {len(info['messages']) - MAX_MESSAGES} more problems with the trees file")
    if stats["no_correct"]:
        msgs.append(f"{stats['no_correct']} tree(s) have no correct terminal (the search found no correct "
                    f"solution): no trace from them; they stay in rl.jsonl")
    if stats["no_approved"]:
        msgs.append(f"{stats['no_approved']} tree(s) have no correct terminal that passed self-evaluation: no "
                    f"trace from them")
    if stats["no_wrong"]:
        msgs.append(f"{stats['no_wrong']} tree(s) have no wrong terminal with an answer: only k = 0 traces "
                    f"from them")
    if stats["short"]:
        msgs.append(f"{stats['short']} trace(s) have fewer backtracks than sampled (not enough distinct wrong "
                    f"answers in the tree)")
    if stats["recheck_dropped"]:
        msgs.append(f"{stats['recheck_dropped']} CoT(s) dropped: the final answer did not re-check CORRECT")
    if stats["rewrite_attempted"] and stats["rewrite_accepted"] < stats["rewrite_attempted"]:
        msgs.append(f"rewrite rejected for {stats['rewrite_attempted'] - stats['rewrite_accepted']} of "
                    f"{stats['rewrite_attempted']} CoTs ({stats['rewrite_reasons']}); kept the template")
    if stats["selfeval_judged"] and stats["selfeval_kept"] < stats["selfeval_judged"]:
        msgs.append(f"self-evaluation rejected {stats['selfeval_judged'] - stats['selfeval_kept']} of "
                    f"{stats['selfeval_judged']} correct terminals (votes: {stats['votes']})")
    if stats["examples"] == 0:
        msgs.append("no example was exported")
    return msgs
