"""Final-answer extraction and the fast-path normal forms (pure functions, no worker processes)."""

from __future__ import annotations

import time
from fractions import Fraction

import pytest

from astro_reasoner.checking import extract_answer
from astro_reasoner.answers import as_number, last_boxed, normalize, sanitize


@pytest.mark.parametrize("text, expected", [
    ("so \\boxed{5}.", "5"),
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),  # escaped braces do not close the box
    ("\\fbox{7}", "7"),
    ("the answer is $\\boxed 12$", "12"),
    ("\\boxed {42}", "42"),
    ("\\boxed{\\boxed{9}}", "9"),
    ("\\boxed{a^{b^{c}}}", "a^{b^{c}}"),
    ("\\boxed{x \\\\ y}", "x \\\\ y"),
])
def test_boxed_with_nested_braces(text, expected):
    assert extract_answer(text) == expected


def test_last_box_wins_in_a_backtracking_trace():
    trace = ("Step 1 ... so the answer is \\boxed{5}.\n\nBut wait, are we solving this correctly? "
             "Let's go back to where we had 12 apples.\n\n12 - 2 = 10, so the answer is \\boxed{10}.")
    assert extract_answer(trace) == "10"
    assert extract_answer("first \\boxed{5} then \\boxed{6}") == "6"  # math-verify alone merges these


def test_a_cut_off_last_box_does_not_fall_back_to_an_earlier_one():
    assert extract_answer("\\boxed{5}. But wait, the answer is \\boxed{\\frac{1}{") is None
    assert extract_answer("\\boxed{5}. But wait, \\boxed") is None
    assert last_boxed("no box here") is None


@pytest.mark.parametrize("text, expected", [
    ("Therefore, the answer is 42.", "42"),
    ("The final answer is $\\frac{3}{4}$.", "\\frac{3}{4}"),
    ("Final Answer: 17", "17"),
    ("so the answer is 18 dollars.", "18"),
    ("Janet makes 18 dollars.\n#### 18", "18"),
    ("#### 1,000", "1,000"),
    ("**Answer:** 3.5", "3.5"),
    ("The answer is 3.5, which is half of 7.", "3.5"),
    ("The answer is 4. The answer is 5.", "5"),  # the last phrase wins, as for boxes
])
def test_fallback_phrases(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize("text", ["", "I don't know.", "The answer", "\\boxed{}", "answer is"])
def test_no_answer(text):
    assert extract_answer(text) is None


def test_a_box_beats_a_later_phrase():
    assert extract_answer("\\boxed{3}. Some say the answer is 4") == "3"


def test_never_evaluates_and_survives_hostile_text():
    hostile = "\\boxed{__import__('os').system('echo pwned')}"
    assert extract_answer(hostile) == "__import__('os').system('echo pwned')"
    nested = "\\boxed{" + "{" * 100_000 + "1" + "}" * 100_000 + "}"
    unclosed = "\\boxed{" + "{" * 100_000
    huge = "x" * 1_000_000 + " the answer is \\boxed{7}"
    start = time.perf_counter()
    assert extract_answer(nested).startswith("{{{")
    assert extract_answer(unclosed) is None
    assert extract_answer(huge) == "7"
    assert extract_answer("the answer is " + "9" * 1_000_000)  # a phrase capture is bounded, not the line
    assert time.perf_counter() - start < 5  # linear scans (each takes well under a second)


def test_lone_surrogates_are_replaced():
    assert extract_answer("\\boxed{7\ud800}") == "7\ufffd"
    assert sanitize("a\udcffb") == "a\ufffdb"
    assert sanitize("plain") == "plain"


@pytest.mark.parametrize("a, b", [
    ("\\dfrac{1}{2}", "\\frac{1}{2}"),
    ("$1000$", "1000"),
    ("\\left( 3, \\pi \\right)", "(3,\\pi)"),
    ("\\boxed{5}", "5"),
    ("{5}", "5"),
    ("1{,}000", "1,000"),
    ("1000.", "1000"),
])
def test_normalize_equal_forms(a, b):
    assert normalize(a) == normalize(b)


def test_normalize_keeps_different_answers_apart():
    assert normalize("{1}{2}") != normalize("12")
    assert normalize("\\{1,2\\}") != normalize("(1,2)")


@pytest.mark.parametrize("text, value", [
    ("1000", Fraction(1000)), ("1,000", Fraction(1000)), ("1000.0", Fraction(1000)), ("-2.50", Fraction(-5, 2)),
    (".5", Fraction(1, 2)), ("\\frac{3}{4}", Fraction(3, 4)), ("-\\frac{3}{4}", Fraction(-3, 4)),
    ("7/2", Fraction(7, 2)),
])
def test_plain_numbers(text, value):
    assert as_number(normalize(text)) == value


@pytest.mark.parametrize("text", ["x", "3,5", "1,2", "10^3", "\\frac{1}{0}", "50\\%", "9" * 100, "\\sqrt{2}"])
def test_not_plain_numbers(text):
    assert as_number(normalize(text)) is None
