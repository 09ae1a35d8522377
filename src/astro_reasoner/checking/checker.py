"""The answer checker: last-boxed extraction, fast paths, caches, and math-verify in a worker pool.

A check goes through the cheapest step that can decide it (our choice; the verdicts agree with plain
math-verify except where math-verify is wrong, see BENCHMARKS.md):
1. no extractable answer -> UNPARSEABLE;
2. the verdict cache, keyed by the normal forms of (gold, answer) — search and GRPO check the same answers
   against the same gold over and over;
3. equal normal forms -> CORRECT (``\\dfrac{1}{2}`` vs ``\\frac{1}{2}``, ``$1000$`` vs ``1000``);
4. both plain numbers -> compare exactly ("1,000" = "1000.0" = "\\$1000"); two different integers -> WRONG;
5. otherwise math-verify (gold first) in a worker process, under a hard deadline; there, two constants whose
   values clearly differ are WRONG without math-verify's costly ``simplify`` (see ``_worker._numerically_apart``).

Hostile input (model output is untrusted): a completion longer than ``inline_chars`` has its answer extracted
in a worker too, under the same deadline, so no input blocks the caller; an answer that reads like program
code (``2*__import__('os')... or 2``) is UNPARSEABLE before it reaches math-verify, whose parser judged such a
string CORRECT against 2; the verdict cache is bounded by bytes, not only by entries.

Caches live on the instance (no module state): each process, or each user, makes its own Checker.
"""

from __future__ import annotations

import os
import re
import threading
import weakref
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol, runtime_checkable

from ..text import box_content_or_text
from ..types import Verdict
from ..answers import as_number, extract_answer, normalize, sanitize
from .pool import WorkerPool

_DOLLAR = re.compile(r"(?<!\\)\$")
# Marks of Python code that no math answer has (our list): a dunder, a method call ``os.system(`` or
# ``Symbol('x').subs(`` (math-verify judged that one CORRECT against 2: found by the hostile-answer test), a
# call with a string literal ``f('x')``, the keywords ``import``/``lambda``, or a builtin that runs code.
_CODE = re.compile(r"__|[\w)\]'\"]\.[A-Za-z_]\w*\s*\(|\w\(\s*['\"]|\b(?:import|lambda)\b"
                   r"|\b(?:exec|eval|compile|open|getattr|setattr|globals|locals|vars|breakpoint|input)\s*\(")
_ENTRY_BYTES = 200  # rough per-entry overhead of the cache (tuple, two str headers, dict slot) for its budget


@dataclass(frozen=True)
class CheckResult:
    verdict: Verdict
    answer: str | None  # the extracted final answer (None when there is none)
    reason: str = ""  # which step decided: "exact match", "numeric", "math-verify", "timeout: ...", ...

    @property
    def correct(self) -> bool:
        return self.verdict is Verdict.CORRECT


@runtime_checkable
class AnswerChecker(Protocol):
    """What the stages call on a checker (search, procedure cloning, best-of-N, evaluation, the difficulty
    filter, the GRPO reward): :class:`Checker` implements it, and so must any test double. Lifecycle
    (``close``, the context manager) stays with whoever made the checker, so it is not part of this."""

    def check_batch(self, pairs: Iterable[tuple[Any, Any]]) -> list[CheckResult]:
        """A verdict for each (gold, completion) pair, in order."""
        ...

    def equivalent(self, a: str | None, b: str | None) -> bool:
        """Whether two extracted answers are the same (majority voting); ``a`` plays the gold."""
        ...

    def equivalent_batch(self, pairs: Iterable[tuple[str | None, str | None]]) -> list[bool]:
        """:meth:`equivalent` for many pairs (procedure cloning groups terminals by answer with it)."""
        ...


