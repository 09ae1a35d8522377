"""The pure tree operations of search/mcts.py on hand-built trees (no policy, no checker)."""

from __future__ import annotations

import math

import pytest

from astro_reasoner.config import ConfigError, build_config
from astro_reasoner.search import SearchConfig
from astro_reasoner.search import mcts
from astro_reasoner.types import Completion, Node


def comp(text, tokens=4, lp=-2.0, reason="stop"):
    return Completion(text=text, tokens=tokens, logprob_sum=lp, finish_reason=reason)


def constructed():
    """root(N=10) -> a (N=6, W=3, P=.5), b (N=3, W=-1, P=.3), c (N=0, P=.2), t (terminal, W=1, P=0)."""
    tree = mcts.new_tree("x", "q", "1")
    specs = [("a", 6, 3.0, 0.5, False), ("b", 3, -1.0, 0.3, False), ("c", 0, 0.0, 0.2, False),
             ("t", 1, 1.0, 0.0, True)]
    for step, n, w, p, term in specs:
        node = Node(id=len(tree.nodes), parent=0, depth=1, step=step, prior=p, visits=n, value_sum=w,
                    evals=n, terminal=term, verdict="correct" if term else None)
        tree.nodes.append(node)
        tree.nodes[0].children.append(node.id)
    tree.nodes[0].visits = 10
    return tree


def puct(q, p, n_parent, n_child, c):
    return q + c * p * math.sqrt(n_parent) / (1 + n_child)


@pytest.mark.parametrize("c_puct", [0.0, 0.5, 1.0, 3.0, 10.0])
def test_puct_choice_matches_formula(c_puct):
    tree = constructed()
    expected = {1: puct(0.5, 0.5, 10, 6, c_puct), 2: puct(-1 / 3, 0.3, 10, 3, c_puct),
                3: puct(0.0, 0.2, 10, 0, c_puct)}  # c: unvisited -> Q = middle of [-1, 1] = 0
    for cid, want in expected.items():
        assert mcts.puct_score(tree, 0, cid, c_puct, 0.0) == pytest.approx(want)
    best = max(expected, key=lambda c: (expected[c], -c))
    assert mcts.select_leaf(tree, c_puct, 0.0) == best  # terminal t (Q=1) is never chosen


def test_exploration_flips_choice_and_ties_go_to_lower_id():
    tree = constructed()
    assert mcts.select_leaf(tree, 0.0, 0.0) == 1  # greedy on Q: a
    assert mcts.select_leaf(tree, 10.0, 0.0) == 3  # exploration: the unvisited c
    tree.nodes[2].visits, tree.nodes[2].value_sum, tree.nodes[2].prior = 6, 3.0, 0.5  # b == a
    tree.nodes[3].terminal, tree.nodes[3].verdict = True, "wrong"
    assert mcts.select_leaf(tree, 1.0, 0.0) == 1


def test_virtual_loss_diverts_second_selection():
    tree = constructed()
    virtual: dict[int, int] = {}
    first = mcts.select_leaf(tree, 1.0, 0.0, virtual=virtual)
    mcts.add_virtual(tree, first, virtual)
    assert virtual == {first: 1, 0: 1}
    second = mcts.select_leaf(tree, 1.0, 0.0, virtual=virtual)
    assert first == 1 and second != first


def test_add_children_dedupes_normalises_priors_and_marks_terminals():
    tree = mcts.new_tree("x", "q", "1")
    samples = [comp("Step A.", 4, -2.0), comp("  Step A.\n", 4, -2.0), comp("Step B.", 2, -2.0),
               comp("So \\boxed{3}.", 3, -0.3, "stop"), comp("The end", 2, -1.0, "eos"), comp("   ")]
    exp = mcts.add_children(tree, 0, samples, max_depth=5)
    steps = [tree.nodes[c].step for c in exp.children]
    assert steps == ["Step A.", "Step B.", "So \\boxed{3}.", "The end"]
    w = [math.exp(-2 / 4), math.exp(-2 / 2), math.exp(-0.3 / 3), math.exp(-1 / 2)]
    priors = [tree.nodes[c].prior for c in exp.children]
    assert priors == pytest.approx([x / sum(w) for x in w])
    assert exp.to_check == exp.children[2:] and exp.to_simulate == exp.children[:2]
    assert all(tree.nodes[c].terminal for c in exp.to_check)


