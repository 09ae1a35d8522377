"""`astro viz tree`: an interactive viewer of one MCTS search tree, as ONE self-contained HTML file.

The page is an outline of the tree (children ordered by visits) with expand/collapse, each node showing its
visits N, Q = value/visits and prior P; terminals are coloured by verdict (green correct, red wrong, orange
unparseable). Clicking a node shows its step text, its statistics and the full path of steps from the
problem. Toolbar: expand to a depth, collapse all, jump to correct terminals, search step text.

Large trees stay usable because the page renders lazily: a node's children become DOM elements only when it
is first opened, at most 100 at a time ("show more"), and only the top levels are open at first. Written by
hand (about 200 lines of JS in ``viz/assets``) because it must work offline from one file, and the tree
widgets of d3/vis.js would have to be vendored and are built for node-link drawings, which become
unreadable at thousands of nodes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..io import DataError, read_jsonl, write_text_atomic
from ..tasks import task_fields
from ..types import SearchTree
from .page import asset, esc, json_island, page


def load_tree(path: str | Path, problem_id: str | None = None) -> SearchTree:
    """The tree of ``problem_id`` from a trees.jsonl (the first tree when ``problem_id`` is None)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such trees file (`astro search` writes trees.jsonl)")
    ids = []
    for rec in read_jsonl(path, tolerate_torn_tail=True):
        pid = str(rec.get("problem_id"))
        if problem_id is None or pid == str(problem_id):
            try:
                return SearchTree.from_json(rec)
            except (KeyError, TypeError) as exc:
                raise DataError(f"{path}: tree {pid!r} is not a SearchTree record ({exc})") from None
        ids.append(pid)
    shown = ", ".join(ids[:10]) + (" ..." if len(ids) > 10 else "")
    raise DataError(f"{path}: no tree with problem_id {problem_id!r}; the file has {len(ids)} trees: {shown}")


def tree_payload(tree: SearchTree) -> dict[str, Any]:
    """The compact JSON the page script reads (short keys: the data of a 10k-node tree stays a few MB)."""
    nodes = [{"i": n.id, "p": n.parent, "d": n.depth, "s": n.step, "pr": n.prior, "n": n.visits,
              "w": n.value_sum, "ev": n.evals, "t": n.terminal, "a": n.answer, "v": n.verdict,
              "lp": n.logprob_sum, "tk": n.step_tokens, "src": n.source, "fr": n.finish_reason}
             for n in tree.nodes]
    for k, n in enumerate(tree.nodes):
        if n.id != k:
            raise DataError(f"tree {tree.problem_id}: node at position {k} has id {n.id}; ids must be 0..N-1")
    return {"problem_id": tree.problem_id, "problem": tree.problem, "answer": tree.answer, "nodes": nodes}


def _stat_line(tree: SearchTree) -> str:
    terms = [n for n in tree.nodes if n.terminal]
    counts = {v: sum(n.verdict == v for n in terms) for v in ("correct", "wrong", "unparseable")}
    parts = [f"{len(tree.nodes)} nodes", f"depth ≤ {max((n.depth for n in tree.nodes), default=0)}",
             f"{len(terms)} terminals ({counts['correct']} correct, {counts['wrong']} wrong, "
             f"{counts['unparseable']} unparseable)", f"root visits {tree.nodes[0].visits if tree.nodes else 0}"]
    for key in ("generated_tokens", "backend_calls", "wall_seconds", "rollouts"):
        if key in tree.stats:
            parts.append(f"{key.replace('_', ' ')} {tree.stats[key]}")
    if tree.config_hash:
        parts.append(f"config {tree.config_hash[:10]}")
    return " · ".join(parts)


def _goal(tree: SearchTree) -> str:
    """What the terminals were judged against: the gold answer (math), or the puzzle of another task, whose
    verifier gave the recorded verdicts (a countdown answer is an expression, not a value equal to the gold)."""
    fields = task_fields(tree)
    if not fields:
        return f"gold answer: <b>{esc(tree.answer)}</b>"
    return (f"{esc(fields['task'])}: numbers <b>{esc(', '.join(map(str, fields['numbers'])))}</b>, target "
            f"<b>{esc(fields['target'])}</b> (verdicts by the {esc(fields['task'])} verifier)")


def render_tree_html(tree: SearchTree, *, open_depth: int | None = None) -> str:
    """The viewer page for ``tree``. ``open_depth``: levels open at first (default 3, 2 past 300 nodes)."""
    if not tree.nodes:
        raise DataError(f"tree {tree.problem_id}: has no nodes")
    depth = open_depth if open_depth is not None else (3 if len(tree.nodes) <= 300 else 2)
    body = f"""<header>
<h1>Search tree · problem {esc(tree.problem_id)}</h1>
<div class="problem">{esc(tree.problem)}</div>
<div class="meta">{_goal(tree)} · {esc(_stat_line(tree))}</div>
</header>
<div class="toolbar">
<button id="btn-collapse" type="button">Collapse all</button>
<label>depth <input id="depth" type="number" min="1" value="{depth + 1}" style="width:4em"></label>
<button id="btn-depth" type="button">Expand to depth</button>
<button id="btn-correct" type="button">Show correct terminals</button>
<input id="search" type="search" placeholder="search step text, Enter = next" size="28">
<span id="search-count" class="hint"></span>
<span class="legend"><span><i class="dot correct"></i> correct</span><span><i class="dot wrong"></i> wrong</span>
<span><i class="dot unparseable"></i> unparseable</span><span><i class="dot"></i> inner node</span>
<span class="hint">N visits · Q value/visits · P prior · click a node for its text and path · arrow keys move</span></span>
</div>
<main><div id="tree" data-depth="{depth}"></div><div id="details"></div></main>
<script type="application/json" id="tree-data">{json_island(tree_payload(tree))}</script>"""
    return page(f"Search tree {tree.problem_id}", body, css=asset("tree_view.css"), js=asset("tree_view.js"))


def write_tree_html(trees_path: str | Path, problem_id: str | None, out: str | Path, *,
                    open_depth: int | None = None) -> Path:
    tree = load_tree(trees_path, problem_id)
    out = Path(out)
    write_text_atomic(out, render_tree_html(tree, open_depth=open_depth))
    return out