def default_workers() -> int:
    """Half the cores, 1 to 4 (our choice): the language model generating the completions needs the rest, and
    each worker warms its own parser and sympy caches, so a second worker costs ~50% more CPU per check
    (measured with bench/checker.py; see BENCHMARKS.md)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores // 2))


def completion_text(completion: Any) -> str | None:
    """The text of a completion: a string, or a chat completion (list of messages; the last one counts)."""
    if completion is None or isinstance(completion, str):
        return completion
    if isinstance(completion, dict) and "content" in completion:
        return str(completion["content"])
    if isinstance(completion, (list, tuple)) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    raise TypeError(f"a completion must be a str or a list of chat messages, got {type(completion).__name__}")


def _is_task_gold(gold: Any) -> bool:
    """Whether ``gold`` belongs to a task with its own verifier (see ``astro_reasoner.tasks``)."""
    return getattr(gold, "task", "math") != "math" and callable(getattr(gold, "verify", None))


def _gold_text(gold: Any) -> str:
    if not isinstance(gold, (str, int, float)) or isinstance(gold, bool):
        raise TypeError(f"a gold answer must be a str or a number, got {type(gold).__name__}")
    text = sanitize(str(gold)).strip()
    text = box_content_or_text(text)  # golds given as "\boxed{5}" mean 5
    if not text:
        raise ValueError("empty gold answer: every problem needs a non-empty answer (check your data file "
                         "with `astro data check FILE`)")
    return text


def _for_math_verify(answer: str) -> str:
    """The answer as math-verify gets it, wrapped in ``$...$`` by the worker: no ``$`` of its own, no final
    period (math-verify rejects "1000." against 1000). Spaces are kept: they can matter to its parser.
    """
    return _DOLLAR.sub("", answer).strip().rstrip(".").strip()


class Checker:
    """Checks completions against gold answers. Use as a context manager, or call ``close()``.

    ``workers``: math-verify processes (default: half the cores, 1 to 4); ``deadline``: hard wall-clock seconds per
    math-verify check (the worker is killed and replaced after it; the verdict is WRONG); ``memory_mb``:
    address-space limit of each worker (0 = none); ``max_answer_chars``: longer extracted answers are WRONG
    without a check (no real final answer is that long; our choice, it spares a worker); ``inner_timeout``:
    math-verify's own timeout in whole seconds (default: half the deadline, at least 1); ``warmup``: run ~1 s
    of typical checks before the first worker is forked, so that every worker starts with a warm parser
    (measured: ~0.7 s less CPU per worker over the first 867 MATH-500 checks, for ~1.4 s more start-up; turn
    it off for one-off checks, as ``astro check`` does); ``inline_chars``: completions up to this length have
    their answer extracted in the calling process (linear time: ~0.1 s at the limit for the worst input,
    200k braces), longer ones in a worker under ``deadline``;
    ``cache_bytes``: memory budget of the verdict cache (besides at most ``cache_size`` entries).
    """

    def __init__(self, workers: int | None = None, deadline: float = 5.0, *, memory_mb: int = 2048,
                 max_answer_chars: int = 2000, cache_size: int = 200_000, inner_timeout: int | None = None,
                 warmup: bool = True, inline_chars: int = 200_000, cache_bytes: int = 32 << 20):
        workers = default_workers() if workers is None else workers
        if workers < 1:
            raise ValueError(f"workers={workers}: need at least 1 worker process")
        if not deadline > 0:
            raise ValueError(f"deadline={deadline}: must be > 0 seconds (e.g. 5)")
        self.workers, self.deadline = workers, float(deadline)
        self.max_answer_chars, self.cache_size = max_answer_chars, cache_size
        self.inline_chars, self.cache_bytes = inline_chars, cache_bytes
        self._cache_used = 0  # bytes held by the verdict cache (approximate: see _ENTRY_BYTES)
        self._pool_args = dict(workers=workers, deadline=float(deadline), memory_mb=memory_mb,
                               inner_timeout=inner_timeout, warmup=warmup)
        self.stats: Counter[str] = Counter()  # how many checks each step decided
        self._cache: OrderedDict[tuple[str, str], tuple[Verdict, str]] = OrderedDict()
        self._lock = threading.RLock()
        self._pool: WorkerPool | None = None
        self._owner_pid = os.getpid()
        self._finalizer: weakref.finalize | None = None

    # ---- lifecycle ---------------------------------------------------------------------------------------
    def _get_pool(self) -> WorkerPool:
        if self._pool is None or self._owner_pid != os.getpid():
            # A forked child must not touch (or kill) its parent's workers: it starts its own.
            self._owner_pid = os.getpid()
            self._pool = WorkerPool(**self._pool_args)
            self._finalizer = weakref.finalize(self, self._pool.close)
        return self._pool

    def start(self) -> "Checker":
        """Start the worker processes now instead of at the first check that needs them."""
        with self._lock:
            self._get_pool().start()
        return self

    def close(self) -> None:
        with self._lock:
            if self._finalizer is not None and self._owner_pid == os.getpid():
                self._finalizer()
            self._pool, self._finalizer = None, None

    def __enter__(self) -> "Checker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- public API ----------------------------------------------------------------------------------------
    def check(self, gold: Any, completion: Any) -> CheckResult:
        """Verdict for one completion against one gold answer."""
        return self.check_batch([(gold, completion)])[0]

    def check_batch(self, pairs: Iterable[tuple[Any, Any]]) -> list[CheckResult]:
        """Verdicts for many (gold, completion) pairs; the math-verify checks run in parallel.

        A gold from another task (``astro_reasoner.tasks.gold_of``, e.g. a Countdown gold) is judged by its
        task's verifier, in this process: it parses a bounded expression and never calls math-verify.
        """
        pairs = list(pairs)
        if any(_is_task_gold(g) for g, _ in pairs):
            return self._check_mixed(pairs)
        golds, answers, long_texts = [], [], {}
        for i, (gold, completion) in enumerate(pairs):
            text = completion_text(completion)
            golds.append(_gold_text(gold))
            if text and len(text) > self.inline_chars:
                long_texts[i] = text
                answers.append(None)
            else:
                answers.append(extract_answer(text) if text else None)
        failed: dict[int, str] = {}
        spent = [0.0] * len(answers)  # deadline used up by extracting the answer in a worker
        if long_texts:
            with self._lock:
                extracted = self._get_pool().extract(list(long_texts.values()))
            for i, (answer, reason, seconds) in zip(long_texts, extracted):
                answers[i], spent[i] = answer, seconds
                if reason.startswith(("timeout", "checker worker", "lost")):
                    failed[i] = reason
        decided = self._decide([(g, a) for g, a in zip(golds, answers)], spent)
        return [CheckResult(Verdict.WRONG, None, failed[i]) if i in failed else CheckResult(v, a, r)
                for i, ((v, r), a) in enumerate(zip(decided, answers))]

    def _check_mixed(self, pairs: list[tuple[Any, Any]]) -> list[CheckResult]:
        """Task golds to their verifiers, the rest to the math path (one batch), results in input order."""
        out: list[CheckResult | None] = [None] * len(pairs)
        math = [i for i, (g, _) in enumerate(pairs) if not _is_task_gold(g)]
        for i, result in zip(math, self.check_batch([pairs[i] for i in math]) if math else []):
            out[i] = result
        for i, (gold, completion) in enumerate(pairs):
            if out[i] is None:
                verdict, answer, reason = gold.verify(completion_text(completion))
                self.stats[f"{gold.task}: {verdict.value}"] += 1
                out[i] = CheckResult(verdict, answer, reason)
        return out  # type: ignore[return-value]

    def equivalent(self, a: str | None, b: str | None) -> bool:
        """Whether two extracted answers are the same (for majority voting); ``a`` plays the gold."""
        return self.equivalent_batch([(a, b)])[0]

    def equivalent_batch(self, pairs: Iterable[tuple[str | None, str | None]]) -> list[bool]:
        pairs = list(pairs)
        todo = [i for i, (a, b) in enumerate(pairs) if a and b and a.strip() and b.strip()]
        decided = self._decide([(_gold_text(pairs[i][0]), sanitize(pairs[i][1])) for i in todo])
        out = [False] * len(pairs)
        for i, (verdict, _) in zip(todo, decided):
            out[i] = verdict is Verdict.CORRECT
        return out

    # ---- the decision steps ---------------------------------------------------------------------------------
    def _fast(self, gold: str, answer: str, key: tuple[str, str]) -> tuple[Verdict, str] | None:
        if key[0] == key[1]:
            return Verdict.CORRECT, "exact match"
        g, a = as_number(key[0]), as_number(key[1])
        if g is not None and a is not None:
            if g == a:
                return Verdict.CORRECT, "numeric"
            # Integers compare exactly; math-verify rounds floats to 6 decimals (0.333333 = 1/3), so other
            # numbers are WRONG here only when they clearly differ.
            if g.denominator == a.denominator == 1 or abs(g - a) > max(Fraction(1, 10**5), abs(g) / 10**12,
                                                                        abs(a) / 10**12):
                return Verdict.WRONG, "numeric"
        if len(answer) > max(self.max_answer_chars, 4 * len(gold)):
            return Verdict.WRONG, f"answer longer than {self.max_answer_chars} characters"
        return None

    def _decide(self, pairs: Sequence[tuple[str, str | None]], spent: Sequence[float] | None = None
                ) -> list[tuple[Verdict, str]]:
        """Verdicts; ``spent[i]``: seconds of pair i's deadline already used (extraction in a worker)."""
        with self._lock:
            out: list[tuple[Verdict, str] | None] = [None] * len(pairs)
            pending: dict[tuple[str, str], list[int]] = {}
            raw: dict[tuple[str, str], tuple[str, str]] = {}
            for i, (gold, answer) in enumerate(pairs):
                if answer is None:
                    out[i] = (Verdict.UNPARSEABLE, "no final answer found")
                    self.stats["no answer"] += 1
                    continue
                if _CODE.search(answer):
                    out[i] = (Verdict.UNPARSEABLE, "not a math answer: it reads like program code")
                    self.stats["code"] += 1
                    continue
                key = (normalize(gold), normalize(answer))
                hit = self._cache.get(key)
                if hit is not None:
                    self._cache.move_to_end(key)
                    out[i] = hit
                    self.stats["cache"] += 1
                    continue
                fast = self._fast(gold, answer, key)
                if fast is not None:
                    out[i] = fast
                    self.stats[fast[1]] += 1
                    self._remember(key, fast)
                    continue
                pending.setdefault(key, []).append(i)
                raw.setdefault(key, (_for_math_verify(gold), _for_math_verify(answer)))
            if pending:
                keys = list(pending)
                budgets = [max(0.25, self.deadline - max(spent[i] for i in pending[k])) for k in keys] \
                    if spent and any(spent) else None
                for key, (verdict, reason) in zip(keys, self._get_pool().run([raw[k] for k in keys], budgets)):
                    result = (Verdict(verdict), reason)
                    self.stats["timeout" if reason.startswith("timeout") else reason] += 1
                    self._remember(key, result)
                    for i in pending[key]:
                        out[i] = result
            return out  # type: ignore[return-value]

    def _remember(self, key: tuple[str, str], result: tuple[Verdict, str]) -> None:
        size = _entry_bytes(key)
        if size > self.cache_bytes // 64:  # a huge answer (decided by length anyway) would evict many others
            return
        if key not in self._cache:
            self._cache_used += size
        self._cache[key] = result
        while self._cache and (len(self._cache) > self.cache_size or self._cache_used > self.cache_bytes):
            old, _ = self._cache.popitem(last=False)
            self._cache_used -= _entry_bytes(old)


def _entry_bytes(key: tuple[str, str]) -> int:
    return len(key[0]) + len(key[1]) + _ENTRY_BYTES
