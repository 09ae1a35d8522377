"""The behaviour counter: template round trip (property test), rewording robustness, phrase-file checks."""

from __future__ import annotations

import random

import pytest
from clone_helpers import build_tree, random_tree

from astro_reasoner.behaviour import ROOT, analyze_behaviour, load_patterns, load_phrases, similarity
from astro_reasoner.clone.config import CloneConfig
from astro_reasoner.clone.linearize import linearize_tree
from astro_reasoner.clone.render import render_trace, trace_signature
from astro_reasoner.config import ConfigError


def _roundtrip_rate(n_trees: int, **cfg_values) -> tuple[int, int, list[str]]:
    cfg = CloneConfig(**cfg_values)
    phrases, patterns = load_phrases(), load_patterns()
    ok = total = 0
    failures = []
    for i in range(n_trees):
        tree = random_tree(random.Random(1000 + i), problem_id=f"q{i}", dup_prob=0.25)
        for tr in linearize_tree(tree, cfg)[0]:
            for nid in tree.path(tr.meta["correct_node"])[:-1]:  # high-Q nodes: reflect and continue
                tree.nodes[nid].visits, tree.nodes[nid].value_sum = 4, 3.0
            text = render_trace(tr, tree, phrases, use_phrases=cfg.phrases, reflect=cfg.mode == "astro",
                                seed=i, patterns=patterns)
            total += 1
            if trace_signature(tr, tree, use_phrases=cfg.phrases).matches(text, patterns):
                ok += 1
            else:
                failures.append(text)
    return ok, total, failures


@pytest.mark.parametrize("merge", ["deepest", "root", "random"])
@pytest.mark.parametrize("phrases", [True, False])
def test_template_cots_parse_back_to_their_trace(merge, phrases):
    ok, total, failures = _roundtrip_rate(120, max_backtracks={1: 0.4, 2: 0.3, 3: 0.3}, search_traces=2,
                                          merge=merge, phrases=phrases)
    assert total > 150
    assert ok / total >= 0.99, f"{ok}/{total} round trips; first failure:\n{failures[0]}"


def test_roundtrip_with_repeated_steps_uses_ordinals():
    same = "We compute 3 + 4 = 7."
    tree = build_tree([(0, same, None), (1, same, None), (2, "So \\boxed{8}.", "8"),
                       (1, "Then 7 * 2 = 14, so \\boxed{14}.", "14")], gold="14")
    cfg = CloneConfig(max_backtracks=1, direct_traces=0, search_traces=1)
    (tr,), _ = linearize_tree(tree, cfg)
    text = render_trace(tr, tree, load_phrases())
    assert "(the first time)" in text  # the backtrack goes to the first of two identical steps
    assert trace_signature(tr, tree).matches(text)


REWORDED = {
    # LM-style rewrites of a 1-backtrack trace: step 0, step 1 (wrong), reflection, backtrack to step 0, ...
    "prose": ("Tom has 3 boxes with 4 apples in each, so 3 * 4 = 12 apples.\n\n"
              "He gives away 5 apples, leaving 12 - 5 = 7, so the answer is 7.\n\n"
              "Hmm, hold on. He eats 2 apples; he does not give any away. I think I made a mistake here.\n\n"
              "Let me return to the point where Tom had 3 * 4 = 12 apples and take it from there.\n\n"
              "He eats 2 apples, so 12 - 2 = 10 are left.\n\n"
              "Let me double-check: 3 * 4 = 12 and 12 - 2 = 10. Yes, that is correct.\n\n"
              "The answer is \\boxed{10}."),
    "one paragraph": ("Tom has 3 boxes with 4 apples in each, so 3 * 4 = 12 apples.\n\n"
                      "He gives away 5 apples, leaving 12 - 5 = 7. But wait, that doesn't look right, I made an "
                      "error. Going back to where we found 3 * 4 = 12 apples, he eats 2 apples, so 12 - 2 = 10. "
                      "\\boxed{10}"),
    "quoted": ("Tom has 3 boxes with 4 apples in each, so 3 * 4 = 12 apples.\n\n"
               "He gives away 5 apples, leaving 12 - 5 = 7.\n\n"
               "Oops, something seems off here.\n\n"
               "I'll go back to \u201cTom has 3 boxes with 4 apples\u201d and continue differently.\n\n"
               "He eats 2 apples, so 12 - 2 = 10. \\boxed{10}"),
}


@pytest.mark.parametrize("name", sorted(REWORDED))
def test_reworded_backtrack_is_found_and_resolved(name):
    b = analyze_behaviour(REWORDED[name])
    assert b.doubts == 1 and b.reflections == 1 + b.self_checks  # "prose" ends with a confirming check
    assert len(b.backtracks) == 1
    assert b.backtracks[0].target == 0  # the step "Tom has 3 boxes ... 12 apples"
    assert b.steps[0].startswith("Tom has 3 boxes")


