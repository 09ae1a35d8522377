"""Small sft.jsonl / rl.jsonl fixtures in the clone stage's formats, for the training tests.

Written by hand from simple arithmetic problems: each SFT completion is an ASTRO-style long CoT (a wrong
step, a self-reflection, a backtrack to an earlier step, then the correct path ending in one final boxed
answer), so the same data exercises masking, training and the behaviour counter.
"""

from __future__ import annotations

from pathlib import Path

from astro_reasoner.io import write_jsonl
from astro_reasoner.prompts import PromptConfig, problem_messages

NO_FEW_SHOT = PromptConfig(few_shot=0)


def _problem(i: int) -> tuple[str, str, str]:
    a, b, c = 2 + i, 3 + (i % 4), 1 + (i % 3)
    text = f"Tom has {a} boxes with {b} apples in each box. He eats {c} apples. How many apples are left?"
    total, left = a * b, a * b - c
    cot = (f"There are {a} boxes with {b} apples each, so Tom has {a} * {b} = {total} apples.\n\n"
           f"He eats {c} apples, so {total} + {c} = {total + c} apples are left.\n\n"
           "But wait, are we solving the problem correctly so far? Hmm, I think I made a mistake.\n\n"
           f"Let's go back to where we had \"Tom has {a} * {b} = {total} apples\" and try a different approach.\n\n"
           f"He eats {c} apples, so {total} - {c} = {left} apples are left.\n\n"
           f"The answer is \\boxed{{{left}}}.")
    return text, str(left), cot


def sft_records(n: int = 8) -> list[dict]:
    out = []
    for i in range(n):
        text, _, cot = _problem(i)
        out.append({"problem_id": f"p{i}", "prompt": problem_messages(text, NO_FEW_SHOT),
                    "completion": [{"role": "assistant", "content": cot}]})
    return out


def rl_records(n: int = 4) -> list[dict]:
    out = []
    for i in range(n):
        text, answer, _ = _problem(i)
        out.append({"problem_id": f"p{i}", "prompt": problem_messages(text, NO_FEW_SHOT), "answer": answer,
                    "source": "fixture"})
    return out


def write_sft(path: Path, n: int = 8) -> Path:
    write_jsonl(path, sft_records(n))
    return path


def write_rl(path: Path, n: int = 4) -> Path:
    write_jsonl(path, rl_records(n))
    return path


def cot_of(i: int) -> tuple[str, str]:
    """(gold answer, a correct long CoT) of fixture problem ``i``."""
    _, answer, cot = _problem(i)
    return answer, cot


def short_answer_sft(path: Path, answers: tuple[str, ...] = ("3", "5"), n: int = 8) -> Path:
    """SFT data that teaches the tiny model to answer ``\\boxed{3}`` or ``\\boxed{5}`` at random, so that its GRPO
    groups hold both correct and wrong samples (a random model's samples are all unparseable: zero
    advantage, zero gradient)."""
    recs = []
    for i in range(n):
        text, _, _ = _problem(i % 4)
        recs.append({"problem_id": f"s{i}", "prompt": problem_messages(text, NO_FEW_SHOT),
                     "completion": [{"role": "assistant", "content": f"\\boxed{{{answers[i % len(answers)]}}}"}]})
    write_jsonl(path, recs)
    return path


def short_answer_rl(path: Path, gold: str = "3", n: int = 4) -> Path:
    recs = [{**r, "answer": gold} for r in rl_records(n)]
    write_jsonl(path, recs)
    return path
