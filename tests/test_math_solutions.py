"""Worked math solutions (GSM8K's ``solution``) as direct warm-start SFT rows: tasks/math_solutions.py."""

from __future__ import annotations

import json

import pytest

from astro_reasoner.data import load_problems
from astro_reasoner.io import DataError
from astro_reasoner.prompts import STEP_DELIMITER, STEP_INSTRUCTION, SYSTEM_PROMPT
from astro_reasoner.clone.export import direct_row
from astro_reasoner.tasks import direct_solutions
from astro_reasoner.tasks.math_solutions import solution_steps
from astro_reasoner.types import Problem

GSM8K = ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
         "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.")


def _problem(pid: str, solution=None, answer: str = "72", text: str = "How many clips?") -> Problem:
    return Problem(id=pid, problem=text, answer=answer, meta={} if solution is None else {"solution": solution})


def test_gsm8k_solution_becomes_blank_line_steps_without_annotations_and_a_boxed_answer():
    text, why = solution_steps(GSM8K, "72")
    assert why is None
    assert text.split(STEP_DELIMITER) == ["Natalia sold 48/2 = 24 clips in May.",
                                          "Natalia sold 48+24 = 72 clips altogether in April and May.",
                                          "The answer is \\boxed{72}."]
    assert "<<" not in text and ">>" not in text


@pytest.mark.parametrize("solution, answer", [
    ("He pays 2 x $600 = $<<2*600=1200>>1,200.00 in total.", "1200"),  # thousands separator and cents
    ("A = 5 - 8 = <<5-8=-3>>-3", "-3"),
    ("First 3+4=<<3+4=7>>7\n\n\nThen 7*2=<<7*2=14>>14\n#### 14", "14"),  # extra blank lines, a raw '#### N' tail
])
def test_the_last_line_must_state_the_answer_as_a_number(solution, answer):
    text, why = solution_steps(solution, answer)
    assert why is None and text.endswith(f"The answer is \\boxed{{{answer}}}.")
    assert "\n\n\n" not in text and "####" not in text


@pytest.mark.parametrize("solution, answer, reason", [
    (None, "72", "no_solution"),
    ("   \n ", "72", "no_solution"),
    (12, "72", "no_solution"),
    ("The cost is 0.49 per week", "49", "answer_not_in_last_step"),  # GSM8K: $0.49 for the answer 49
    ("He scored 48 + 16 = <<48+16=64>>64 points.", "66", "answer_not_in_last_step"),
    ("x = 124 so 24 is wrong", "4", "answer_not_in_last_step"),  # a digit inside another number is not it
    ("So x = 1/2", "\\frac{1}{2}", "answer_not_in_last_step"),  # not a number: cannot be checked, skipped
])
def test_unusable_solutions_are_refused_with_a_reason(solution, answer, reason):
    assert solution_steps(solution, answer) == (None, reason)


def warmstart_rows(problems, **kw):
    """The pipeline's warm-start rows (pipeline/warm_start.build_rows): each direct solution as an SFT row."""
    sols, skipped = direct_solutions(problems, **kw)
    return [direct_row(p, text, j) for p, j, text in sols], skipped


def test_a_solution_already_in_the_step_format_is_kept_when_it_boxes_the_gold_answer():
    ours = "Mia has 3 + 4 = 7 pens.\n\nThe answer is \\boxed{7}."
    assert solution_steps(ours, "7") == (ours, None)
    assert solution_steps(ours, "8") == (None, "answer_not_in_last_step")


def test_rows_have_the_countdown_warm_start_shape_and_skipped_records_are_counted():
    problems = [_problem("p0", GSM8K, text="Natalia sold clips. How many?"), _problem("p1"),
                _problem("p2", "He has 5 apples.", answer="6")]
    rows, skipped = warmstart_rows(problems)
    assert skipped == {"no_solution": 1, "answer_not_in_last_step": 1}
    (row,) = rows
    assert set(row) == {"problem_id", "prompt", "completion", "mode", "n_backtracks", "trace_index"}
    assert row["problem_id"] == "p0" and row["mode"] == "warmstart" and row["n_backtracks"] == 0
    # the zero-shot math prompt (the training prompt of `astro clone`), then the solution as the assistant turn
    user = STEP_INSTRUCTION.format(problem="Natalia sold clips. How many?")
    assert row["prompt"] == [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]
    assert row["completion"] == [{"role": "assistant", "content": solution_steps(GSM8K, "72")[0]}]


def test_a_math_problem_has_one_solution_so_per_problem_must_be_one():
    with pytest.raises(DataError, match="per_problem: 1"):
        warmstart_rows([_problem("p0", GSM8K)], per_problem=2)


def test_the_loaders_keep_the_solution_of_a_file_and_of_a_raw_gsm8k_answer(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"id": "a", "problem": "Q1?", "answer": "72", "solution": GSM8K}) + "\n"
                    + json.dumps({"id": "b", "question": "Q2?", "answer": GSM8K + "\n#### 72"}) + "\n")
    rows, skipped = warmstart_rows(load_problems(str(path)))
    assert [r["problem_id"] for r in rows] == ["a", "b"] and not any(skipped.values())
    assert rows[0]["completion"] == rows[1]["completion"]
