"""The rules on solution text (astro_reasoner.text) and the one JSONL reader's bad-line policy (io.jsonl_rows)."""

from __future__ import annotations

import pytest

from astro_reasoner import text
from astro_reasoner.behaviour import analyze_behaviour
from astro_reasoner.io import DataError, jsonl_rows, numbered_jsonl, read_jsonl
from astro_reasoner.search import mcts


def test_the_search_splits_on_the_delimiter_only_and_the_counter_also_on_blank_looking_lines():
    solution = "a = 1\n\nb = 2\n \nc = 3\n\n\n"
    assert text.split_steps(solution) == ["a = 1", "b = 2\n \nc = 3"]  # what the stop string "\n\n" cuts
    spans = text.paragraph_spans(solution)
    assert [solution[s:e] for s, e in spans] == ["a = 1", "b = 2", "c = 3"]
    assert analyze_behaviour(solution).counts()["steps"] == 3  # the counter uses the looser reading
    assert text.one_paragraph("b = 2\n \nc = 3") == "b = 2\nc = 3"  # a rendered step reads back as one


def test_the_search_uses_the_shared_rules():
    assert mcts.split_steps is text.split_steps and mcts.has_boxed is text.has_boxed
    assert mcts.cut_at_answer("x = 2\n\nso \\boxed{2}\n\nBut wait") == "x = 2\n\nso \\boxed{2}"
    assert text.join_steps(text.split_steps(" a \n\n\n\nb ")) == "a\n\nb"


@pytest.mark.parametrize("s, claims, final", [
    ("so \\boxed{5}.", True, "5"),
    ("so \\boxed 5 and", True, "5"),
    ("\\boxed{3} but wait, \\boxed{4", True, None),  # the last box is cut off: no final answer
    ("\\fbox{7}", False, "7"),  # the checker reads it; the terminal rule asks for \boxed only
    ("the answer is 5", False, None),
])
def test_a_claimed_final_answer_and_the_extracted_one(s, claims, final):
    assert text.has_boxed(s) is claims
    assert text.last_boxed(s) == final


def test_box_content_or_text_and_unbox():
    assert text.box_content_or_text("\\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert text.box_content_or_text("12") == "12" and text.box_content_or_text("\\boxed{") == "\\boxed{"
    assert text.unbox("so \\boxed{x^{2}} and \\boxed{3}") == "so x^{2} and 3"


def test_one_bad_line_policy(tmp_path):
    path = tmp_path / "f.jsonl"
    path.write_bytes(b'{"a": 1}\n\n{"a": 2}\n{"a": ')  # a blank line, then a torn tail
    assert list(numbered_jsonl(path, tolerate_torn_tail=True)) == [(1, {"a": 1}), (3, {"a": 2})]
    with pytest.raises(DataError, match=r"f\.jsonl:4: not valid JSON"):
        list(read_jsonl(path))  # not reading for resume: the torn line is an error too
    path.write_bytes(b'{"a": 1}\n{"a": \n{"a": 3}')  # malformed in the middle: never dropped
    with pytest.raises(DataError, match=r"f\.jsonl:2: not valid JSON"):
        list(read_jsonl(path, tolerate_torn_tail=True))
    path.write_bytes(b'\xef\xbb\xbf[1]\n{"a": 3}')  # a BOM; a last line that parses is a record, newline or not
    assert list(jsonl_rows(path, tolerate_torn_tail=True)) == [(1, [1]), (2, {"a": 3})]
    with pytest.raises(DataError, match=r"f\.jsonl:1: expected a JSON object, got list"):
        list(read_jsonl(path))
