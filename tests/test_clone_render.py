"""Rendering as in ASTRO §2.3: a neutral check, then doubt + backtrack after a wrong terminal, "correct so
far" + continue at high-Q nodes, and check -> confirmation -> final answer right after the final step."""

from __future__ import annotations

import re

from clone_helpers import build_tree
from test_clone_linearize import known_tree

from astro_reasoner.behaviour import ROOT, analyze_behaviour, load_patterns, load_phrases
from astro_reasoner.clone.linearize import build_moves
from astro_reasoner.clone.render import render_path, render_trace, trace_signature, unbox
from astro_reasoner.types import Move, Trace

PH = load_phrases()


def trace_of(tree, targets) -> Trace:
    import random

    moves = build_moves(tree, [tree.nodes[t] for t in targets], "deepest", random.Random(0))
    return Trace(tree.problem_id, tuple(moves), meta={"trace_index": 0})


def split_check(paragraph: str) -> tuple[str, str] | None:
    """(question, verdict) if the paragraph is a bank reflection question followed by a bank verdict."""
    for q in PH.reflection:
        if paragraph.startswith(q + " "):
            return q, paragraph[len(q) + 1:]
    return None


def test_reflection_questions_are_neutral():
    """No reflection question states a verdict: the counter's doubt and confirmation cues never fire on it."""
    P = load_patterns()
    for q in PH.reflection:
        assert not any(rx.search(q) for k in ("mistake", "confirm") for rx in P.cues[k]), q
        assert "?" in q
    assert PH.reflection[0] == "But wait, are we solving the problem correctly so far? Hmm…"  # ASTRO §2.3
    assert PH.doubt[0] == "I'm not sure if we're solving the problem correctly so far."
    assert PH.confirm[0] == "Our solution seems to be correct so far."
    assert all(PH.sources[k] for k in ("reflection", "doubt", "confirm", "backtrack", "backtrack_root",
                                       "final_answer"))


def test_astro_trace_wrong_terminals_high_q_nodes_and_the_final_check():
    tree = known_tree()
    tree.nodes[1].visits, tree.nodes[1].value_sum = 4, 3.0  # Q 0.75 >= 0.5: reflect and continue after it
    tree.nodes[6].visits, tree.nodes[6].value_sum = 4, -2.0  # Q -0.5: no check after it
    tr = trace_of(tree, [7, 5, 4, 3])
    text = render_trace(tr, tree, PH)
    pars = text.split("\n\n")
    # (c) the final step, THEN the check and a confirmation, then the final answer (one box, at the end)
    assert pars[-3] == "So the answer is 10."
    q, verdict = split_check(pars[-2])
    assert verdict in PH.confirm
    assert pars[-1] in {p.replace("{answer}", "10") for p in PH.final_answer} and text.count("\\boxed{") == 1
    # (a) after each wrong terminal: question + doubt, then a backtrack naming the step
    for wrong in ("So the answer is 6.", "She triples them: 5 * 3 = 15, so 15.",
                  "She adds 2 more: 10 + 2 = 12, so the answer is 12."):
        i = pars.index(wrong)
        assert split_check(pars[i + 1])[1] in PH.doubt
        assert pars[i + 2] in PH.backtrack_root or pars[i + 2].startswith(("Let's go back", "Let me go back",
                                                                              "Let me revisit"))
    assert '"Alice has 2 + 3 = 5 apples"' in pars[pars.index("She triples them: 5 * 3 = 15, so 15.") + 2]
    # (b) after the high-Q node 1 ("Alice has 2 + 3 = 5 apples."): question + confirmation, then the next step
    i = pars.index("Alice has 2 + 3 = 5 apples.")
    assert split_check(pars[i + 1])[1] in PH.confirm and pars[i + 2] == "She triples them: 5 * 3 = 15, so 15."
    i = pars.index("Alice has 2 * 3 = 6 apples.")  # low Q: no check
    assert pars[i + 1] == "So the answer is 6."
    # the counter: 3 doubts + 2 confirmations are 5 reflections, 2 of them without a backtrack
    b = analyze_behaviour(text)
    assert b.counts() == {"steps": 7, "reflections": 5, "backtracks": 3} and b.self_checks == 2 and b.doubts == 3
    assert [bt.target for bt in b.backtracks] == [ROOT, 2, 4]
    assert trace_signature(tr, tree).matches(text)


