"""astro-reasoner: ASTRO, the Autoregressive Search-Taught Reasoner (Kim et al., arXiv 2507.00417).

Every stage function has one signature, ``run_<stage>(inputs, out, cfg, *, policy=None, checker=None, **options)
-> dict`` (the stage's stats; its files go to ``out``): ``search.run_search(problems, ...)``,
``clone.run_clone(trees, ...)``, ``clone.run_best_of_n(trees, ...)``, ``train.run_sft(data, ...)``,
``train.run_filter(prompts, ...)``, ``train.run_grpo(prompts, ...)``, ``evaluate.run_eval(problems, ...)``.
``policy`` is a ``backends.base.Policy`` and ``checker`` a ``checking.AnswerChecker``; what the caller passes, the
caller closes. Given None, a stage makes its own from ``cfg`` where it can (and closes it); one it needs and
cannot make is a TypeError naming what to pass (``errors.require_arguments``).
"""

__version__ = "0.1.0"
