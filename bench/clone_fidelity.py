"""Acceptance figures of procedure cloning on real search trees (issue 11): run after `astro clone`.

    python bench/clone_fidelity.py --trees SEARCH_DIR --clone CLONE_DIR

Prints, over the exported CoTs: how many write a step twice (by tree node, and by identical step text),
how many end with check -> confirmation -> final answer, reflect-and-continue checks per CoT among the CoTs
whose written path holds a high-Q intermediate node, and the k = 0 / k >= 1 mix from stats.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from astro_reasoner.behaviour import analyze_behaviour, load_phrases
from astro_reasoner.clone.render import high_q
from astro_reasoner.clone.run import read_trees
from astro_reasoner.io import read_jsonl


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trees", required=True)
    ap.add_argument("--clone", required=True)
    args = ap.parse_args()
    out = Path(args.clone)
    cfg = json.loads((out / "clone_config.json").read_text())["config"]
    stats = json.loads((out / "stats.json").read_text())
    trees = {t.problem_id: t for t in read_trees(args.trees)[0]}
    traces = {f"{t['problem_id']}#{t['meta']['trace_index']}": t for t in read_jsonl(out / "traces.jsonl")}
    ph = load_phrases(cfg.get("phrases_file"))
    finals = tuple(p.split("{answer}")[0] for p in ph.final_answer)
    n = twice_node = twice_text = ends_ok = 0
    continues, continues_all = [], []
    for rec in read_jsonl(out / "cots.jsonl"):
        if not rec["kept"]:
            continue
        n += 1
        tr, tree = traces[rec["key"]], trees[rec["problem_id"]]
        steps = [nid for kind, nid in tr["moves"] if kind == "step"]
        twice_node += len(steps) != len(set(steps))
        b = analyze_behaviour(rec["cot"])
        twice_text += len(b.steps) != len(set(b.steps))
        pars = rec["cot"].split("\n\n")
        check = pars[-2] if len(pars) >= 3 else ""
        ends_ok += (any(check.startswith(q) for q in ph.reflection) and any(c in check for c in ph.confirm)
                    and pars[-1].startswith(finals) and "\\boxed{" in pars[-1]
                    and b.events[-1].kind == "self_check")
        mid = b.self_checks - 1  # the final check is not a reflect-and-continue
        continues_all.append(mid)
        if any(high_q(tree, nid, cfg["q_threshold"], cfg["q_min_visits"]) for nid in steps[:-1]):
            continues.append(mid)
    print(f"exported CoTs: {n}")
    print(f"CoTs writing a tree node twice: {twice_node}; with two identical step texts: {twice_text}")
    print(f"CoTs ending with check -> confirmation -> final answer: {ends_ok}/{n}")
    print(f"CoTs with a high-Q intermediate node on their path: {len(continues)}; reflect-and-continue per such "
          f"CoT: mean {statistics.fmean(continues) if continues else float('nan'):.2f}, min "
          f"{min(continues) if continues else '-'}; over all CoTs: mean "
          f"{statistics.fmean(continues_all) if continues_all else float('nan'):.2f}")
    print(f"SFT mix: {json.dumps(stats['mix'])}")
    print(f"backtracks per example: {json.dumps(stats['backtrack_distribution'])}; round trip "
          f"{stats['roundtrip_rate']}")


if __name__ == "__main__":
    main()
