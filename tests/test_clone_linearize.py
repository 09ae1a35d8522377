"""Algorithm 1 on constructed trees with known answers: n* sampled among (approved) correct terminals, wrong
terminals with answers distinct under the checker, nothing written twice, the SFT mix, and the ablations."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from clone_helpers import build_tree, random_tree

from astro_reasoner.checking import Checker
from astro_reasoner.clone.config import CloneConfig, parse_backtracks
from astro_reasoner.clone.linearize import build_moves, linearize_tree, wrong_classes
from astro_reasoner.config import ConfigError
from astro_reasoner.types import Move, Verdict


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
    return c


def search_traces(tree, **kw):
    """The k >= 1 traces of a tree (no direct trace)."""
    traces, _ = linearize_tree(tree, cfg(direct_traces=0, **kw))
    return traces


def backtracks(trace) -> list[int]:
    return [m.node for m in trace.moves if m.kind == "backtrack"]


@pytest.fixture(scope="module")
def checker():
    with Checker(workers=1) as ch:
        yield ch


def test_correct_terminal_is_sampled_among_approved_ones():
    # three correct terminals (3, 4, 5) with different Q: every one is drawn, not only the arg-max Q
    tree = build_tree([(0, "x = 5 + 5", None), (1, "so \\boxed{10}", "10"), (0, "5 * 2 = \\boxed{10}", "10"),
                       (0, "10, \\boxed{10}", "10"), (0, "\\boxed{3}", "3")], gold="10")
    tree.nodes[3].value_sum, tree.nodes[3].visits = 5.0, 5
    picks = Counter()
    for i in range(60):
        tree.problem_id = f"p{i}"
        picks[linearize_tree(tree, cfg(search_traces=0))[0][0].meta["correct_node"]] += 1
    assert set(picks) == {2, 3, 4} and min(picks.values()) >= 8
    # seeded by the stable hash: the same run seed gives the same n*, another seed may not
    tree.problem_id = "fixed"
    same = {linearize_tree(tree, cfg(search_traces=0, seed=1))[0][0].meta["correct_node"] for _ in range(5)}
    assert len(same) == 1
    # self-evaluation approved only node 4: n* is always 4; nothing approved: no trace
    for i in range(10):
        tree.problem_id = f"a{i}"
        traces, _ = linearize_tree(tree, cfg(), approved={4})
        assert {t.meta["correct_node"] for t in traces} == {4}
    traces, st = linearize_tree(tree, cfg(), approved=set())
    assert traces == [] and st.no_approved == 1 and st.no_correct == 0


def test_wrong_answers_are_unique_under_the_checker(checker):
    tree = build_tree([(0, "so \\boxed{10}", "10"), (0, "half: \\boxed{1/2}", "1/2"), (0, "\\boxed{0.5}", "0.5"),
                       (0, "\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"), (0, "\\boxed{3}", "3"),
                       (0, "\\boxed{3.0}", "3.0")], gold="10")
    classes = wrong_classes(tree, checker.equivalent_batch)
    assert sorted(sorted(n.id for n in c) for c in classes) == [[2, 3, 4], [5, 6]]
    # by string, "1/2", "0.5" and "\frac{1}{2}" would be three answers
    from astro_reasoner.clone.linearize import exact_same

    assert len(wrong_classes(tree, exact_same)) == 5
    for i in range(20):
        tree.problem_id = f"u{i}"
        for tr in linearize_tree(tree, cfg(max_backtracks=4), same=checker.equivalent_batch)[0]:
            answers = [tree.nodes[w].answer for w in tr.meta["wrong_nodes"]]
            assert len(answers) == tr.meta["n_backtracks"] <= 2  # one per class
            assert not ({"1/2", "0.5", "\\frac{1}{2}"} <= set(answers)) and not ({"3", "3.0"} <= set(answers))


def test_each_new_path_continues_from_the_deepest_written_node():
    """Computed by hand: wrong 4 (path 1-2-4), wrong 5 (path 1-5), correct 3 (path 1-2-3). The old merge
    (common ancestor with the previous path only) wrote step 2 a second time; Algorithm 1 returns to 2."""
    tree = known_tree()
    n = tree.nodes
    moves = build_moves(tree, [n[4], n[5], n[3]], "deepest", random.Random(0))
    assert moves == [Move("step", 1), Move("step", 2), Move("step", 4), Move("backtrack", 1), Move("step", 5),
                     Move("backtrack", 2), Move("step", 3)]
    moves = build_moves(tree, [n[7], n[5], n[4], n[3]], "deepest", random.Random(0))
    assert moves == [Move("step", 6), Move("step", 7), Move("backtrack", 0), Move("step", 1), Move("step", 5),
                     Move("backtrack", 1), Move("step", 2), Move("step", 4), Move("backtrack", 2), Move("step", 3)]
    root = build_moves(tree, [n[4], n[5], n[3]], "root", random.Random(0))
    assert [m.node for m in root if m.kind == "backtrack"] == [0, 0]  # ablation: starts over, rewrites


@pytest.mark.parametrize("seed", range(3))
def test_no_step_is_written_twice_and_backtracks_go_to_an_ancestor(seed):
    for i in range(60):
        tree = random_tree(random.Random(seed * 1000 + i), problem_id=f"r{seed}-{i}", n_terminals=7)
        for tr in linearize_tree(tree, cfg(max_backtracks=5))[0]:
            steps = [m.node for m in tr.moves if m.kind == "step"]
            assert len(steps) == len(set(steps)), tr.moves
            assert steps[-1] == tr.meta["correct_node"]
            for j, m in enumerate(tr.moves):
                if m.kind == "backtrack":
                    prev = tr.moves[j - 1].node
                    assert tree.nodes[prev].terminal and tree.nodes[prev].verdict == Verdict.WRONG.value
                    assert m.node == 0 or m.node in tree.path(prev)  # an ancestor of where we stand


def test_the_sft_mix_one_direct_and_three_search_traces():
    traces, st = linearize_tree(known_tree(), cfg())
    kinds = [t.meta["kind"] for t in traces]
    assert kinds[0] == "direct" and traces[0].meta["n_backtracks"] == 0 and not backtracks(traces[0])
    assert traces[0].moves == (Move("step", 1), Move("step", 2), Move("step", 3))
    assert kinds.count("search") + st.duplicates == 3
    assert all(1 <= t.meta["n_backtracks"] <= 3 for t in traces[1:])
    traces, _ = linearize_tree(known_tree(), cfg(direct_traces=2, search_traces=5, max_backtracks=1))
    assert sum(t.meta["kind"] == "direct" for t in traces) == 1  # the second direct trace is a duplicate
    assert 2 <= sum(t.meta["kind"] == "search" for t in traces) <= 4  # 4 distinct one-backtrack traces
    # Direct mode: exactly one path per tree, whatever the mix says
    traces, _ = linearize_tree(known_tree(), cfg(mode="direct", search_traces=3, max_backtracks=3))
    assert len(traces) == 1 and traces[0].moves == (Move("step", 1), Move("step", 2), Move("step", 3))


@pytest.mark.parametrize("k", [1, 2, 3, 4, 9])
def test_fixed_backtrack_count(k):
    (tr, *_) = search_traces(known_tree(), max_backtracks=k, search_traces=1)
    n = min(k, 4)  # 4 distinct wrong answers (12, 15, 6, 4); 9 and 7 share "6"; 10 is unparseable
    assert len(backtracks(tr)) == n == tr.meta["n_backtracks"]
    assert tr.moves[-1] == Move("step", 3)
    wrong = tr.meta["wrong_nodes"]
    assert len({known_tree().nodes[w].answer for w in wrong}) == n and 10 not in wrong


def test_backtrack_distribution_is_sampled_per_trace():
    c = cfg(max_backtracks={1: 0.5, 3: 0.5}, direct_traces=0, search_traces=1)
    counts = Counter(linearize_tree(known_tree(f"p{i}"), c)[0][0].meta["n_backtracks"] for i in range(200))
    assert set(counts) == {1, 3} and 70 < counts[1] < 130
    assert parse_backtracks("0:0.2,1:0.4,2:0.4") == {0: 0.2, 1: 0.4, 2: 0.4}
    assert parse_backtracks({0: 1, 1: 3}) == {0: 0.25, 1: 0.75}
    with pytest.raises(ConfigError, match="space after the colon"):
        parse_backtracks({"0:1": None})
    with pytest.raises(ConfigError):
        cfg(max_backtracks=-1)


def test_merge_ablations_root_and_random():
    seen = set()
    for i in range(30):
        tree = known_tree(f"m{i}")
        (deep,) = search_traces(tree, max_backtracks=3, search_traces=1)
        (root,) = search_traces(tree, max_backtracks=3, search_traces=1, merge="root")
        (rnd,) = search_traces(tree, max_backtracks=3, search_traces=1, merge="random")
        assert backtracks(root) == [0, 0, 0] and len(root.moves) > len(deep.moves)
        assert deep.meta["wrong_nodes"] == root.meta["wrong_nodes"] == rnd.meta["wrong_nodes"]
        for r, d in zip(backtracks(rnd), backtracks(deep)):  # a written ancestor, root .. the deepest one
            assert r == d or r == 0 or r in known_tree().path(d)
        seen.add(tuple(backtracks(rnd)))
    assert len(seen) > 1
    assert cfg(merge="lca").merge == "deepest"  # the old name still works


def test_trees_without_correct_or_wrong_terminals():
    no_correct = build_tree([(0, "x = 3, \\boxed{3}", "3")], gold="10")
    traces, st = linearize_tree(no_correct, cfg())
    assert traces == [] and st.no_correct == 1
    no_wrong = build_tree([(0, "a", None), (1, "\\boxed{10}", "10")], gold="10")
    traces, st = linearize_tree(no_wrong, cfg())
    assert len(traces) == 1 and st.no_wrong == 1 and backtracks(traces[0]) == []


def test_config_validation_messages():
    with pytest.raises(ConfigError, match="merge"):
        cfg(merge="middle")
    with pytest.raises(ConfigError, match="mode"):
        cfg(mode="sos")
    with pytest.raises(ConfigError, match="min_votes"):
        cfg(votes=3, min_votes=4)
    with pytest.raises(ConfigError, match="direct_traces"):
        cfg(direct_traces=0, search_traces=0)
    assert cfg().votes == 8 and cfg().required_votes == 5  # N = 8 (paper), a majority (ours)
    assert cfg(votes=5, min_votes=3).required_votes == 3
