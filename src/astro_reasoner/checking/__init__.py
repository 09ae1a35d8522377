"""Answer checking: extract the last boxed answer, compare it with the gold answer (math-verify in a process
pool with hard deadlines). See :mod:`.checker` for the decision steps."""

from .checker import AnswerChecker, Checker, CheckResult, completion_text
from ..answers import extract_answer
from .pool import CheckerError

__all__ = ["AnswerChecker", "Checker", "CheckResult", "CheckerError", "completion_text", "extract_answer"]
