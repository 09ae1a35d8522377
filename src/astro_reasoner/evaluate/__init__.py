"""Stage 6 (ASTRO §4): sample answers on benchmarks, score them (pass@1 ± CI, maj@k, pass@k), count
behaviour (reflections, backtracks), and analyse behaviour against accuracy across runs."""

from .config import EvalConfig
from .run import evaluate_model, is_eval_dir, load_samples, read_samples, run_eval, summarize
from .sample import EvalSample

__all__ = ["EvalConfig", "EvalSample", "evaluate_model", "is_eval_dir", "load_samples", "read_samples", "run_eval",
           "summarize"]
