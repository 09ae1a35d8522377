"""The RL reward: +1/-1 through the checker's process pool, wherever TRL calls it."""

from __future__ import annotations

import functools
import threading
import time

import pytest
from train_helpers import cot_of

from astro_reasoner.checking import Checker
from astro_reasoner.train.rewards import RewardValues, correctness_reward


@pytest.fixture(scope="module")
def checker():
    with Checker(workers=1, deadline=2.0) as c:
        yield c


def chat(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def test_correct_and_wrong_get_plus_and_minus_one(checker):
    gold, cot = cot_of(0)
    completions = [chat(cot), chat("So the answer is \\boxed{999}."), cot]  # conversational and plain text
    rewards = correctness_reward([None] * 3, completions, [gold] * 3, checker=checker)
    assert rewards == [1.0, -1.0, 1.0]


def test_unparseable_is_minus_one_by_default_and_configurable(checker):
    completions = [chat("I have no idea."), chat("")]
    assert correctness_reward([None] * 2, completions, ["5", "5"], checker=checker) == [-1.0, -1.0]
    values = RewardValues(correct=2.0, wrong=-0.5, unparseable=0.0)
    got = correctness_reward([None] * 3, [chat("no answer"), chat("\\boxed{4}"), chat("\\boxed{5}")],
                             ["5"] * 3, checker=checker, values=values)
    assert got == [0.0, -0.5, 2.0]


def test_last_boxed_answer_counts(checker):
    # A backtracking CoT boxes a wrong intermediate answer first; only the final one is judged.
    wrong_then_right = ("So the answer is \\boxed{14}.\n\nBut wait, are we solving the problem correctly so "
                        "far? Hmm, I think I made a mistake.\n\nThe answer is \\boxed{10}.")
    right_then_wrong = "The answer is \\boxed{10}.\n\nActually no. The answer is \\boxed{14}."
    rewards = correctness_reward([None] * 2, [chat(wrong_then_right), chat(right_then_wrong)], ["10", "10"],
                                 checker=checker)
    assert rewards == [1.0, -1.0]


def test_hostile_answers_finish_within_the_deadline():
    # Exponent towers and huge factorials hang math-verify past its own SIGALRM (measured here).
    hostile = ["\\boxed{9^{9^{9^{9}}}}", "\\boxed{(10^{10})!}", "\\boxed{" + "(" * 5000 + "}",
               "\\boxed{" + "1" * 100_000 + "}"]
    with Checker(workers=2, deadline=1.0) as checker:
        t0 = time.perf_counter()
        rewards = correctness_reward([None] * len(hostile), [chat(h) for h in hostile], ["1"] * len(hostile),
                                     checker=checker)
        elapsed = time.perf_counter() - t0
    assert rewards == [-1.0] * len(hostile)
    # 1 s hard deadline per check: even if every check timed out the batch stays bounded.
    assert elapsed < 1.0 * len(hostile) + 4, elapsed


def test_works_off_the_main_thread_and_as_a_bound_partial(checker):
    # TRL runs async reward functions on a daemon thread, where math-verify's SIGALRM timeouts raise.
    gold, cot = cot_of(3)
    reward = functools.partial(correctness_reward, checker=checker)
    out: dict = {}

    def run():
        try:
            out["rewards"] = reward(prompts=[None, None], completions=[chat(cot), chat("\\boxed{x^2}")],
                                    answer=[gold, "x^3"], completion_ids=[[1], [2]], trainer_state=None)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            out["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    t.join(timeout=60)
    assert "error" not in out, out.get("error")
    assert out["rewards"] == [1.0, -1.0]


def test_logs_fractions_through_log_metric(checker):
    logged: dict[str, list[float]] = {}
    correctness_reward([None] * 4, [chat("\\boxed{5}"), chat("\\boxed{6}"), chat("none"), chat("\\boxed{5}")],
                       ["5"] * 4, checker=checker, log_metric=lambda k, v: logged.setdefault(k, []).append(v))
    assert logged == {"correct_frac": [0.5], "unparseable_frac": [0.25]}


def test_length_mismatch_is_an_error(checker):
    with pytest.raises(ValueError, match="gold answers"):
        correctness_reward([None], [chat("\\boxed{1}")], ["1", "2"], checker=checker)
