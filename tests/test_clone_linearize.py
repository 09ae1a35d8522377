"""Linearize + render on constructed trees with known answers: each ablation flag changes the output as
documented (backtrack count fixed/distribution, traces per tree, merge point, --no-phrases, direct mode)."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from clone_helpers import build_tree

from astro_reasoner.behaviour import ROOT, analyze_behaviour, load_phrases
from astro_reasoner.clone.config import CloneConfig, parse_backtracks
from astro_reasoner.clone.linearize import linearize_tree, pick_correct
from astro_reasoner.clone.render import render_trace, trace_signature, unbox
from astro_reasoner.config import ConfigError
from astro_reasoner.types import Move


def known_tree(problem_id: str = "p0"):
    """Gold 10. Correct path 1-2-3. Wrong terminals branch off at depth 2 (4: 12), depth 1 (5: 15),
    depth 0 (7: 6, 9: 6 again, 8: 4); 10 is unparseable."""
    return build_tree([
        (0, "Alice has 2 + 3 = 5 apples.", None),  # 1
        (1, "She doubles them: 5 * 2 = 10.", None),  # 2
        (2, "So the answer is \\boxed{10}.", "10"),  # 3 correct
        (2, "She adds 2 more: 10 + 2 = 12, so the answer is \\boxed{12}.", "12"),  # 4 wrong, branch depth 2
        (1, "She triples them: 5 * 3 = 15, so \\boxed{15}.", "15"),  # 5 wrong, branch depth 1
        (0, "Alice has 2 * 3 = 6 apples.", None),  # 6
        (6, "So the answer is \\boxed{6}.", "6"),  # 7 wrong, branch depth 0
        (0, "Alice eats 3 of 7 apples: 7 - 3 = 4, so \\boxed{4}.", "4"),  # 8 wrong, branch depth 0
        (6, "Thus we get \\boxed{6}.", "6"),  # 9 wrong, same answer as 7
        (1, "Hmm", ""),  # 10 unparseable
    ], gold="10", problem_id=problem_id)


def cfg(**kw) -> CloneConfig:
    c = CloneConfig(**kw)
    c.validate()
    return c


def only_trace(tree, **kw):
    traces, _ = linearize_tree(tree, cfg(**kw))
    assert len(traces) == 1
    return traces[0]


def backtracks(trace) -> list[int]:
    return [m.node for m in trace.moves if m.kind == "backtrack"]


def test_correct_terminal_is_highest_q_then_fewer_steps():
    tree = known_tree()
    assert pick_correct(tree).id == 3
    tree = build_tree([(0, "a", None), (1, "b \\boxed{1}", "1"), (0, "c \\boxed{1}", "1")], gold="1")
    assert pick_correct(tree).id == 3  # same Q, fewer steps
    tree.nodes[2].value_sum, tree.nodes[2].visits = 3.0, 3  # Q equal again (1.0); tie stays on depth
    assert pick_correct(tree).id == 3
    tree.nodes[3].value_sum = 0.5  # Q 0.5 < 1.0: the deeper one wins now
    assert pick_correct(tree).id == 2


@pytest.mark.parametrize("k", [0, 1, 2, 3, 4, 9])
def test_fixed_backtrack_count(k):
    tr = only_trace(known_tree(), max_backtracks=k)
    n = min(k, 4)  # 4 distinct wrong answers (12, 15, 6, 4); 9 and 7 share "6"; 10 is unparseable
    assert len(backtracks(tr)) == n == tr.meta["n_backtracks"]
    assert tr.moves[-1] == Move("step", 3)  # always ends at the correct terminal
    wrong = tr.meta["wrong_nodes"]
    assert len({known_tree().nodes[w].answer for w in wrong}) == n and 10 not in wrong
    # backtracks only right after a terminal (ASTRO §2.2)
    tree = known_tree()
    for i, m in enumerate(tr.moves):
        if m.kind == "backtrack":
            assert tree.nodes[tr.moves[i - 1].node].terminal


def test_three_backtracks_cover_three_branch_depths_in_increasing_order():
    tr = only_trace(known_tree(), max_backtracks=3)
    wrong = tr.meta["wrong_nodes"]
    assert wrong[1:] == [5, 4] and wrong[0] in (7, 8, 9)  # depths 0, 1, 2
    assert backtracks(tr) == [0, 1, 2]  # LCA with the next path: root, node 1, node 2


def test_backtrack_distribution_is_sampled_per_trace():
    c = cfg(max_backtracks={0: 0.5, 2: 0.5})
    counts = Counter(linearize_tree(known_tree(f"p{i}"), c)[0][0].meta["n_backtracks"] for i in range(200))
    assert set(counts) == {0, 2} and 70 < counts[0] < 130
    assert parse_backtracks("0:0.2,1:0.4,2:0.4") == {0: 0.2, 1: 0.4, 2: 0.4}
    assert parse_backtracks({0: 1, 1: 3}) == {0: 0.25, 1: 0.75}
    with pytest.raises(ConfigError, match="space after the colon"):
        parse_backtracks({"0:1": None})
    with pytest.raises(ConfigError):
        cfg(max_backtracks=-1)


def test_traces_per_tree_gives_distinct_traces():
    one, _ = linearize_tree(known_tree(), cfg(max_backtracks=1, traces_per_tree=1))
    many, st = linearize_tree(known_tree(), cfg(max_backtracks=1, traces_per_tree=6))
    assert len(one) == 1 and 2 <= len(many) <= 4  # only 4 distinct one-backtrack traces exist
    assert len({t.moves for t in many}) == len(many) and st.duplicates == 6 - len(many)
    assert {t.meta["wrong_nodes"][0] for t in many} <= {4, 5, 7, 8, 9}


def test_merge_point_root_and_random():
    lca = only_trace(known_tree(), max_backtracks=3)
    root = only_trace(known_tree(), max_backtracks=3, merge="root")
    assert backtracks(root) == [0, 0, 0]
    assert len(root.moves) > len(lca.moves)  # the shared steps are written again after each restart
    seen = set()
    for i in range(30):
        tr = only_trace(known_tree(f"r{i}"), max_backtracks=3, merge="random")
        bts = backtracks(tr)
        assert bts[0] == 0 and bts[1] in (0, 1) and bts[2] in (0, 1, 2)  # a common ancestor, root..LCA
        seen.add(tuple(bts))
    assert len(seen) > 1


def test_render_astro_trace():
    tree = known_tree()
    tr = only_trace(tree, max_backtracks=3)
    text = render_trace(tr, tree, load_phrases())
    paragraphs = text.split("\n\n")
    assert text.count("\\boxed{") == 1 and paragraphs[-1] == "So the answer is \\boxed{10}."
    for m in tr.moves:  # steps verbatim (wrong answers lose only the \boxed wrapper)
        if m.kind == "step":
            step = tree.nodes[m.node].step
            assert (step if m == tr.moves[-1] else unbox(step)) in text
    ph = load_phrases()
    assert sum(p in ph.reflection for p in paragraphs) == 3
    assert sum(p in ph.backtrack_root for p in paragraphs) == 1  # back to the root: start over
    named = [p for p in paragraphs if '"' in p]
    assert '"Alice has 2 + 3 = 5 apples"' in named[0] and '"She doubles them: 5 * 2 = 10"' in named[1]
    assert paragraphs[-2] in ph.self_check  # a short self-check right before the final answer
    assert trace_signature(tr, tree).matches(text)
    b = analyze_behaviour(text)
    assert b.counts() == {"steps": 7, "reflections": 3, "backtracks": 3} and b.self_checks == 1
    assert [bt.target for bt in b.backtracks] == [ROOT, 2, 4]  # step indices of nodes 1 and 2


def test_phrases_are_sampled_by_seed():
    tree = known_tree()
    tr = only_trace(tree, max_backtracks=3)
    texts = {render_trace(tr, tree, load_phrases(), seed=s) for s in range(6)}
    assert len(texts) > 1
    assert render_trace(tr, tree, load_phrases(), seed=3) == render_trace(tr, tree, load_phrases(), seed=3)


def test_no_phrases_renders_bare_markers():
    tree = known_tree()
    tr = only_trace(tree, max_backtracks=3, phrases=False)
    text = render_trace(tr, tree, load_phrases(), use_phrases=False)
    assert "[backtrack to start]" in text and text.count('[backtrack to "') == 2
    assert not re.search(r"wait|mistake|double-check", text, re.I)
    b = analyze_behaviour(text)
    assert b.counts() == {"steps": 7, "reflections": 0, "backtracks": 3} and b.self_checks == 0
    assert trace_signature(tr, tree).matches(text)


def test_direct_mode_is_the_correct_path_only():
    tree = known_tree()
    traces, st = linearize_tree(tree, cfg(mode="direct", max_backtracks=3, traces_per_tree=4))
    assert len(traces) == 1 and traces[0].moves == (Move("step", 1), Move("step", 2), Move("step", 3))
    text = render_trace(traces[0], tree, load_phrases(), self_check=False)
    assert text == "Alice has 2 + 3 = 5 apples.\n\nShe doubles them: 5 * 2 = 10.\n\nSo the answer is \\boxed{10}."
    assert analyze_behaviour(text).counts() == {"steps": 3, "reflections": 0, "backtracks": 0}


def test_trees_without_correct_or_wrong_terminals():
    no_correct = build_tree([(0, "x = 3, \\boxed{3}", "3")], gold="10")
    traces, st = linearize_tree(no_correct, cfg())
    assert traces == [] and st.no_correct == 1
    no_wrong = build_tree([(0, "a", None), (1, "\\boxed{10}", "10")], gold="10")
    traces, st = linearize_tree(no_wrong, cfg(max_backtracks=2))
    assert len(traces) == 1 and st.no_wrong == 1 and st.short == 1 and backtracks(traces[0]) == []


def test_final_step_without_box_gets_the_answer_appended_and_wrong_boxes_are_removed():
    tree = build_tree([(0, "x = 5 + 5 = 10", "10"), (0, "x = \\boxed{\\frac{1}{2}}", "\\frac{1}{2}")], gold="10")
    tr = only_trace(tree, max_backtracks=1)
    text = render_trace(tr, tree, load_phrases())
    assert text.startswith("x = \\frac{1}{2}\n\n")
    assert text.endswith("x = 5 + 5 = 10 The answer is \\boxed{10}.") and text.count("\\boxed") == 1
    assert unbox("a \\boxed{\\frac{1}{2}} b \\boxed{3") == "a \\frac{1}{2} b 3"


def test_config_validation_messages():
    with pytest.raises(ConfigError, match="merge"):
        cfg(merge="middle")
    with pytest.raises(ConfigError, match="mode"):
        cfg(mode="sos")
    with pytest.raises(ConfigError, match="min_votes"):
        cfg(votes=3, min_votes=4)
    assert cfg(votes=5).required_votes == 5 and cfg(votes=5, min_votes=3).required_votes == 3
