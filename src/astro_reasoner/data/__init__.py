"""Problems: loaders (files, named benchmarks, hub ids), validation, and the synthetic default data set."""

from .loaders import BENCHMARKS, load_problems, write_problems
from ..tasks.math_synth import synthesize  # the embedded default data set (math task)
from .validate import LoadReport

__all__ = ["BENCHMARKS", "LoadReport", "load_problems", "synthesize", "write_problems"]
