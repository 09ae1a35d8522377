"""`astro viz cot`: one model output drawn as a directed graph of its steps (SVG, or HTML wrapping it).

The shared behaviour counter (``astro_reasoner.behaviour``) splits the output into steps, reflections and
backtracks and resolves each backtrack to the earlier step it returns to. Read back as a tree (ASTRO §2.2:
a backtrack returns to an ancestor, and the next step continues from there), that gives:

- nodes: the problem (root) and every step, numbered in writing order;
- transition edges (solid grey): from the step a step continues from to that step;
- backtrack edges (dashed red): from the step where the output gave up (usually a wrong answer) back to the
  step it returned to, labelled with the backtrack's number and annotated with the reflection before it;
- colours: the final step by the output's verdict (green correct, red wrong, orange unparseable); steps
  abandoned by a backtrack in red (or by the checker's verdict on their answer, when a ``judge`` is given;
  for a task other than math, e.g. Countdown, the checker hands the step to the task's verifier, so a bare
  "\\boxed{22}" is wrong there even though it equals the target).

Layout and SVG are written by hand (a layered tree layout: depth = row, leaves in writing order, parents
centred over their children): graphviz would need a system binary, and a tree needs nothing more.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..io import DataError, read_jsonl, write_text_atomic
from .page import esc, page

COLORS = {"correct": ("#e8f5e9", "#2e7d32"), "wrong": ("#ffebee", "#c62828"),
          "unparseable": ("#fff3e0", "#ef6c00"), "abandoned": ("#ffebee", "#c62828"),
          "root": ("#eceff1", "#263238"), "": ("#ffffff", "#78909c")}
BOX_W, LINE_H, PAD, COL_GAP, ROW_GAP, WRAP = 250, 15, 8, 40, 56, 36
MAX_LINES = 4


@dataclass
class CotNode:
    id: int  # -1 = the problem (root); else the step index in writing order
    text: str
    parent: int | None = None  # the node this step continues from
    status: str = ""  # "", "root", "correct", "wrong", "unparseable", "abandoned"
    notes: list[tuple[str, str]] = field(default_factory=list)  # (kind, text): reflections/self-checks after it
    children: list[int] = field(default_factory=list)
    x: float = 0.0
    y: float = 0.0
    h: float = 0.0
    depth: int = 0


@dataclass
class CotGraph:
    nodes: dict[int, CotNode]
    transitions: list[tuple[int, int]]  # (from, to): the next step continues from `from`
    backtracks: list[tuple[int, int | None, str]]  # (from step, to step or -1 or None=unresolved, reflection)
    final: int | None = None
    rows: dict[int, tuple[float, float]] = field(default_factory=dict)  # depth -> (top, height), by _layout
    right: float = 0.0  # right edge of the boxes, by _layout


def build_cot_graph(text: str, *, final_verdict: str | None = None,
                    judge: Callable[[str], str | None] | None = None, behaviour=None) -> CotGraph:
    """The graph of ``text``. ``judge(step_text)`` -> verdict or None colours abandoned steps that hold an
    answer; ``behaviour`` may be passed if already computed (``analyze_behaviour(text)``)."""
    from ..behaviour import ROOT, analyze_behaviour

    b = behaviour if behaviour is not None else analyze_behaviour(text)
    nodes = {-1: CotNode(-1, "", status="root")}
    transitions: list[tuple[int, int]] = []
    backtracks: list[tuple[int, int | None, str]] = []
    cur, step, bt = -1, 0, 0  # cur: the node the next step continues from
    last_note = ""
    for ev in b.events:
        if ev.kind == "step":
            nodes[step] = CotNode(step, ev.text, parent=cur)
            nodes[cur].children.append(step)
            transitions.append((cur, step))
            cur, step, last_note = step, step + 1, ""
        elif ev.kind in ("reflection", "self_check"):
            nodes[cur if cur in nodes else -1].notes.append((ev.kind, ev.text))
            last_note = ev.text if ev.kind == "reflection" else last_note
        else:  # backtrack: the step before it is abandoned; continue from its target
            target = b.backtracks[bt].target
            bt += 1
            src = step - 1
            backtracks.append((src, target, last_note))
            if src >= 0 and nodes[src].status == "":
                verdict = judge(nodes[src].text) if judge else None
                nodes[src].status = verdict if verdict in ("correct", "wrong") else "abandoned"
            if target is not None:
                cur = -1 if target == ROOT else target
            last_note = ""
    final = step - 1 if step else None
    if final is not None and final_verdict:
        nodes[final].status = str(final_verdict)
    return CotGraph(nodes, transitions, backtracks, final)


def _layout(g: CotGraph) -> tuple[float, float]:
    """Place nodes: row = depth, leaves left to right in writing order, parents centred on children."""
    col = [0]

    def place(nid: int, depth: int) -> None:
        nd = g.nodes[nid]
        lines = min(MAX_LINES, len(_wrap(nd.text))) + 1
        nd.h = lines * LINE_H + 2 * PAD
        nd.y = depth
        for c in nd.children:
            place(c, depth + 1)
        if nd.children:
            xs = [g.nodes[c].x for c in nd.children]
            nd.x = (min(xs) + max(xs)) / 2
        else:
            nd.x = col[0]
            col[0] += 1

    place(-1, 0)
    depth_h: dict[int, float] = {}
    for nd in g.nodes.values():
        depth_h[int(nd.y)] = max(depth_h.get(int(nd.y), 0.0), nd.h)
    acc = 44.0  # room above the root for a backtrack that starts over
    for d in sorted(depth_h):
        g.rows[d], acc = (acc, depth_h[d]), acc + depth_h[d] + ROW_GAP
    for nd in g.nodes.values():
        nd.depth = int(nd.y)
        nd.y = g.rows[nd.depth][0]
        nd.x = 20 + nd.x * (BOX_W + COL_GAP)
    g.right = 20 + max(col[0], 1) * (BOX_W + COL_GAP) - COL_GAP
    return g.right + 40 + 12 * len(g.backtracks), acc


def _wrap(text: str) -> list[str]:
    return textwrap.wrap(" ".join(text.split()), WRAP) or [""]


def _box(nd: CotNode) -> str:
    fill, stroke = COLORS.get(nd.status, COLORS[""])
    head = "Problem" if nd.id < 0 else f"Step {nd.id + 1}"
    tag = {"correct": " · correct answer", "wrong": " · wrong answer", "unparseable": " · no answer",
           "abandoned": " · abandoned"}.get(nd.status, "")
    for kind in ("reflection", "self_check"):
        count = sum(k == kind for k, _ in nd.notes)
        if count:
            tag += f" · {count} {kind.replace('_', '-')}" + ("s" if count > 1 else "")
    body = _wrap(nd.text)
    if len(body) > MAX_LINES:
        body = body[:MAX_LINES - 1] + [body[MAX_LINES - 1][: WRAP - 1] + "…"]
    full = nd.text + "".join(f"\n\n[{k}] {n}" for k, n in nd.notes)
    lines = [f'<text x="{nd.x + PAD}" y="{nd.y + PAD + 11}" class="head" fill="{stroke}">{esc(head + tag)}</text>']
    for i, line in enumerate(body, start=1):
        lines.append(f'<text x="{nd.x + PAD}" y="{nd.y + PAD + 11 + i * LINE_H}">{esc(line)}</text>')
    width = 3 if nd.status in ("correct", "wrong", "unparseable") else 1.5
    return (f'<g class="node {nd.status}" data-step="{nd.id}"><title>{esc(full)}</title>'
            f'<rect x="{nd.x}" y="{nd.y}" width="{BOX_W}" height="{nd.h}" rx="6" fill="{fill}" stroke="{stroke}" '
            f'stroke-width="{width}"/>' + "".join(lines) + "</g>")


def _backtrack_path(g: CotGraph, k: int, src: CotNode, dst: CotNode, note: str) -> str:
    """An orthogonal route that never crosses a box: down from the abandoned step into the gap below its
    row, right to a lane of its own beside the graph, up to the gap above the target's row, into the target's
    top right corner (transitions enter top centre)."""
    top_s, h_s = g.rows[src.depth]
    below = top_s + h_s + 10 + 7 * (k % 4)
    above = g.rows[dst.depth][0] - 10 - 7 * (k % 4)
    lane = g.right + 20 + 12 * k
    x0, x1 = src.x + BOX_W - 24 - 6 * (k % 3), dst.x + BOX_W - 24 - 6 * (k % 3)
    d = f"M{x0},{src.y + src.h} V{below} H{lane} V{above} H{x1} V{dst.y - 2}"
    return (f'<path class="backtrack" data-from="{src.id}" data-to="{dst.id}" d="{d}" marker-end="url(#arrow-red)">'
            f'<title>{esc(note or "backtrack")}</title></path>'
            f'<text class="btlabel" x="{x0 + 4}" y="{below - 3}">↩ backtrack {k}</text>')


def render_svg(g: CotGraph, problem: str = "") -> str:
    """The graph as a standalone SVG document."""
    g.nodes[-1].text = problem or g.nodes[-1].text or "(problem)"
    width, height = _layout(g)
    parts = []
    for a, b in g.transitions:
        na, nb = g.nodes[a], g.nodes[b]
        x1, y1, x2, y2 = na.x + BOX_W / 2, na.y + na.h, nb.x + BOX_W / 2, nb.y
        my = (y1 + y2) / 2
        parts.append(f'<path class="edge" data-from="{a}" data-to="{b}" d="M{x1},{y1} C{x1},{my} {x2},{my} '
                     f'{x2},{y2 - 2}" marker-end="url(#arrow)"/>')
    for k, (src, dst, note) in enumerate(g.backtracks, start=1):
        if dst is None or src not in g.nodes or dst not in g.nodes:
            continue
        parts.append(_backtrack_path(g, k, g.nodes[src], g.nodes[dst], note))
    boxes = [_box(nd) for nd in g.nodes.values()]
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">'
            '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
            'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#78909c"/></marker>'
            '<marker id="arrow-red" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
            'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#c62828"/></marker>'
            '<style>.edge{fill:none;stroke:#78909c;stroke-width:1.5}'
            '.backtrack{fill:none;stroke:#c62828;stroke-width:2;stroke-dasharray:6 4}'
            '.btlabel{fill:#c62828;font-weight:bold}.head{font-weight:bold;font-size:11px}</style></defs>'
            + "".join(parts) + "".join(boxes) + "</svg>\n")


def render_html(g: CotGraph, *, title: str, problem: str = "", meta: str = "") -> str:
    """A self-contained page: header, legend, the SVG, then every step and reflection in full."""
    rows = []
    for nid, nd in sorted(g.nodes.items()):
        if nid < 0:
            continue
        rows.append(f'<li class="{nd.status}" value="{nid + 1}">{esc(nd.text)}'
                    + "".join(f'<div class="note">↺ {esc(n)}</div>' for _, n in nd.notes) + "</li>")
    bt = "".join(f"<li>from step {s + 1} back to "
                 f"{'the problem' if d == -1 else ('(unresolved)' if d is None else f'step {d + 1}')}</li>"
                 for s, d, _ in g.backtracks)
    body = (f"<h1>{esc(title)}</h1><p class='problem'>{esc(problem)}</p><p class='meta'>{esc(meta)}</p>"
            "<p class='legend'><span style='color:#2e7d32'>■ correct answer</span> "
            "<span style='color:#c62828'>■ wrong / abandoned</span> <span style='color:#ef6c00'>■ no answer</span> "
            "<span style='color:#c62828'>⇢ dashed: backtrack</span> <span style='color:#78909c'>→ transition</span>"
            " · hover a box for its full text</p>"
            f"<div class='graph'>{render_svg(g, problem)}</div>"
            f"<h2>Backtracks ({len(g.backtracks)})</h2><ol>{bt}</ol><h2>Steps</h2><ol class='steps'>{''.join(rows)}</ol>")
    css = ("body{font:14px/1.45 system-ui,sans-serif;margin:16px;color:#1d2329}h1{font-size:17px}"
           ".problem{white-space:pre-wrap}.meta,.legend{color:#56616b;font-size:13px}"
           ".graph{overflow:auto;border:1px solid #d5d9de;background:#fafbfc}"
           ".steps li{white-space:pre-wrap;margin-bottom:6px}.steps li.correct{color:#2e7d32}"
           ".steps li.wrong,.steps li.abandoned{color:#c62828}.note{color:#6a1b9a;font-style:italic}")
    return page(title, body, css=css)


def _text_of(rec: dict[str, Any]) -> str:
    for key in ("text", "cot", "output", "completion"):
        val = rec.get(key)
        if isinstance(val, str):
            return val
        if isinstance(val, list):  # TRL conversational completion: [{"role": "assistant", "content": ...}]
            return "".join(str(m.get("content") or "") for m in val if isinstance(m, dict))
    raise DataError(f"record {rec.get('problem_id')!r} has no text field (text, cot, output or completion)")


def pick_record(path: str | Path, problem_id: str, sample: int | None = None) -> dict[str, Any]:
    """The record of ``problem_id`` (and ``sample``; default: its first sample that backtracks, else the
    first) from a samples JSONL."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such samples file")
    recs = [r for r in read_jsonl(path, tolerate_torn_tail=True) if str(r.get("problem_id")) == str(problem_id)]
    if sample is not None:
        recs = [r for r in recs if int(r.get("sample", 0)) == sample]
    if not recs:
        raise DataError(f"{path}: no record with problem_id {problem_id!r}"
                        + (f" and sample {sample}" if sample is not None else ""))
    if sample is None:
        with_bt = [r for r in recs if (r.get("backtracks") or 0) > 0]
        return (with_bt or recs)[0]
    return recs[0]


