"""How deep do search trees go, and where do the exported traces backtrack to? (issue 11 item 6)

Reads a search output directory (``astro search --out``) and, optionally, the ``traces.jsonl`` that
``astro clone`` wrote from it, and prints:
  - iterations per tree and stop reasons;
  - depth of the nodes the search EXPANDED (the selected leaves: 0 = root) and the deepest node created by
    expansion per tree;
  - per tree: a correct terminal; a correct and a wrong terminal (with an answer) sharing a non-root prefix,
    i.e. a node below the root where procedure cloning can branch (expanded and grafted terminals);
  - in the traces: backtracks, and the share that return to a non-root node (goal >= 50 %).

Usage: python bench/search_depth.py RUN_DIR [--traces CLONE_DIR/traces.jsonl] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter

from astro_reasoner.io import read_jsonl
from astro_reasoner.search import load_trees
from astro_reasoner.search.mcts import answer_key
from astro_reasoner.types import SearchTree


def _shared(a: list[int], b: list[int]) -> int:
    k = 0
    while k < len(a) and k < len(b) and a[k] == b[k]:
        k += 1
    return k


def pair_depth(tree: SearchTree) -> int:
    """Deepest common prefix (in steps) of a correct terminal and a wrong terminal with an answer; -1 if the
    tree lacks one of them, 0 if they only share the root."""
    correct = [tree.path(n.id) for n in tree.nodes if n.terminal and n.verdict == "correct"]
    wrong = [tree.path(n.id) for n in tree.nodes
             if n.terminal and n.verdict == "wrong" and answer_key(n.answer)]
    if not correct or not wrong:
        return -1
    return max(_shared(c, w) for c in correct for w in wrong)


def tree_metrics(trees: list[SearchTree]) -> dict:
    n = len(trees)
    pairs = [pair_depth(t) for t in trees]
    return {
        "problems": n,
        "with_correct": sum(any(x.terminal and x.verdict == "correct" for x in t.nodes) for t in trees),
        "with_correct_and_wrong": sum(p >= 0 for p in pairs),
        "with_pair_sharing_nonroot_prefix": sum(p >= 1 for p in pairs),
        "distinct_wrong_answers_per_problem": round(statistics.fmean(
            len({answer_key(x.answer) for x in t.nodes if x.terminal and x.verdict == "wrong"
                 and answer_key(x.answer)}) for t in trees), 2) if n else 0.0,
    }


def depth_report(trees: list[SearchTree]) -> dict:
    iters = [t.stats.get("iterations", 0) for t in trees]
    expanded_at = Counter()  # depth of every node that was expanded (has children made by expansion)
    created_max = []
    for t in trees:
        for node in t.nodes:
            if node.source == "expand" and any(t.nodes[c].source == "expand" for c in node.children):
                expanded_at[node.depth] += 1
        created_max.append(max(x.depth for x in t.nodes if x.source == "expand"))
    below_root = sum(v for d, v in expanded_at.items() if d > 0)
    return {
        "trees": len(trees),
        "iterations_per_tree": round(statistics.fmean(iters), 2) if iters else 0.0,
        "iterations_hist": dict(sorted(Counter(iters).items())),
        "stop_reasons": dict(Counter(t.stats.get("stop_reason", "?") for t in trees)),
        "expanded_node_depths": dict(sorted(expanded_at.items())),
        "share_of_expansions_below_root": round(below_root / sum(expanded_at.values()), 3) if expanded_at else 0.0,
        "trees_with_an_expansion_below_root": sum(
            any(x.depth > 0 and x.source == "expand" and any(t.nodes[c].source == "expand" for c in x.children)
                for x in t.nodes) for t in trees),
        "deepest_expanded_child_per_tree": round(statistics.fmean(created_max), 2) if created_max else 0.0,
        "generated_tokens_per_tree": round(statistics.fmean(t.stats.get("generated_tokens", 0) for t in trees), 1)
        if trees else 0.0,
    }


def backtrack_report(traces_path: str, trees: list[SearchTree]) -> dict:
    by_id = {t.problem_id: t for t in trees}
    total = nonroot = traces = 0
    depths: Counter = Counter()
    for rec in read_jsonl(traces_path):
        traces += 1
        tree = by_id[rec["problem_id"]]
        for kind, node in (m if isinstance(m, list) else (m["kind"], m["node"]) for m in rec["moves"]):
            if kind == "backtrack":
                total += 1
                nonroot += node != 0
                depths[tree.nodes[int(node)].depth] += 1
    return {"traces": traces, "backtracks": total, "backtracks_to_non_root": nonroot,
            "share_non_root": round(nonroot / total, 3) if total else None,
            "backtrack_target_depths": dict(sorted(depths.items()))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--traces", help="traces.jsonl written by `astro clone` from RUN_DIR")
    ap.add_argument("--json", help="also write the report here")
    args = ap.parse_args()
    trees = load_trees(args.run_dir)
    report = {"depth": depth_report(trees), "terminals": tree_metrics(trees)}
    if args.traces:
        report["backtracks"] = backtrack_report(args.traces, trees)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
