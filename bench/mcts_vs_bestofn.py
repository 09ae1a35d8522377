"""MCTS against best-of-N at the same generated tokens per problem (issue 11 item 6).

For every tree of a finished search run, best-of-N draws whole solutions for the same problem from the same
model, prompt (worked examples included), temperature, top-p and token cap as the search's rollouts (a
best-of-N sample is a search rollout started at the root), in waves of ``--n`` samples per problem, and counts
generated tokens in sample order until the tree's own ``generated_tokens`` would be exceeded (the sample that
would cross the budget is dropped, so best-of-N never gets more generated tokens than the search had).
Unlike ``astro best-of-n`` (clone/bestofn.py, which stops at the first correct sample to build an SFT set),
this spends the whole budget: the second figure needs the wrong samples too.

Samples are merged into a prefix tree of steps (identical leading steps shared, as the search grafts its
rollouts) and both sides are scored with the same function (bench/search_depth.py):
  - problems with a correct terminal;
  - problems with a correct AND a wrong terminal (with an answer) that share a non-root prefix: a step below
    the root where procedure cloning can write a wrong attempt, go back, and continue to the right answer.
Prompt tokens are not matched (the search's prompts carry partial solutions, so it reads more).

``--expect N`` follows a search that is still running (polls its trees.jsonl until N trees are done).
Output: ``OUT/bestofn.jsonl`` (one record per problem, appended as finished: re-run to resume) and a table.
Usage: python bench/mcts_vs_bestofn.py --trees RUN_DIR --out OUT [--model smollm2-135m] [--threads 1]
       [--n 8] [--seed 0] [--json report.json]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from search_depth import tree_metrics  # noqa: E402

from astro_reasoner.io import append_jsonl, done_ids, read_json, read_jsonl, stable_seed  # noqa: E402
from astro_reasoner.prompts import PromptBuilder, PromptConfig  # noqa: E402
from astro_reasoner.search import SearchConfig, load_trees  # noqa: E402
from astro_reasoner.search import mcts  # noqa: E402
from astro_reasoner.types import GenParams  # noqa: E402


def sample_tree(problem_id: str, problem: str, answer: str, samples: list[dict]):
    """A prefix tree of the kept samples (grafted as the search grafts rollouts), for tree_metrics."""
    tree = mcts.new_tree(problem_id, problem, answer)
    for s in samples:
        mcts.graft_rollout(tree, 0, s["text"], s["verdict"], s["answer"], s["finish_reason"])
    return tree


def run(args) -> dict:
    from astro_reasoner.backends import make_backend
    from astro_reasoner.checking import Checker

    settings = os.path.join(args.trees, "search_config.json")
    while args.expect and not os.path.exists(settings):  # --expect: the search may not have started yet
        time.sleep(5)
    cfg = SearchConfig(**read_json(settings))
    os.makedirs(args.out, exist_ok=True)
    shard = tuple(int(x) for x in args.shard.split("/")) if args.shard else None
    rec_path = os.path.join(args.out, "bestofn.jsonl" if shard is None else
                            f"bestofn.shard-{shard[0]}-of-{shard[1]}.jsonl")
    policy = None if args.report_only else make_backend("hf", args.model, threads=args.threads,
                                                        batch_size=cfg.batch_size)
    builder = PromptBuilder(policy, PromptConfig(few_shot=cfg.few_shot))
    state: dict[str, dict] = {}
    by_id: dict = {}
    t0 = time.perf_counter()
    with Checker(workers=1) as checker:
        while not args.report_only:
            # --follow: pick up trees as the search writes them (the two runs share the machine's cores)
            trees = load_trees(args.trees) if os.path.exists(os.path.join(args.trees, "trees.jsonl")) else []
            by_id = {t.problem_id: t for t in trees}
            done = done_ids(rec_path) if os.path.exists(rec_path) else set()
            order = sorted(p["id"] for p in read_jsonl(args.problems)) if args.problems else None
            for t in trees:
                if shard and order and order.index(t.problem_id) % shard[1] != shard[0]:
                    continue
                if t.problem_id not in done and t.problem_id not in state:
                    state[t.problem_id] = {"problem_id": t.problem_id, "budget": int(t.stats["generated_tokens"]),
                                           "tokens": 0, "samples": [], "dropped": 0, "waves": 0}
            if not state:
                if len(trees) >= args.expect and (not shard or len(done) >= len(
                        [t for t in trees if order.index(t.problem_id) % shard[1] == shard[0]])):
                    break
                time.sleep(15)
                continue
            ids = list(state)
            per_call = max(1, cfg.batch_size // args.n)
            for start in range(0, len(ids), per_call):
                chunk = ids[start:start + per_call]
                seeds = tuple(stable_seed(args.seed, "bestofn", pid, state[pid]["waves"]) for pid in chunk)
                params = GenParams(n=args.n, max_tokens=cfg.max_rollout_tokens, stop=(),
                                   temperature=cfg.temperature, top_p=cfg.top_p,
                                   seed=stable_seed(args.seed, "bestofn", *seeds), seeds=seeds)
                outs = policy.generate([builder.continuation(by_id[pid].problem) for pid in chunk], params)
                items = []
                for pid, comps in zip(chunk, outs):
                    st = state[pid]
                    st["waves"] += 1
                    for c in comps:
                        if st["tokens"] + c.tokens > st["budget"]:
                            st["dropped"] += 1
                            st["full"] = True
                            break
                        st["tokens"] += c.tokens
                        items.append((pid, c))
                texts = [mcts.cut_at_answer(c.text) for _, c in items]
                results = checker.check_batch([(by_id[pid].answer, tx) for (pid, _), tx in zip(items, texts)])
                for (pid, c), tx, res in zip(items, texts, results):
                    verdict = res.verdict.value
                    if not (mcts.has_boxed(tx) or c.finish_reason in ("eos", "stop")):
                        verdict = "unparseable"  # cut off before an answer: the search's rule for rollouts
                    state[pid]["samples"].append({"text": tx, "tokens": c.tokens, "verdict": verdict,
                                                  "answer": res.answer, "finish_reason": c.finish_reason})
                for pid in chunk:
                    st = state[pid]
                    if st.get("full") or st["tokens"] >= st["budget"]:
                        append_jsonl(rec_path, [{k: v for k, v in st.items() if k != "full"}])
                        del state[pid]
                print(f"[{time.perf_counter() - t0:.0f}s] {len(state)} problems in progress, {len(trees)} trees",
                      file=sys.stderr, flush=True)
    if args.report_only:
        trees = load_trees(args.trees)
    recs = {r["problem_id"]: r for f in sorted(glob.glob(os.path.join(args.out, "bestofn*.jsonl")))
            for r in read_jsonl(f)}
    # --report-only on a partial run: compare on the problems best-of-N has finished (both sides)
    trees = sorted((t for t in trees if t.problem_id in recs), key=lambda t: t.problem_id)
    by_id = {t.problem_id: t for t in trees}
    if policy is not None:
        policy.close()
    bon_trees = [sample_tree(pid, by_id[pid].problem, by_id[pid].answer, recs[pid]["samples"]) for pid in by_id]
    mcts_m, bon_m = tree_metrics(trees), tree_metrics(bon_trees)
    mcts_m["generated_tokens_per_problem"] = round(sum(t.stats["generated_tokens"] for t in trees) / len(trees), 1)
    bon_m["generated_tokens_per_problem"] = round(sum(recs[p]["tokens"] for p in by_id) / len(by_id), 1)
    bon_m["samples_per_problem"] = round(sum(len(recs[p]["samples"]) for p in by_id) / len(by_id), 1)
    bon_m["correct_samples"] = sum(s["verdict"] == "correct" for p in by_id for s in recs[p]["samples"])
    bon_m["samples"] = sum(len(recs[p]["samples"]) for p in by_id)
    return {"mcts": mcts_m, "best_of_n": bon_m, "trees": args.trees, "n_per_wave": args.n, "seed": args.seed,
            "max_tokens": cfg.max_rollout_tokens, "temperature": cfg.temperature, "top_p": cfg.top_p,
            "few_shot": cfg.few_shot}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trees", required=True, help="search output directory (trees.jsonl + summary.json)")
    ap.add_argument("--out", required=True, help="directory for bestofn.jsonl (re-run to resume)")
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n", type=int, default=8, help="samples per problem per wave")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--expect", type=int, default=0, help="follow the search until it has written this many "
                    "trees (run both at once); default: only the trees already there")
    ap.add_argument("--shard", help="i/n: only problems i, i+n, ... of --problems (sorted ids); run n processes "
                    "(1 thread each) to use n cores; the report reads every shard's file")
    ap.add_argument("--problems", help="the search's problem file (needed with --shard)")
    ap.add_argument("--report-only", action="store_true", help="no sampling: the table for the problems that "
                    "OUT/bestofn.jsonl already holds")
    ap.add_argument("--json", help="also write the report here")
    args = ap.parse_args()
    report = run(args)
    m, b = report["mcts"], report["best_of_n"]
    n = m["problems"]
    rows = [("generated tokens / problem", m["generated_tokens_per_problem"], b["generated_tokens_per_problem"]),
            ("problems with a correct terminal", f"{m['with_correct']}/{n}", f"{b['with_correct']}/{n}"),
            ("... with a correct and a wrong one", f"{m['with_correct_and_wrong']}/{n}",
             f"{b['with_correct_and_wrong']}/{n}"),
            ("... sharing a non-root prefix", f"{m['with_pair_sharing_nonroot_prefix']}/{n}",
             f"{b['with_pair_sharing_nonroot_prefix']}/{n}"),
            ("distinct wrong answers / problem", m["distinct_wrong_answers_per_problem"],
             b["distinct_wrong_answers_per_problem"])]
    print(f"{'':40s} {'MCTS':>10s} {'best-of-N':>10s}")
    for name, x, y in rows:
        print(f"{name:40s} {str(x):>10s} {str(y):>10s}")
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2)


if __name__ == "__main__":
    main()
