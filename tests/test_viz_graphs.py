"""CoT graphs (backtrack edges land on the right steps), the tree viewer page, and the report page."""

from __future__ import annotations

import json
import re

import pytest
from eval_helpers import big_tree, small_tree

from astro_reasoner.behaviour import ROOT, load_phrases
from astro_reasoner.clone.render import render_trace, trace_signature
from astro_reasoner.io import DataError
from astro_reasoner.types import Move, Trace
from astro_reasoner.viz.cot_graph import build_cot_graph, render_html, render_svg, write_cot
from astro_reasoner.evaluate.analyze import correlation_report
from astro_reasoner.viz.report import build_report
from astro_reasoner.viz.tree_view import load_tree, render_tree_html, write_tree_html

# wrong branch 2-5-6 (answer 5), start over, 1-3 (answer 14, wrong), back to step "3 boxes...", 4 (correct)
MOVES = (Move("step", 2), Move("step", 5), Move("step", 6), Move("backtrack", 0), Move("step", 1),
         Move("step", 3), Move("backtrack", 1), Move("step", 4))


def _svg_edges(svg: str, cls: str) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in re.findall(rf'class="{cls}" data-from="(-?\d+)" data-to="(-?\d+)"', svg)]


@pytest.mark.parametrize("use_phrases", [True, False])
def test_rendered_astro_trace_backtracks_point_to_the_right_steps(use_phrases):
    tree = small_tree()
    trace = Trace(tree.problem_id, MOVES)
    text = render_trace(trace, tree, load_phrases(), use_phrases=use_phrases, seed=3)
    sig = trace_signature(trace, tree, use_phrases=use_phrases)  # what the renderer meant: step indices and backtrack targets
    g = build_cot_graph(text, final_verdict="correct")
    # expected from the trace itself: (step written just before the backtrack, target step index)
    expected, written = [], -1
    for kind, idx in sig.moves:
        if kind == "step":
            written += 1
        else:
            expected.append((written, idx))
    assert expected == [(2, ROOT), (4, 3)]
    assert [(s, d) for s, d, _ in g.backtracks] == expected
    # transitions form the tree the trace walked: 0-1-2 from the problem, then 3 from the problem, 4 and 5 from 3
    assert g.transitions == [(-1, 0), (0, 1), (1, 2), (-1, 3), (3, 4), (3, 5)]
    assert [g.nodes[i].text for i in range(6)] == list(sig.steps)
    assert g.nodes[5].status == "correct" and g.nodes[2].status == "abandoned" == g.nodes[4].status
    svg = render_svg(g, tree.problem)
    assert _svg_edges(svg, "backtrack") == expected
    assert _svg_edges(svg, "edge") == g.transitions
    assert 'stroke-dasharray' in svg and svg.count('class="node correct"') == 1


def test_judge_colours_abandoned_answers_and_phrase_text_by_hand():
    text = ("Let x be the apples: 3 * 4 = 12.\n\nHe eats 2, so 12 + 2 = 14. The answer is 14.\n\n"
            "But wait, are we solving the problem correctly so far? Hmm, I think I made a mistake.\n\n"
            "Let's go back to where we had \"Let x be the apples: 3 * 4 = 12\" and try a different approach.\n\n"
            "He eats 2, so 12 - 2 = 10. The answer is \\boxed{10}.")
    g = build_cot_graph(text, final_verdict="correct",
                        judge=lambda s: "wrong" if "14" in s else None)
    assert [(s, d) for s, d, _ in g.backtracks] == [(1, 0)]
    assert g.nodes[1].status == "wrong" and g.nodes[2].status == "correct"
    assert g.nodes[1].notes and g.nodes[1].notes[0][0] == "reflection"
    html = render_html(g, title="t", problem="p <script>", meta="m")
    assert "<script>" not in html and "p &lt;script&gt;" in html
    assert "from step 2 back to step 1" in html


def test_write_cot_from_samples_file(tmp_path):
    tree = small_tree()
    text = render_trace(Trace(tree.problem_id, MOVES), tree, load_phrases())
    recs = [{"dataset": "d", "problem_id": "p1", "sample": 0, "text": "Just 10. \\boxed{10}", "verdict": "correct",
             "backtracks": 0, "gold": "10"},
            {"dataset": "d", "problem_id": "p1", "sample": 1, "text": text, "verdict": "correct", "backtracks": 2,
             "gold": "10", "problem": tree.problem}]
    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    out = write_cot(path, "p1", tmp_path / "g.html")  # default: the sample that backtracks
    assert "2 backtracks" in out.read_text()
    # these records keep no extracted answer: the page shows the text's final answer, not "answer None"
    page = write_cot(path, "p1", tmp_path / "g0.html", sample=0).read_text()
    assert "answer &#x27;10&#x27;" in page or "answer '10'" in page
    assert "answer None" not in out.read_text() and "answer None" not in page
    svg = write_cot(path, "p1", tmp_path / "g.svg", sample=0).read_text()
    assert svg.startswith("<svg") and _svg_edges(svg, "backtrack") == []
    with pytest.raises(DataError, match="no record"):
        write_cot(path, "nope", tmp_path / "x.svg")
    with pytest.raises(DataError, match="unknown output type"):
        write_cot(path, "p1", tmp_path / "x.png")


