"""Search checked against arithmetic done by hand, resume reproducibility, accounting and early stop.

The hand tree (``test_hand_computed_tree``) uses a table policy whose every output is written below; the
expected selections, priors, visits and values are worked out in the comments from the PUCT formula
(ASTRO §2.2), not produced by running the code.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import pytest
from search_helpers import RESUME_CFG, ScriptedPolicy, problems

from astro_reasoner.checking import Checker
from astro_reasoner.search import SearchConfig, load_trees, run_search, search_iter
from astro_reasoner.search import mcts
from astro_reasoner.search.driver import Driver
from astro_reasoner.trees import tree_content
from astro_reasoner.types import Completion, GenParams, Node, Problem

BASE = SearchConfig(**RESUME_CFG)


@pytest.fixture(scope="module")
def checker():
    with Checker(workers=1) as c:
        yield c


class TablePolicy:
    """Fixed outputs per path: expansions (k=2 samples) and rollouts (2 samples). Gold answer is 5."""

    name = "table"
    deterministic = True
    # path (steps so far) -> the two sampled steps as (text, tokens, logprob_sum, finish_reason)
    EXPAND = {
        (): [("A", 2, -1.0, "stop"), ("B", 2, -2.0, "stop")],
        ("B",): [("B1", 1, -0.1, "stop"), ("So B gives \\boxed{7}.", 3, -0.9, "stop")],
        ("A",): [("A1", 2, -0.4, "stop"), ("A1", 2, -0.4, "stop")],  # identical: merged into one child
    }
    # path -> the two rollouts' final answers
    ROLLOUT = {("A",): ["5", "4"], ("B",): ["5", "5"], ("B", "B1"): ["4", "4"], ("A", "A1"): ["5", "5"]}

    def __init__(self):
        self.expanded: list[tuple[str, ...]] = []

    def apply_chat_template(self, messages: Sequence[dict[str, str]], continue_text: str = "") -> str:
        return "<Q>\n<A>" + continue_text

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def close(self) -> None:
        pass

    def generate(self, prompts: Sequence[str], params: GenParams) -> list[list[Completion]]:
        out = []
        for prompt in prompts:
            path = tuple(s.strip() for s in prompt.split("<A>", 1)[1].split("\n\n") if s.strip())
            if params.stop:
                self.expanded.append(path)
                out.append([Completion(t, n, lp, r) for t, n, lp, r in self.EXPAND[path]])
            else:
                out.append([Completion(f"The answer is \\boxed{{{a}}}.", 5, -5.0, "eos")
                            for a in self.ROLLOUT[path]])
        return out


HAND_CFG = dataclasses.replace(BASE, iterations=3, k=2, rollouts=2, c_puct=1.0, early_stop_correct=0,
                               early_stop_wrong=0, keep_rollouts=False, few_shot=0, leaves_per_tree=1)


def test_hand_computed_tree(checker):
    policy = TablePolicy()
    (tree,) = search_iter([Problem("h", "q", "5")], policy, checker, HAND_CFG)
    # Iteration 1 expands the root into A (id 1) and B (id 2). Priors: exp(mean token logprob), normalised:
    # A: exp(-1/2), B: exp(-2/2) -> P(A) = 1 / (1 + e^-0.5) = 0.622459, P(B) = 0.377541.
    # Rollouts: A -> (+1, -1) mean 0; B -> (+1, +1) mean 1. Root: N = 2, W = 1.
    # Iteration 2, PUCT Q + c P sqrt(N_root) / (1 + N_child) with N_root = 2:
    #   A: 0 + 0.622459 * 1.414214 / 2 = 0.440145;  B: 1 + 0.377541 * 1.414214 / 2 = 1.266962  -> B.
    # B expands into B1 (id 3; mean logprob -0.1) and a boxed step (id 4; mean -0.3), terminal, 7 is wrong: -1.
    #   P(B1) = 1 / (1 + e^-0.2) = 0.549834, P(id 4) = 0.450166. B1's rollouts: (-1, -1) mean -1.
    #   B: N = 1 + 2 = 3, W = 1 - 1 - 1 = -1. Root: N = 4, W = 1 + (-2) = -1.
    # Iteration 3, N_root = 4 (sqrt = 2):
    #   A: 0 + 0.622459 * 2 / 2 = 0.622459;  B: -1/3 + 0.377541 * 2 / 4 = -0.144563  -> A.
    # A's two samples are the same text: one child A1 (id 5), prior 1. Rollouts (+1, +1): mean 1.
    #   A: N = 2, W = 1. Root: N = 5, W = 0.
    assert policy.expanded == [(), ("B",), ("A",)]
    p_a = 1 / (1 + math.exp(-0.5))
    p_b1 = 1 / (1 + math.exp(-0.2))
    expected = [  # (id, parent, step, prior, visits, value_sum, evals, terminal, verdict)
        (0, -1, "", 1.0, 5, 0.0, 0, False, None),
        (1, 0, "A", p_a, 2, 1.0, 1, False, None),
        (2, 0, "B", 1 - p_a, 3, -1.0, 1, False, None),
        (3, 2, "B1", p_b1, 1, -1.0, 1, False, None),
        (4, 2, "So B gives \\boxed{7}.", 1 - p_b1, 1, -1.0, 1, True, "wrong"),
        (5, 1, "A1", 1.0, 1, 1.0, 1, False, None),
    ]
    got = [(n.id, n.parent, n.step, n.prior, n.visits, n.value_sum, n.evals, n.terminal, n.verdict)
           for n in tree.nodes]
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g[:3] == e[:3] and g[4:] == e[4:], (g, e)
        assert g[3] == pytest.approx(e[3], abs=1e-9), (g, e)
    assert (round(p_a, 6), round(p_b1, 6)) == (0.622459, 0.549834)
    # The PUCT scores worked out above, at the moment of iterations 2 and 3, from the final tree's numbers.
    assert 0 + p_a * math.sqrt(2) / 2 == pytest.approx(0.440145, abs=1e-6)
    assert -1 / 3 + (1 - p_a) * 2 / 4 == pytest.approx(-0.144563, abs=1e-6)
    assert tree.stats["iterations"] == 3 and tree.stats["expanded_max_depth"] == 2


def test_hand_tree_next_selection_is_b1(checker):
    """One more iteration by hand: N_root = 5 (sqrt 5 = 2.236068).
    A: 1/2 + 0.622459 * 2.236068 / 3 = 0.963954;  B: -1/3 + 0.377541 * 2.236068 / 4 = -0.122282  -> A.
    Under A (N = 2, sqrt 1.414214) only A1 is open: A1 (id 5) is the leaf."""
    (tree,) = search_iter([Problem("h", "q", "5")], TablePolicy(), checker, HAND_CFG)
    assert mcts.select_leaf(tree, 1.0, 0.0) == 5
    assert mcts.puct_score(tree, 0, 1, 1.0, 0.0) == pytest.approx(0.963954, abs=1e-6)
    assert mcts.puct_score(tree, 0, 2, 1.0, 0.0) == pytest.approx(-0.122282, abs=1e-6)


class Crash(Exception):
    pass


class CrashingPolicy(ScriptedPolicy):
    """The scripted policy, dying on its ``crash_at``-th call (a kill in the middle of a run)."""

    def __init__(self, crash_at: int, **kw):
        super().__init__(**kw)
        self.crash_at = crash_at

    def generate(self, prompts: Sequence[str], params: GenParams) -> list[list[Completion]]:
        if len(self.calls) + 1 >= self.crash_at:
            raise Crash
        return super().generate(prompts, params)


def _content(out_dir) -> list[str]:
    return sorted(tree_content(t) for t in load_trees(out_dir))


@pytest.mark.parametrize("crash_at, resume_changes", [
    (3, {}), (7, {"batch_size": 5}), (12, {"max_active_trees": 2}), (20, {"batch_size": 100, "max_active_trees": 9}),
])
def test_killed_and_resumed_search_equals_uninterrupted_byte_for_byte(tmp_path, checker, crash_at, resume_changes):
    """Issue 14 item 7. Seeds come from (run seed, kind, problem id, node path), so after a kill the re-searched
    trees are the same even though they now share waves and batches with other trees."""
    cfg = dataclasses.replace(BASE, iterations=6, early_stop_correct=1, early_stop_wrong=2)
    probs = problems(10)
    run_search(probs, tmp_path / "ref", cfg, policy=ScriptedPolicy(seed=1), checker=checker)
    out = tmp_path / "killed"
    with pytest.raises(Crash):
        run_search(probs, out, cfg, policy=CrashingPolicy(crash_at, seed=1), checker=checker)
    before = len(load_trees(out)) if (out / "trees.jsonl").exists() else 0
    assert before < len(probs)  # the kill landed mid-run
    run_search(probs, out, dataclasses.replace(cfg, **resume_changes), policy=ScriptedPolicy(seed=1), checker=checker)
    assert _content(out) == _content(tmp_path / "ref")


def test_per_tree_tokens_sum_to_run_totals(tmp_path, checker):
    policy = ScriptedPolicy(seed=1)
    driver = Driver(policy, checker, dataclasses.replace(BASE, batch_size=5, max_active_trees=3))
    trees = list(driver.run(problems(7)))
    c = driver.counters
    for key in ("generated_tokens", "prompt_tokens", "rollouts", "checks"):
        assert sum(t.stats[key] for t in trees) == getattr(c, key), key
    assert c.generated_tokens > 0 and c.prompt_tokens > 0
    summary = run_search(problems(7), tmp_path, BASE, policy=ScriptedPolicy(seed=1), checker=checker)
    for key in ("generated_tokens", "prompt_tokens", "rollouts", "checks"):
        assert summary[f"{key}_total"] == summary["this_run"][key], key


class CountingPolicy(ScriptedPolicy):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.generated = 0

    def generate(self, prompts: Sequence[str], params: GenParams) -> list[list[Completion]]:
        out = super().generate(prompts, params)
        self.generated += sum(c.tokens for row in out for c in row)
        return out


def test_run_totals_equal_what_the_policy_generated(checker):
    policy = CountingPolicy(seed=4)
    driver = Driver(policy, checker, BASE)
    trees = list(driver.run(problems(5)))
    assert sum(t.stats["generated_tokens"] for t in trees) == driver.counters.generated_tokens == policy.generated


def _terminal(tree, parent, step, verdict, answer, source="expand"):
    node = Node(id=len(tree.nodes), parent=parent, depth=tree.nodes[parent].depth + 1, step=step, source=source,
                terminal=True, verdict=verdict, answer=answer)
    tree.nodes.append(node)
    tree.nodes[parent].children.append(node.id)
    return node.id


def test_early_stop_counts_only_expanded_terminals_with_distinct_answers():
    tree = mcts.new_tree("x", "q", "5")
    _terminal(tree, 0, "r1", "correct", "5", source="rollout")
    _terminal(tree, 0, "r2", "wrong", "4", source="rollout")
    _terminal(tree, 0, "r3", "wrong", "3", source="rollout")
    assert mcts.early_stop_counts(tree) == (0, 0)  # grafted rollouts do not count
    _terminal(tree, 0, "e1", "wrong", "1/2")
    _terminal(tree, 0, "e2", "wrong", "0.5")  # the same number: one distinct answer
    _terminal(tree, 0, "e3", "unparseable", None)
    _terminal(tree, 0, "e4", "wrong", " ")  # no answer
    assert mcts.early_stop_counts(tree) == (0, 1)
    _terminal(tree, 0, "e5", "wrong", "\\frac{3}{4}")
    _terminal(tree, 0, "e6", "correct", "5")
    assert mcts.early_stop_counts(tree) == (1, 2)
    assert mcts.answer_key("\\frac{1}{2}") == mcts.answer_key("0.5") != mcts.answer_key("0.25")


def test_default_early_stop_does_not_end_trees_after_one_iteration(checker):
    """Issue 11: with grafted rollouts counted, every scripted tree stopped after iteration 1. The defaults
    now need expanded terminals, and at least ``min_iterations`` (2) iterations."""
    cfg = dataclasses.replace(SearchConfig(), few_shot=0, iterations=8)  # defaults otherwise (early stop 1+2, min 2)
    trees = list(search_iter(problems(12), ScriptedPolicy(seed=5), checker, cfg))
    assert all(t.stats["iterations"] >= 2 for t in trees)
    assert sum(t.stats["stop_reason"] == "early_stop" for t in trees) >= 3  # early stop still happens
    assert max(t.stats["expanded_max_depth"] for t in trees) >= 2
    for t in trees:
        if t.stats["stop_reason"] == "early_stop":
            assert t.stats["expanded_correct"] >= 1 and t.stats["expanded_wrong_answers"] >= 2
    # The same trees would have stopped after one iteration had grafted terminals counted:
    one = list(search_iter(problems(12), ScriptedPolicy(seed=5), checker,
                           dataclasses.replace(cfg, iterations=1, early_stop_correct=0, early_stop_wrong=0)))
    assert [t.stats["stop_reason"] for t in one] == ["iterations"] * 12
    graft_counts = [mcts.terminal_counts(t) for t in one]
    assert sum(c >= 1 and w >= 2 for c, w in graft_counts) >= 6


def test_prompt_seeds_are_independent_of_waves_and_batches(checker):
    """The seeds a prompt is sampled with depend on (run seed, kind, problem id, node), nothing else."""
    seen: dict[str, set] = {}

    class Recording(ScriptedPolicy):
        def generate(self, prompts, params):
            for p, s in zip(prompts, params.seeds):
                seen.setdefault(p + repr(params.stop), set()).add(s)
            return super().generate(prompts, params)

    for changes in ({}, {"batch_size": 3, "max_active_trees": 1}, {"batch_size": 50, "max_active_trees": 8}):
        list(search_iter(problems(8), Recording(seed=1), checker, dataclasses.replace(BASE, **changes)))
    assert seen and all(len(s) == 1 for s in seen.values())
    assert len({next(iter(s)) for s in seen.values()}) == len(seen)  # distinct prompts, distinct seeds


def test_hf_per_prompt_seeds_ignore_the_rest_of_the_batch(tiny_model_dir):
    """GenParams.seeds in the hf backend (compact decoding): a prompt's samples depend on its own seed only."""
    from astro_reasoner.backends import make_backend
    from astro_reasoner.types import GenParams

    policy = make_backend("hf", str(tiny_model_dir), threads=1, batch_size=8)
    try:
        a, b, c = (policy.apply_chat_template([{"role": "user", "content": q}]) for q in
                   ("What is 2 + 3?", "Tom has 3 boxes with 4 apples in each box. How many apples?", "x"))
        params = dict(n=3, max_tokens=12, temperature=1.0, top_p=1.0)
        alone = policy.generate([a], GenParams(**params, seed=1, seeds=(11,)))[0]
        mixed = policy.generate([b, a, c], GenParams(**params, seed=2, seeds=(5, 11, 7)))[1]
        small = GenParams(**{**params, "seed": 3, "seeds": (9, 11)})
        chunked = make_backend("hf", str(tiny_model_dir), threads=1, batch_size=2).generate([c, a], small)[1]
        assert [x.text for x in alone] == [x.text for x in mixed] == [x.text for x in chunked]
        other = policy.generate([a], GenParams(**params, seed=1, seeds=(12,)))[0]
        assert [x.text for x in other] != [x.text for x in alone]  # the seed matters
    finally:
        policy.close()