def write_cot(samples: str | Path, problem_id: str, out: str | Path, *, sample: int | None = None,
              checker=None) -> Path:
    """Draw one output of ``samples`` to ``out`` (.svg, or .html with the full text below the graph)."""
    from ..tasks import gold_of, task_fields

    rec = pick_record(samples, problem_id, sample)
    gold = rec.get("gold", rec.get("answer_gold"))
    fields = task_fields(rec)  # {} for math; a countdown sample carries its numbers and target
    if fields and gold is not None:
        gold = gold_of({**fields, "answer": gold})  # the checker hands it to the task's verifier
    judge = None
    if checker is not None and gold is not None:
        def judge(step: str) -> str | None:
            res = checker.check(gold, step)
            return None if res.verdict.value == "unparseable" else res.verdict.value
    text = _text_of(rec)
    answer, verdict = rec.get("answer"), rec.get("verdict")
    if "verdict" not in rec and checker is not None and gold is not None:  # e.g. GRPO's completions.jsonl
        res = checker.check(gold, text)
        answer, verdict = res.answer, res.verdict.value
    if answer is None:  # the record keeps no extracted answer (or the checker found none): what the text ends with
        from ..answers import extract_answer

        answer = extract_answer(text)
    g = build_cot_graph(text, final_verdict=verdict, judge=judge)
    out = Path(out)
    problem = str(rec.get("problem", ""))
    if out.suffix.lower() == ".svg":
        write_text_atomic(out, render_svg(g, problem))
    elif out.suffix.lower() in (".html", ".htm"):
        goal = (f"numbers {', '.join(map(str, fields['numbers']))} · target {fields['target']}" if fields
                else f"gold {gold!r}")
        shown = repr(answer) if answer is not None else "(none found)"
        meta = (f"sample {rec.get('sample', 0)} · verdict {verdict or '?'} · answer {shown}"
                f" · {goal} · {len(g.nodes) - 1} steps · {len(g.backtracks)} backtracks")
        write_text_atomic(out, render_html(g, title=f"CoT graph · {problem_id}", problem=problem, meta=meta))
    else:
        raise DataError(f"{out}: unknown output type; use a .svg or .html file name")
    return out