def test_tree_page_is_self_contained_and_escapes_model_text(tmp_path):
    tree = small_tree()
    tree.nodes[2].step = "evil </script><script>alert(1)</script> & <b>"
    page = render_tree_html(tree)
    assert "alert(1)</script>" not in page and "\\u003c/script\\u003e" in page
    assert not re.search(r'(src|href)="(https?:)?//', page)  # no CDN or network reference
    data = json.loads(re.search(r'id="tree-data">(.*?)</script>', page, re.S).group(1))
    assert data["nodes"][2]["s"] == tree.nodes[2].step and len(data["nodes"]) == 7
    trees = tmp_path / "trees.jsonl"
    trees.write_text(json.dumps(small_tree().to_json()) + "\n" + json.dumps(big_tree(300).to_json()) + "\n")
    assert load_tree(trees, "big").problem_id == "big" and load_tree(trees).problem_id == "apples-1"
    with pytest.raises(DataError, match="2 trees: apples-1, big"):
        load_tree(trees, "zzz")
    out = write_tree_html(trees, "big", tmp_path / "t.html")
    assert 'data-depth="3"' in out.read_text()


def test_report_from_a_run_dir(tmp_path):
    run = tmp_path / "run"
    tree = small_tree()
    (run / "search").mkdir(parents=True)
    (run / "search" / "trees.jsonl").write_text(json.dumps(tree.to_json()) + "\n")
    (run / "search" / "summary.json").write_text('{"trees": 1}')  # search's own summary: not an eval
    text = render_trace(Trace(tree.problem_id, MOVES), tree, load_phrases())
    for i, acc in enumerate((0.25, 0.5)):
        d = run / f"eval-{i}"
        d.mkdir()
        beh = {"outputs": 2, "steps": 6.0, "reflections": 2.0, "backtracks": 1.0 + i, "tokens": 90.0,
               "backtrack_share": 1.0}
        m = {"problems": 1, "samples": 2, "pass@1": acc, "pass@1_ci95": [0.0, 1.0], "maj@2": acc, "pass@2": acc,
             "short": 0, "mean_tokens": 90.0 + i, "behaviour": {"all": beh, "correct": beh, "wrong": beh}}
        (d / "summary.json").write_text(json.dumps({"model": "m", "k": 2, "datasets": {"toy": m}, "overall": m}))
        (d / "samples.jsonl").write_text(json.dumps({"dataset": "toy", "problem_id": "apples-1", "sample": 0,
                                                     "text": text, "verdict": "correct", "backtracks": 2}) + "\n")
    (run / "rl").mkdir()
    (run / "rl" / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "reward_mean": s / 10,
                                                                   "backtracks_mean": s / 5}) + "\n"
                                                       for s in range(1, 6)))
    html = build_report(run, tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 * 2 + 1  # per-run bars, training: no analysis output yet
    assert "No analysis output here" in html and "<td>0.1" not in html  # the report computes no r itself
    # The analysis writes the correlation; the report shows exactly that (its r, its plots), per analysis dir.
    res = correlation_report([run / "eval-0", run / "eval-1"], run / "analysis" / "correlation-astro")
    assert res["correlations"]["backtracks"]["pooled"]["r"] == pytest.approx(1.0)
    html = build_report(run, tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 * 2 + 2 + 1  # per-run bars, correlations, training
    assert "Behaviour vs accuracy across runs" in html and 'class="backtrack"' in html
    assert "analysis/correlation-astro" in html and html.count("<td>1.000</td>") == 4  # 2 x-keys, toy + pooled
    assert "<iframe" in html and "srcdoc=" in html
    assert not re.search(r'(src|href)="(https?:)?//', html)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="nothing to report"):
        build_report(tmp_path / "empty", tmp_path / "r.html")


def test_cot_of_a_training_completion_gets_its_verdict_and_answer_from_the_checker(tmp_path):
    from astro_reasoner.checking import Checker

    path = tmp_path / "completions.jsonl"  # GRPO's log: completion text and reward, no answer or verdict
    path.write_text(json.dumps({"step": 1, "problem_id": "p1", "reward": -1.0, "gold": "10",
                                "completion": "5 + 4 = 9.\n\nThe answer is \\boxed{9}."}) + "\n")
    with Checker(workers=1) as checker:
        page = write_cot(path, "p1", tmp_path / "c.html", checker=checker).read_text()
    meta = re.sub(r"&#x27;|&#39;", "'", page)
    assert "verdict wrong · answer '9'" in meta and "answer None" not in meta
    page = write_cot(path, "p1", tmp_path / "c2.html").read_text()  # no checker: the text's answer, no verdict
    assert "verdict ? · answer '9'" in re.sub(r"&#x27;|&#39;", "'", page)