@pytest.mark.parametrize("crash_at", [3])
def test_hf_search_resumed_equals_uninterrupted(tmp_path, checker, tiny_model_dir, crash_at):
    """The scripted resume test with the real hf backend (tiny random model): per-prompt seeds make the
    re-searched trees independent of the new batching (up to float rounding of log-probs)."""
    from astro_reasoner.backends import make_backend
    from astro_reasoner.data import synthesize

    cfg = SearchConfig(k=2, rollouts=2, iterations=3, max_step_tokens=6, max_rollout_tokens=10, max_depth=3,
                       batch_size=8, max_active_trees=3, few_shot=1, temperature=1.0)
    probs = synthesize(steps=2, n=5, seed=0)
    policy = make_backend("hf", str(tiny_model_dir), threads=1, batch_size=8)

    class Dying:
        name, deterministic, calls = "hf", True, 0

        def __getattr__(self, item):
            return getattr(policy, item)

        def generate(self, prompts, params):
            Dying.calls += 1
            if Dying.calls >= crash_at:
                raise Crash
            return policy.generate(prompts, params)

    try:
        run_search(probs, tmp_path / "ref", cfg, policy=policy, checker=checker)
        with pytest.raises(Crash):
            run_search(probs, tmp_path / "killed", cfg, policy=Dying(), checker=checker)
        run_search(probs, tmp_path / "killed", dataclasses.replace(cfg, batch_size=5, max_active_trees=2),
                   policy=policy, checker=checker)
    finally:
        policy.close()
    # Texts, structure, verdicts and values equal; log-probs (hence priors) only up to float rounding: batched
    # matmuls over other batch shapes round differently in the last bits (no exact equality on real kernels).
    def shape(d):
        return sorted((t.problem_id, [(n.parent, n.step, n.source, n.terminal, n.verdict, n.visits,
                                       round(n.value_sum, 9), round(n.prior, 3)) for n in t.nodes])
                      for t in load_trees(d))

    assert shape(tmp_path / "killed") == shape(tmp_path / "ref")