def test_restart_phrasings_backtrack_to_root():
    for phrase in ("Let's start over.", "I will start again from scratch.", "Let me go back to the beginning.",
                   "We should start afresh with the problem statement."):
        text = f"x = 9.\n\nWait, that is wrong.\n\n{phrase}\n\nx = 8, so \\boxed{{8}}."
        b = analyze_behaviour(text)
        assert [bt.target for bt in b.backtracks] == [ROOT], phrase
        assert b.counts() == {"steps": 2, "reflections": 1, "backtracks": 1}


def test_a_confirming_check_is_a_reflection_without_backtrack_and_plain_checks_are_steps():
    b = analyze_behaviour("3 + 4 = 7.\n\nBut wait, let me double-check this. Yes, this is right.\n\n\\boxed{7}")
    assert (b.reflections, b.self_checks, len(b.backtracks), len(b.steps)) == (1, 1, 0, 2)
    b = analyze_behaviour("3 + 4 = 7.\n\nBut wait, are we solving the problem correctly so far? Hmm… Our solution "
                          "seems to be correct so far.\n\n7 * 2 = 14.\n\nSo the final answer is \\boxed{14}.")
    assert (b.reflections, b.self_checks, len(b.backtracks), len(b.steps)) == (1, 1, 0, 3)
    b = analyze_behaviour("Let's check: 3 + 4 = 7.\n\nSo \\boxed{7}.")  # a step that checks, no confirmation
    assert (b.reflections, b.self_checks, len(b.steps)) == (0, 0, 2)


def test_word_problem_text_is_not_mistaken_for_backtracks():
    text = ("She went back to the store and bought 3 more apples, so 5 + 3 = 8.\n\n"
            "The shop returns 2 books, so 10 - 2 = 8.\n\nThe answer is \\boxed{8}.")
    assert analyze_behaviour(text).counts() == {"steps": 3, "reflections": 0, "backtracks": 0}


def test_unresolvable_backtrack_has_no_target_and_edge_inputs():
    b = analyze_behaviour("x = 2.\n\nHmm, wrong. Let me try a different approach. Let's go back.\n\nx = 3.")
    assert b.counts()["backtracks"] == 1
    assert analyze_behaviour("").counts() == {"steps": 0, "reflections": 0, "backtracks": 0}
    assert analyze_behaviour("just one line").steps == ["just one line"]


def test_similarity_prefers_the_restated_step():
    steps = ["There are 3 boxes with 4 apples each, so 3 * 4 = 12.", "He eats 2, so 12 - 2 = 10."]
    assert similarity("3 boxes with 4 apples", steps[0]) > similarity("3 boxes with 4 apples", steps[1])
    assert similarity("", steps[0]) == 0.0


def test_every_bank_phrase_is_recognised_by_the_cue_patterns_alone(tmp_path):
    """The cue patterns (used on rewrites) must cover every packaged phrase, not only the exact matches."""
    import dataclasses

    ph = load_phrases()
    cues_only = dataclasses.replace(load_patterns(), exact=())
    for q in ph.reflection:
        assert analyze_behaviour(f"x = 1.\n\n{q}", cues_only).reflections == 1, q
        for d in ph.doubt:
            b = analyze_behaviour(f"x = 1.\n\n{q} {d}\n\nLet's restart.", cues_only)
            assert (b.reflections, b.self_checks, len(b.backtracks)) == (1, 0, 1), (q, d)
        for c in ph.confirm:
            b = analyze_behaviour(f"x = 1.\n\n{q} {c}\n\nx = 2.", cues_only)
            assert (b.reflections, b.self_checks, len(b.steps)) == (1, 1, 2), (q, c)
    for p in ph.backtrack:
        b = analyze_behaviour("x = 1 + 1 = 2.\n\n" + p.replace("{step}", "x = 1 + 1 = 2"), cues_only)
        assert [bt.target for bt in b.backtracks] == [0], p
    for p in ph.backtrack_root:
        assert [bt.target for bt in analyze_behaviour(f"x = 1.\n\n{p}", cues_only).backtracks] == [ROOT], p


def test_custom_phrase_file_changes_patterns_and_bad_files_fail_clearly(tmp_path):
    import yaml
    from importlib import resources

    data = yaml.safe_load(resources.files("astro_reasoner").joinpath("phrases.yaml").read_text())
    data["reflection"] = ["Zut, I blundered."]
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    # "Zut, I blundered." matches no cue: only the exact phrase (derived from the bank) recognises it.
    assert analyze_behaviour("x = 1.\n\nZut, I blundered.", load_patterns(str(path))).reflections == 1
    assert analyze_behaviour("x = 1.\n\nZut, I blundered.").reflections == 0
    data["backtrack"] = ["Go back to {step}."]  # missing quotes around the slot
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="quoted slot"):
        load_phrases(str(path))
    with pytest.raises(ConfigError, match="not found"):
        load_phrases(str(tmp_path / "missing.yaml"))
