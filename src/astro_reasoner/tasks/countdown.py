"""Countdown: the record fields, the gold the checker dispatches on, and the verifier.

A Countdown problem gives numbers and a target ("use 8, 2, 3, 4 once each with + - * / to make 22"). The
final answer is the whole expression in ``\\boxed{}`` (``\\boxed{(8 - 2) * 3 + 4}``); the verifier parses it,
checks that every given number is used exactly once, and computes its exact value with ``Fraction``.

The rules (our choice, stated once here and applied identically by the solver in :mod:`.countdown_solver`):
- binary + - * / and parentheses only; no unary minus, no number that was not given, no concatenation of
  digits ("8" and "2" do not make "82");
- every division must come out whole: a non-integer intermediate ("8 / 3") makes the answer WRONG, as on the
  TV show and in Stream of Search (Gandhi et al., 2024). The step format writes every intermediate as a
  plain number, which fractions would not fit; the solver and the generator use the same rule, so every
  generated puzzle has a solution that passes;
- negative intermediates are allowed in a boxed expression (``4 - 8 + 6`` is read left to right and is 2;
  rejecting it would make the verdict depend on how the expression is bracketed), although the solver
  never writes one;
- an equation in the box (``(8 - 2) * 3 + 4 = 22``) is accepted when every other side is a plain number
  equal to the expression's value; a false one (``... = 21``) is WRONG.

The parser is written by hand (a tokenizer and a recursive-descent parser of a five-token grammar): model
text is never passed to ``eval``/``exec``/``sympify``/``ast``. Input is bounded before parsing
(``MAX_EXPR_CHARS``, ``MAX_DEPTH``, ``MAX_NUMBER_DIGITS``), and the numbers are matched against the given
ones before anything is computed, so the arithmetic is on the given numbers only and stays small.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Union

from ..io import DataError
from ..types import Verdict

TASK = "countdown"
MAX_EXPR_CHARS = 300  # a boxed expression longer than this is UNPARSEABLE (8 numbers need < 60 characters)
MAX_DEPTH = 16  # parenthesis nesting
MAX_NUMBER_DIGITS = 12
MAX_NUMBERS = 8  # per puzzle, in data files
MAX_VALUE = 10**9  # any given number or target

# LaTeX and Unicode spellings of the operators and brackets, mapped to the five tokens the grammar knows.
_SPELLINGS = (
    (re.compile(r"\\left(?![A-Za-z])|\\right(?![A-Za-z])|\\[,;:! ]|\$"), ""),
    (re.compile(r"\\times(?![A-Za-z])|\\cdot(?![A-Za-z])|[×·∗⋅]"), "*"),
    (re.compile(r"\\div(?![A-Za-z])|÷|∕"), "/"),
    (re.compile(r"[−–—]"), "-"),
    (re.compile(r"\\\{|\[|\{"), "("),
    (re.compile(r"\\\}|\]|\}"), ")"),
)
_TOKEN = re.compile(r"\s*(?:(\d+)|([-+*/()=]))")

Expr = Union[int, tuple]  # a leaf (a given number) or (op, left, right)


class ParseError(ValueError):
    """The boxed text is not an expression of the grammar (the verdict is UNPARSEABLE)."""


@dataclass(frozen=True)
class CountdownGold:
    """What the checker compares a completion with: the numbers to use and the target.

    The checker dispatches on ``task`` (any gold with a ``task`` other than "math" and a ``verify`` method is
    judged by that method instead of the math path); ``answer`` is the gold as text, as for math.
    """

    numbers: tuple[int, ...]
    target: int
    task: str = TASK
    # Also require every "a op b = c. Left: ..." step of the text to hold (``check_steps``): search terminals
    # are judged this way when ``SearchConfig.verify_steps`` is on (issue 16, variant 1).
    steps: bool = False

    @property
    def answer(self) -> str:
        return str(self.target)

    def verify(self, text: str | None) -> tuple[Verdict, str | None, str]:
        return verify(text, self.numbers, self.target, steps=self.steps)


# ---- record fields -----------------------------------------------------------------------------------------

def _int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise DataError(f"countdown: {what} must be an integer, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*\d{1,12}\s*", value):
        value = int(value)
    if not isinstance(value, int) or not 0 <= value <= MAX_VALUE:
        raise DataError(f"countdown: {what} must be an integer between 0 and {MAX_VALUE}, got {value!r}")
    return value


def fields(src: dict[str, Any], answer: Any = None) -> dict[str, Any]:
    """The canonical task fields ``{"task", "numbers", "target"}`` of a record (``numbers`` may be a list or
    a string "8,2,3,4"; ``target`` falls back on the answer). Raises DataError saying what to fix."""
    numbers = src.get("numbers")
    if isinstance(numbers, str):
        numbers = [x for x in re.split(r"[,\s]+", numbers.strip()) if x]
    if not isinstance(numbers, (list, tuple)) or not 2 <= len(numbers) <= MAX_NUMBERS:
        raise DataError(f"countdown: field 'numbers' must be a list of 2 to {MAX_NUMBERS} integers "
                        f"(e.g. [8, 2, 3, 4]), got {numbers!r}")
    nums = [_int(x, "every number in 'numbers'") for x in numbers]
    target = src.get("target", answer)
    if target is None:
        raise DataError("countdown: missing field 'target' (the number to make, e.g. 22)")
    return {"task": TASK, "numbers": nums, "target": _int(target, "field 'target'")}


def gold(answer: Any, task_fields: dict[str, Any], steps: bool = False) -> CountdownGold:
    f = fields(task_fields, answer)
    return CountdownGold(tuple(f["numbers"]), f["target"], steps=steps)


# ---- parsing -----------------------------------------------------------------------------------------------

def tokenize(text: str) -> list[str]:
    for pattern, repl in _SPELLINGS:
        text = pattern.sub(repl, text)
    tokens, pos, end = [], 0, len(text.rstrip().rstrip(".").rstrip())  # "... + 4." : a final period is prose
    while pos < end:
        m = _TOKEN.match(text, pos)
        if m is None or m.end() > end:
            bad = text[pos:end].strip()[:20]
            raise ParseError(f"unexpected {bad!r}" if bad else "unexpected end")
        if m.group(1) is not None and len(m.group(1)) > MAX_NUMBER_DIGITS:
            raise ParseError(f"number with more than {MAX_NUMBER_DIGITS} digits")
        tokens.append(m.group(1) if m.group(1) is not None else m.group(2))
        pos = m.end()
    return tokens


class _Parser:
    """expr := term (("+" | "-") term)* ; term := factor (("*" | "/") factor)* ; factor := NUMBER | "(" expr ")"."""

    def __init__(self, tokens: list[str]):
        self.tokens, self.pos, self.depth = tokens, 0, 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        tok = self.peek()
        if tok is None:
            raise ParseError("unexpected end")
        self.pos += 1
        return tok

    def expr(self) -> Expr:
        node = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            node = (op, node, self.term())
        return node

    def term(self) -> Expr:
        node = self.factor()
        while self.peek() in ("*", "/"):
            op = self.take()
            node = (op, node, self.factor())
        return node

    def factor(self) -> Expr:
        tok = self.take()
        if tok.isdigit():
            return int(tok)
        if tok != "(":
            raise ParseError(f"expected a number or '(', got {tok!r}")
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ParseError(f"parentheses nested deeper than {MAX_DEPTH}")
        node = self.expr()
        if self.peek() != ")":
            raise ParseError("unbalanced parentheses")
        self.take()
        self.depth -= 1
        return node


def parse(text: str) -> list[Expr]:
    """The sides of the boxed text (one expression, or an equation's sides); raises ParseError."""
    if len(text) > MAX_EXPR_CHARS:
        raise ParseError(f"longer than {MAX_EXPR_CHARS} characters")
    tokens = tokenize(text)
    sides: list[Expr] = []
    start = 0
    for i in range(len(tokens) + 1):
        if i == len(tokens) or tokens[i] == "=":
            parser = _Parser(tokens[start:i])
            node = parser.expr()
            if parser.peek() is not None:
                raise ParseError(f"unexpected {parser.peek()!r}")
            sides.append(node)
            start = i + 1
    return sides


def leaves(node: Expr) -> list[int]:
    out, stack = [], [node]
    while stack:
        n = stack.pop()
        if isinstance(n, int):
            out.append(n)
        else:
            stack += [n[2], n[1]]
    return out


class RuleError(ValueError):
    """The expression breaks a rule (division by zero, non-integer intermediate): the verdict is WRONG."""


def evaluate(node: Expr) -> Fraction:
    """Exact value; every intermediate must be an integer (see the module docstring)."""
    if isinstance(node, int):
        return Fraction(node)
    op, left, right = node
    a, b = evaluate(left), evaluate(right)
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        raise RuleError("division by zero")
    value = a / b
    if value.denominator != 1:
        raise RuleError(f"non-integer intermediate {a} / {b}")
    return value


def _usage_problem(used: list[int], given: tuple[int, ...]) -> str | None:
    extra, missing = Counter(used) - Counter(given), Counter(given) - Counter(used)
    parts = []
    if extra:
        twice = [n for n in extra if n in given]
        other = [n for n in extra if n not in given]
        if twice:
            parts.append("uses " + ", ".join(map(str, sorted(twice))) + " more often than given")
        if other:
            parts.append("uses " + ", ".join(map(str, sorted(other))) + " (not given)")
    if missing:
        parts.append("leaves out " + ", ".join(map(str, sorted(missing.elements()))))
    return "; ".join(parts) or None


SOLVED = "<solved>"  # the vote key shared by every correct answer


def vote_key(answer: str | None, verdict: Verdict | str) -> str | None:
    """The maj@k vote key of one sample (its extracted answer and verdict value): every correct expression is
    one class (they all solve the puzzle, however written), a wrong one votes for its normalized expression
    (operator spellings and spaces removed: "(8 - 2) \\times 3" and "(8-2)*3" are one vote), text that is no
    expression for its whitespace-collapsed self; no answer does not vote. Value equivalence would be wrong
    here: a bare "22" has the target's value but is no solution."""
    if answer is None:
        return None
    if verdict == Verdict.CORRECT:  # a str enum: equals the value read from JSON too
        return SOLVED
    try:
        if len(answer) <= MAX_EXPR_CHARS:
            return "".join(tokenize(answer))
    except ParseError:
        pass
    return " ".join(answer.split())


# One operation step of the step format ("8 - 2 = 6. Left: 3, 4, 6."), at the start of a line.
_STEP = re.compile(r"^[ \t]*(\d{1,12}) ([-+*/]) (\d{1,12}) = (-?\d{1,12})\. Left: ([\d, ]{0,200})", re.M)
# The final step's recomputation ("Check: ... = 22. The answer is ..."), bounded like a boxed expression.
_CHECK = re.compile(r"^[ \t]*Check: ([^\n]{1,%d}?)\.\s*The answer is" % MAX_EXPR_CHARS, re.M)


def step_arithmetic(text: str) -> list[bool]:
    """Whether each operation step's arithmetic holds ("7 * 6 = 35" does not), in order. Unlike
    :func:`check_steps` the numbers left are not followed: an ASTRO trace restarts from an earlier point after
    each backtrack. A step the task's rules forbid (÷0, a non-integer result) counts as false. For audits of
    texts (scripts/countdown_audit.py)."""
    out = []
    for m in _STEP.finditer(text):
        try:
            out.append(evaluate((m.group(2), int(m.group(1)), int(m.group(3)))) == int(m.group(4)))
        except RuleError:
            out.append(False)
    return out


def check_steps(text: str, numbers: tuple[int, ...]) -> str | None:
    """The first false statement among the text's operation steps, or None when every one holds.

    The boxed expression alone does not say whether the steps that led to it are true: a path "11 + 19 = 10.
    ... \\boxed{...}" can box a right expression after false arithmetic (issue 16's audit found false steps in
    54 % of the Direct traces of a search judged by the box only). A step holds when both operands are among
    the numbers left (starting from the given ones), the result is exact under the task's rules, and its
    "Left:" list is the numbers left after it (as a multiset); the final "Check: ..." chain holds when all its
    sides have one value. Only lines in the step format are read; the arithmetic is on parsed integers (no
    evaluation of model text)."""
    left = Counter(numbers)
    for m in _STEP.finditer(text):
        a, op, b, c = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
        step = m.group(0).split(". Left:")[0].strip()
        need = Counter([a, b])
        if need - left:
            return f"step '{step}' uses a number that is not left ({', '.join(map(str, sorted(left.elements())))})"
        try:
            value = evaluate((op, a, b))
        except RuleError as exc:
            return f"step '{step}': {exc}"
        if value != c:
            return f"step '{step}' is false ({a} {op} {b} = {value})"
        left = left - need + Counter([c])
        stated = [int(x) for x in re.findall(r"\d{1,12}", m.group(5))]
        if Counter(stated) != left:
            return f"step '{step}': the numbers left are {', '.join(map(str, sorted(left.elements())))}"
    for m in _CHECK.finditer(text):  # "Check: (8 - 2) * 3 + 4 = 6 * 3 + 4 = 18 + 4 = 22.": every side equal
        try:
            values = {evaluate(side) for side in parse(m.group(1))}
        except (ParseError, RuleError) as exc:
            return f"check '{m.group(1)[:60]}': {exc}"
        if len(values) > 1:
            return f"check '{m.group(1)[:60]}' is false (its sides are {', '.join(map(str, sorted(values)))})"
    return None


def verify(text: str | None, numbers: tuple[int, ...], target: int,
           steps: bool = False) -> tuple[Verdict, str | None, str]:
    """(verdict, extracted answer, reason) for one completion. The answer is the last ``\\boxed{}`` (or "the
    answer is ..." line), extracted exactly as for math. With ``steps`` a correct answer after a false
    operation step is WRONG (:func:`check_steps`)."""
    from ..answers import extract_answer

    answer = extract_answer(text) if text else None
    if answer is None:
        return Verdict.UNPARSEABLE, None, "no final answer found"
    try:
        sides = parse(answer)
    except ParseError as exc:
        return Verdict.UNPARSEABLE, answer, f"not an expression: {exc}"
    expr = max(sides, key=lambda s: len(leaves(s)))
    problem = _usage_problem(leaves(expr), tuple(numbers))
    if problem:
        return Verdict.WRONG, answer, problem
    try:
        value = evaluate(expr)
    except RuleError as exc:
        return Verdict.WRONG, answer, str(exc)
    for side in sides:
        if side is not expr and (not isinstance(side, int) or side != value):
            return Verdict.WRONG, answer, f"the boxed equation does not hold (the expression is {value})"
    if value != target:
        return Verdict.WRONG, answer, f"value {value}, target {target}"
    if steps:
        false = check_steps(text, tuple(numbers))
        if false:
            return Verdict.WRONG, answer, false
    return Verdict.CORRECT, answer, "countdown"
