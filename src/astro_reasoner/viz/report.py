"""`astro report RUN_DIR -o report.html`: one self-contained page about a run.

It shows whatever the run directory holds (searched recursively, so an eval directory, a pipeline run with
several eval directories, or a search output all work):
- every eval directory (``summary.json``): the metric table, pass@1/maj@k bars, behaviour by outcome;
- every analysis output (``correlation.json``, written by the pipeline's analysis stage per arm or by
  ``astro analyze correlation``): its backtracks-vs-accuracy and length-vs-accuracy correlations, as
  computed there. The report never computes a correlation itself: which runs belong together (one arm's
  SFT -> RL checkpoints, not base + Direct + ASTRO pooled) is the analysis's decision, and one number
  per heading keeps the report and the results table in agreement;
- every RL ``metrics.jsonl``: the training curves;
- one CoT graph (an eval sample that backtracks, preferring a correct one) and one interactive search tree
  (the smallest tree of the first ``trees.jsonl`` with both correct and wrong terminals), embedded in an
  iframe so its script and styles stay its own.
Plots are PNGs embedded as base64; nothing is loaded from the network.
"""

from __future__ import annotations

import base64
import tempfile
import time
from pathlib import Path
from typing import Any

from ..evaluate.run import fmt_num as _num
from ..evaluate.run import is_eval_dir
from ..evaluate.run import fmt_pct as _pct
from ..io import DataError, read_json, read_jsonl, write_text_atomic
from ..types import SearchTree
from .page import esc, page

SKIP_DIRS = (".stale-",)  # stage outputs moved aside by the pipeline runner are not part of the run


def _files(run_dir: Path, name: str) -> list[Path]:
    return sorted(p for p in run_dir.rglob(name) if not any(s in str(p) for s in SKIP_DIRS))