def test_depth_limit_is_a_terminal_without_answer():
    tree = mcts.new_tree("x", "q", "1")
    exp = mcts.add_children(tree, 0, [comp("Step 1.")], max_depth=1)
    node = tree.nodes[exp.children[0]]
    assert node.terminal and node.verdict == "unparseable" and node.finish_reason == "depth_limit"
    assert exp.to_simulate == [] and exp.to_check == []


def test_empty_expansion_is_a_dead_end_and_exhausts_tree():
    tree = mcts.new_tree("x", "q", "1")
    exp = mcts.add_children(tree, 0, [comp(""), comp("  \n")], max_depth=4)
    assert exp.children == [] and tree.stats["dead_ends"] == [0]
    assert mcts.select_leaf(tree, 1.0, 0.0) is None


def test_backprop_keeps_visit_invariant_and_running_mean():
    tree = mcts.new_tree("x", "q", "1")
    a, b = mcts.add_children(tree, 0, [comp("a"), comp("b")], 5).children
    mcts.backprop(tree, a, 0.5)
    mcts.backprop(tree, b, -1.0)
    (c,) = mcts.add_children(tree, a, [comp("c")], 5).children
    mcts.backprop(tree, c, 1.0)
    assert [tree.nodes[i].visits for i in (0, a, b, c)] == [3, 2, 1, 1]
    assert tree.nodes[a].q == pytest.approx(0.75) and tree.nodes[0].q == pytest.approx(0.5 / 3)
    assert mcts.validate_tree(tree, (-1, 1)) == []


def test_validate_tree_reports_broken_invariants():
    tree = constructed()
    assert mcts.validate_tree(tree, (-1.0, 1.0)) == []  # 10 == 0 + 6 + 3 + 0 + 1
    tree.nodes[0].visits = 11
    assert any("visits 11 != evals 0 + children's visits 10" in e for e in mcts.validate_tree(tree))
    tree.nodes[0].visits = 10
    tree.nodes[1].value_sum = 9.0  # Q 1.5
    assert any("outside the reward range" in e for e in mcts.validate_tree(tree, (-1.0, 1.0)))


def test_graft_rollout_merges_shared_prefixes_and_carries_no_visits():
    tree = mcts.new_tree("x", "q", "1")
    (a,) = mcts.add_children(tree, 0, [comp("a")], 5).children
    t1 = mcts.graft_rollout(tree, a, "s1\n\ns2\n\n\\boxed{1}", "correct", "1", "eos")
    t2 = mcts.graft_rollout(tree, a, "s1\n\n\\boxed{2}", "wrong", "2", "eos")
    t3 = mcts.graft_rollout(tree, a, "s1\n\ns2\n\n\\boxed{1}", "correct", "1", "eos")
    assert t1 == t3 != t2
    assert len(tree.nodes) == 1 + 1 + 4  # s1 shared; s2, box1, box2
    assert tree.nodes[t1].verdict == "correct" and tree.nodes[t2].answer == "2"
    assert all(n.visits == 0 for n in tree.nodes[2:])
    assert mcts.select_leaf(tree, 1.0, 0.0) == a  # grafted children do not count as expanded
    assert mcts.terminal_counts(tree) == (1, 1)


def test_cut_at_answer_drops_text_after_first_boxed_step():
    text = "x = 2\n\nso \\boxed{2}.\n\nBut also \\boxed{3}"
    assert mcts.cut_at_answer(text) == "x = 2\n\nso \\boxed{2}."
    assert mcts.cut_at_answer("a\n\n\n\nb ") == "a\n\nb"


@pytest.mark.parametrize("values, needle", [
    ({"k": 0}, "k=0 must be an integer >= 1"),
    ({"temperature": 0.0}, "temperature=0 (greedy) with k=4"),
    ({"reward_correct": -1.0}, "reward_correct=-1.0 must exceed"),
    ({"top_p": 0.0}, "top_p=0.0 must be in (0, 1]"),
    ({"leaves_per_tree": 9, "iterations": 4}, "leaves_per_tree=9 exceeds iterations=4"),
    ({"few_shot": 99}, "few_shot=99 but only"),
])
def test_config_errors_say_cause_and_fix(values, needle):
    with pytest.raises(ConfigError, match="SearchConfig") as err:
        build_config(SearchConfig, values)
    assert needle in str(err.value)


def test_config_hash_ignores_execution_settings():
    base = SearchConfig()
    assert SearchConfig(batch_size=7, max_active_trees=3).config_hash() == base.config_hash()
    assert SearchConfig(k=5).config_hash() != base.config_hash()