def test_direct_solution_in_astro_data_checks_and_confirms():
    tree = known_tree()
    text = render_trace(trace_of(tree, [3]), tree, PH)
    b = analyze_behaviour(text)
    assert b.counts() == {"steps": 3, "reflections": 1, "backtracks": 0} and b.self_checks == 1
    assert text.endswith("\\boxed{10}.") and text.split("\n\n")[2] == "So the answer is 10."


def test_q_threshold_and_min_visits():
    tree = known_tree()
    tree.nodes[1].visits, tree.nodes[1].value_sum = 4, 2.0  # Q 0.5
    tr = trace_of(tree, [3])
    assert analyze_behaviour(render_trace(tr, tree, PH)).self_checks == 2  # node 1 and the final check
    assert analyze_behaviour(render_trace(tr, tree, PH, q_threshold=0.6)).self_checks == 1
    tree.nodes[1].visits, tree.nodes[1].value_sum = 1, 1.0  # Q 1 from a single visit
    assert analyze_behaviour(render_trace(tr, tree, PH)).self_checks == 1
    assert analyze_behaviour(render_trace(tr, tree, PH, q_min_visits=1)).self_checks == 2


def test_phrases_are_sampled_by_seed():
    tree = known_tree()
    tr = trace_of(tree, [7, 5, 4, 3])
    texts = {render_trace(tr, tree, PH, seed=s) for s in range(6)}
    assert len(texts) > 1
    assert render_trace(tr, tree, PH, seed=3) == render_trace(tr, tree, PH, seed=3)


def test_no_phrases_renders_bare_markers():
    tree = known_tree()
    tr = trace_of(tree, [7, 5, 4, 3])
    text = render_trace(tr, tree, PH, use_phrases=False)
    assert "[backtrack to start]" in text and text.count('[backtrack to "') == 2
    assert not re.search(r"wait|sure|correct so far", text, re.I) and text.endswith("So the answer is \\boxed{10}.")
    b = analyze_behaviour(text)
    assert b.counts() == {"steps": 7, "reflections": 0, "backtracks": 3}
    assert trace_signature(tr, tree, use_phrases=False).matches(text)


def test_direct_baseline_is_the_steps_only():
    tree = known_tree()
    text = render_trace(trace_of(tree, [3]), tree, PH, reflect=False)
    assert text == "Alice has 2 + 3 = 5 apples.\n\nShe doubles them: 5 * 2 = 10.\n\nSo the answer is \\boxed{10}."
    assert analyze_behaviour(text).counts() == {"steps": 3, "reflections": 0, "backtracks": 0}
    assert render_path(tree, 3) == text  # what self-evaluation judges


def test_final_step_without_box_and_wrong_boxes_are_removed():
    tree = build_tree([(0, "x = 5 + 5 = 10", "10"), (0, "x = \\boxed{\\frac{1}{2}}", "\\frac{1}{2}")], gold="10")
    tr = Trace("p0", (Move("step", 2), Move("backtrack", 0), Move("step", 1)), meta={"trace_index": 0})
    text = render_trace(tr, tree, PH)
    assert text.startswith("x = \\frac{1}{2}\n\n") and text.count("\\boxed") == 1
    assert text.endswith("\\boxed{10}.") and "x = 5 + 5 = 10\n\n" in text
    bare = render_trace(tr, tree, PH, use_phrases=False)
    assert bare.endswith("x = 5 + 5 = 10 The answer is \\boxed{10}.")
    assert unbox("a \\boxed{\\frac{1}{2}} b \\boxed{3") == "a \\frac{1}{2} b 3"