def discover(run_dir: str | Path) -> dict[str, list[Path]]:
    """What a run directory holds: eval directories, trees files and RL metrics files."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run directory")
    found = {"evals": [p.parent for p in _files(run_dir, "summary.json") if is_eval_dir(p.parent)],
             "trees": _files(run_dir, "trees.jsonl"), "metrics": _files(run_dir, "metrics.jsonl"),
             "correlations": _files(run_dir, "correlation.json")}
    if not any(found.values()):
        raise DataError(f"{run_dir}: nothing to report (no summary.json, trees.jsonl or metrics.jsonl here or "
                        "below); run `astro eval --out DIR` or `astro pipeline` first")
    return found


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def _table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{esc(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def metrics_table(runs: list[tuple[str, dict[str, Any]]]) -> str:
    """One row per (run, dataset) and per run overall: pass@1 (95 % CI), maj@k, pass@k, behaviour."""
    rows = []
    for label, s in runs:
        k = s.get("k", "k")
        for ds, m in [*s["datasets"].items(), ("overall", s["overall"])]:
            ci = m.get("pass@1_ci95")
            b = (m.get("behaviour") or {}).get("all") or {}
            rows.append([esc(label), f"<b>{esc(ds)}</b>" if ds == "overall" else esc(ds), str(m["problems"]),
                         str(m["samples"]),
                         _pct(m["pass@1"]) + (f" <small>({_pct(ci[0])}–{_pct(ci[1])})</small>" if ci else ""),
                         f"{_pct(m.get(f'maj@{k}'))} <small>@{k}</small>", f"{_pct(m.get(f'pass@{k}'))}",
                         _num(m.get("mean_tokens"), ".0f"), _num(b.get("reflections")), _num(b.get("backtracks")),
                         _pct(b.get("backtrack_share"))])
    return _table(["run", "dataset", "problems", "samples", "pass@1 % (95% CI)", "maj@k %", "pass@k %",
                   "tokens", "reflections", "backtracks", "≥1 backtrack %"], rows)


def behaviour_table(label: str, s: dict[str, Any]) -> str:
    rows = []
    for outcome in ("correct", "wrong"):
        b = s["overall"]["behaviour"][outcome]
        rows.append([esc(label), outcome, str(b["outputs"]), _num(b["tokens"], ".0f"), _num(b["steps"]),
                     _num(b["reflections"]), _num(b["backtracks"]), _pct(b["backtrack_share"])])
    return _table(["run", "outcome", "outputs", "tokens", "steps", "reflections", "backtracks",
                   "≥1 backtrack %"], rows)


def pick_sample(eval_dirs: list[Path]) -> dict[str, Any] | None:
    """A sample worth drawing: correct and backtracking, else backtracking, else the first one."""
    best, rank = None, -1
    for d in eval_dirs:
        path = d / "samples.jsonl"
        if not path.exists():
            continue
        for rec in read_jsonl(path, tolerate_torn_tail=True):
            r = 2 * bool(rec.get("backtracks")) + (rec.get("verdict") == "correct")
            if r > rank:
                best, rank = rec, r
            if rank == 3:
                return best
    return best


def pick_tree(trees: list[Path], scan: int = 200) -> SearchTree | None:
    """The smallest of the first ``scan`` trees with both correct and wrong terminals (else the first)."""
    first, best = None, None
    for path in trees:
        for i, rec in enumerate(read_jsonl(path, tolerate_torn_tail=True)):
            if i >= scan:
                break
            tree = SearchTree.from_json(rec)
            first = first or tree
            verdicts = {n.verdict for n in tree.nodes if n.terminal}
            if {"correct", "wrong"} <= verdicts and (best is None or len(tree.nodes) < len(best.nodes)):
                best = tree
        if best is not None:
            break
    return best or first


def _cot_section(eval_dirs: list[Path]) -> str:
    from .cot_graph import build_cot_graph, render_svg

    rec = pick_sample(eval_dirs)
    if rec is None:
        return ""
    g = build_cot_graph(str(rec.get("text", "")), final_verdict=rec.get("verdict"))
    meta = (f"{rec.get('dataset', '')} · problem {rec.get('problem_id')} · sample {rec.get('sample', 0)} · "
            f"verdict {rec.get('verdict')} · {len(g.nodes) - 1} steps · {len(g.backtracks)} backtracks · "
            f"{rec.get('tokens', '?')} tokens")
    return (f"<h2>One output as a graph</h2><p class='meta'>{esc(meta)} — steps are boxes, solid arrows are "
            "transitions, dashed red arrows are backtracks; green/red = correct/wrong answer. Hover a box for "
            f"its full text (<code>astro viz cot</code> draws any sample).</p>"
            f"<div class='graph'>{render_svg(g, str(rec.get('problem', '')))}</div>")


def _tree_section(trees: list[Path]) -> str:
    from .tree_view import render_tree_html

    tree = pick_tree(trees)
    if tree is None:
        return ""
    viewer = render_tree_html(tree)
    return (f"<h2>One search tree</h2><p class='meta'>problem {esc(tree.problem_id)}, {len(tree.nodes)} nodes, "
            f"from {esc(str(trees[0]))}. Click a node to read its step and path (<code>astro viz tree</code> opens "
            f"any tree full-page).</p><iframe class='tree' title='search tree' srcdoc=\"{esc(viewer)}\"></iframe>")


CSS = """body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:20px auto;max-width:1200px;
color:#1d2329;padding:0 16px}h1{font-size:20px}h2{font-size:16px;margin-top:28px;border-bottom:1px solid #d5d9de}
table{border-collapse:collapse;margin:8px 0;font-size:13px}th,td{border:1px solid #d5d9de;padding:3px 8px;
text-align:right}th{background:#eef1f4}td:first-child,td:nth-child(2){text-align:left}.meta{color:#56616b}
img{max-width:100%;margin:6px 12px 6px 0;border:1px solid #eef1f4}.graph{overflow:auto;border:1px solid #d5d9de;
background:#fafbfc;max-height:720px}iframe.tree{width:100%;height:720px;border:1px solid #d5d9de}
.plots{display:flex;flex-wrap:wrap}"""


def correlation_section(run_dir: Path, files: list[Path]) -> str:
    """The analysis's correlations as it wrote them (one table and its plots per ``correlation.json``)."""
    head = ("<h2>Behaviour vs accuracy across runs</h2><p class='meta'>Pearson r over (run, dataset) points, "
            "as computed by the analysis (one arm's SFT → RL checkpoints per table); ASTRO §4.3 reports r > 0.8 "
            "for backtracks across RL checkpoints.</p>")
    if not files:
        return head + ("<p class='meta'>No analysis output here: the pipeline's analysis stage writes one per arm; "
                       "for other runs use <code>astro analyze correlation RUN_DIR... --out DIR</code>.</p>")
    parts = [head]
    for f in files:
        res = read_json(f)
        rows = [[esc(x), esc(ds), str(st.get("n")), _num(st.get("r"), ".3f"), _num(st.get("p"), ".3g")]
                for x, per in res.get("correlations", {}).items() for ds, st in per.items()]
        label = f.parent.relative_to(run_dir) if f.parent != run_dir else f.parent.name
        # The plots sit beside correlation.json (the paths it records may be from before a move).
        pngs = [f.parent / Path(p).name for p in res.get("plots", {}).values()]
        parts.append(f"<h3>{esc(label)} <small class='meta'>{len(res.get('runs', []))} runs</small></h3>"
                     + _table(["x", "dataset", "points", "r", "p"], rows) + "<div class='plots'>"
                     + "".join(_img(p, f"correlation plot {p.stem}") for p in pngs if p.exists()) + "</div>")
    return "".join(parts)


def build_report(run_dir: str | Path, out: str | Path) -> Path:
    """Write the report page for ``run_dir`` to ``out`` and return its path."""
    from ..evaluate.analyze import training_report
    from ..evaluate.plots import accuracy_bars, behaviour_bars

    run_dir = Path(run_dir)
    found = discover(run_dir)
    parts = [f"<h1>ASTRO run report</h1><p class='meta'>{esc(run_dir.resolve())} · generated "
             f"{time.strftime('%Y-%m-%d %H:%M')} · {len(found['evals'])} eval runs, {len(found['trees'])} trees "
             f"files, {len(found['metrics'])} RL metrics files</p>"]
    with tempfile.TemporaryDirectory(prefix="astro-report-") as tmp:
        tmpd = Path(tmp)
        runs = [(str(d.relative_to(run_dir)) if d != run_dir else d.name, read_json(d / "summary.json"))
                for d in found["evals"]]
        if runs:
            parts.append("<h2>Evaluation</h2><p class='meta'>pass@1 is averaged over the n samples per problem "
                         "with a 95% bootstrap interval over problems; maj@k groups answers by checker "
                         "equivalence (Countdown: every solving expression is one vote, a wrong one votes for "
                         "its expression); behaviour counts are means per output.</p>" + metrics_table(runs))
            for i, (label, s) in enumerate(runs):
                imgs = [_img(accuracy_bars(s, tmpd / f"acc{i}.png"), f"accuracy of {label}"),
                        _img(behaviour_bars(s, tmpd / f"beh{i}.png"), f"behaviour of {label}")]
                parts.append(f"<h3>{esc(label)} <small class='meta'>{esc(s.get('model', ''))}</small></h3>"
                             + behaviour_table(label, s) + f"<div class='plots'>{''.join(imgs)}</div>")
        if found["correlations"] or len(runs) >= 2:
            parts.append(correlation_section(run_dir, found["correlations"]))
        for j, m in enumerate(found["metrics"][:4]):
            try:
                res = training_report(m, tmpd / f"train{j}.png")
            except DataError as exc:
                parts.append(f"<p class='meta'>{esc(m)}: {esc(exc)}</p>")
                continue
            parts.append(f"<h2>RL training · {esc(m.parent.relative_to(run_dir) if m.parent != run_dir else m.name)}"
                         f"</h2>{_img(Path(res['plot']), 'training curves')}")
        parts.append(_cot_section(found["evals"]))
        if found["trees"]:
            parts.append(_tree_section(found["trees"]))
    out = Path(out)
    write_text_atomic(out, page(f"ASTRO report · {run_dir.name}", "\n".join(parts), css=CSS))
    return out
