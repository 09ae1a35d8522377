"""`run_eval(problems, out, cfg, *, policy, checker)`: sample n answers per problem from any backend, check them,
score them; resumable.

Output directory:
- ``samples.jsonl``: one record per (dataset, problem, sample), appended and fsynced as each backend call
  finishes. A re-run reads it, drops a torn last line, and generates only the missing samples (raising ``n``
  or adding datasets later only adds samples). Each call's seed is ``stable_seed(seed, dataset, first
  problem id of the call, first missing sample index)``; the hf backend is deterministic for a given seed and
  batch, so a resumed run may draw other (equally distributed) samples than an uninterrupted one would.
- ``eval_config.json``: the model and the generation settings of the samples on disk; a re-run with other
  generation settings is refused rather than mixing two distributions in one file.
- ``summary.json`` and ``summary.md``: metrics per dataset and overall (pooled over all problems); summary.json
  also records the model's revision and dtype, the run's start and end (UTC) and the first problem's rendered
  prompt (evaluate/metadata.py).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import ConfigError, config_to_dict
from ..errors import require_arguments
from ..io import DataError, DirLock, append_jsonl, drop_torn_tail, read_json, read_jsonl, stable_seed, write_json, \
    write_text_atomic
from ..outdir import claim_out_dir
from ..prompts import PromptBuilder
from ..sampling import sample_and_check
from ..tasks import task_fields, vote_keys
from ..types import GenParams, Problem
from .behaviour_stats import aggregate_behaviour, behaviour_counts
from .config import EvalConfig
from .metadata import now_utc, run_metadata
from .metrics import score_problems
from .sample import EvalSample

if TYPE_CHECKING:  # annotations only: the protocols every backend / checker (and test double) implements
    from ..backends.base import Policy
    from ..checking import AnswerChecker

SAMPLES = "samples.jsonl"
SUMMARY = "summary.json"
SUMMARY_MD = "summary.md"
CONFIG = "eval_config.json"


def dataset_label(spec: str) -> str:
    """``math500`` -> ``math500``; ``/x/my_set.jsonl`` -> ``my_set`` (the key used in samples and summary)."""
    p = Path(spec)
    return p.stem if (p.suffix or "/" in spec) else spec


def load_datasets(cfg: EvalConfig) -> dict[str, list[Problem]]:
    from ..data import load_problems

    out: dict[str, list[Problem]] = {}
    for spec in cfg.datasets:
        label = dataset_label(spec)
        if label in out:
            raise ConfigError(f"datasets: two entries are both named {label!r}; rename one of the files")
        problems = load_problems(spec, data_dir=cfg.data_dir, limit=cfg.limit)
        seen: set[str] = set()
        for p in problems:
            if p.id in seen:
                raise DataError(f"{spec}: problem id {p.id!r} occurs twice; ids must be unique per dataset")
            seen.add(p.id)
        out[label] = problems
    return out


def _check_resume(out: Path, cfg: EvalConfig, model: str) -> DirLock:
    """Claim ``out`` (one writer per directory; keep the returned lock while sampling) and refuse to add
    samples drawn with other settings to an existing run (``outdir.claim_out_dir``). Only the settings both
    the file and this run name are compared: a file from a version that recorded fewer still resumes."""
    mine = {"model": model, **cfg.generation_settings()}
    return claim_out_dir(out, mine, settings_file=CONFIG, holds="samples", only_common=True, outputs=(SAMPLES,))


def is_eval_dir(path: str | Path) -> bool:
    """Whether ``path`` holds an eval summary (other stages, e.g. search, write a summary.json too)."""
    p = Path(path) / SUMMARY
    if not p.exists():
        return False
    try:
        s = read_json(p)
    except DataError:
        return False
    return isinstance(s, dict) and "datasets" in s and "overall" in s


def read_samples(path: str | Path) -> list[dict[str, Any]]:
    """The sample records of an eval directory or file (a torn last line is ignored)."""
    path = Path(path)
    if path.is_dir():
        path = path / SAMPLES
    return list(read_jsonl(path, tolerate_torn_tail=True)) if path.exists() else []


def load_samples(path: str | Path) -> list[EvalSample]:
    """:func:`read_samples` as typed records (a record missing a key of the format is a KeyError)."""
    return [EvalSample.from_json(d) for d in read_samples(path)]


def _missing(problems: dict[str, list[Problem]], records: list[EvalSample], n: int
             ) -> list[tuple[str, Problem, tuple[int, ...]]]:
    have: dict[tuple[str, str], set[int]] = defaultdict(set)
    for r in records:
        have[(r.dataset, str(r.problem_id))].add(int(r.sample))
    todo = []
    for label, probs in problems.items():
        for p in probs:
            miss = tuple(j for j in range(n) if j not in have[(label, p.id)])
            if miss:
                todo.append((label, p, miss))
    return todo


def _batches(todo: list, size: int) -> list[list]:
    """Group problems that miss the same sample indices (one GenParams.n per call), ``size`` per call."""
    groups: dict[tuple, list] = defaultdict(list)
    for item in todo:
        groups[(item[0], item[2])].append(item)
    return [g[i:i + size] for g in groups.values() for i in range(0, len(g), size)]


def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    from ..progress import Progress

    return Progress(TextColumn("[bold]eval[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("samples"), TimeRemainingColumn(), disable=not enabled)


def generate_missing(policy: Policy, cfg: EvalConfig, problems: dict[str, list[Problem]], samples_path: Path,
                     checker: AnswerChecker, *, progress: bool = True) -> dict[str, int]:
    """Sample, check and append every missing (problem, sample); returns token accounting."""
    drop_torn_tail(samples_path)
    todo = _missing(problems, load_samples(samples_path), cfg.n)
    builder = PromptBuilder(policy, cfg.prompt_config())
    stats = {"generated_tokens": 0, "prompt_tokens": 0, "backend_calls": 0, "new_samples": 0}
    total = sum(len(m) for _, _, m in todo)
    with _progress(progress) as bar:
        task = bar.add_task(", ".join(problems), total=total)
        for batch in _batches(todo, cfg.batch_size):
            label, first, miss = batch[0]
            params = GenParams(n=len(miss), max_tokens=cfg.max_tokens, stop=tuple(cfg.stop),
                               temperature=cfg.temperature, top_p=cfg.top_p,
                               seed=stable_seed(cfg.seed, label, first.id, miss[0]))
            drawn = sample_and_check(policy, checker, [p for _, p, _ in batch],
                                     [builder.continuation(p) for _, p, _ in batch], params)  # the task's prompt
            records = []
            for (_, p, m), checked in zip(batch, drawn):
                for j, s in zip(m, checked):
                    records.append(EvalSample(
                        dataset=label, problem_id=p.id, sample=j, seed=params.seed, problem=p.problem,
                        gold=p.answer, text=s.text, tokens=s.tokens, finish_reason=s.finish_reason,
                        answer=s.answer, verdict=s.verdict, counts=behaviour_counts(s.text),
                        task_fields=task_fields(p)).to_json())  # no task fields for math
                    stats["generated_tokens"] += s.tokens
                    stats["prompt_tokens"] += s.prompt_tokens
            append_jsonl(samples_path, records)
            stats["backend_calls"] += 1
            stats["new_samples"] += len(records)
            bar.update(task, advance=len(records))
    return stats


def summarize(records: Sequence[EvalSample], k: int, equivalent: Callable[[str, str], bool], *,
              n: int | None = None, bootstrap: int = 1000, seed: int = 0,
              keep: dict[str, set[str]] | None = None) -> dict[str, Any]:
    """Scores per dataset and overall from the samples (:func:`load_samples`; optionally only samples < n and
    the problem ids in ``keep``). Behaviour counts are recomputed from the text, so they follow the shared counter."""
    by_problem: dict[tuple[str, str], dict[int, EvalSample]] = defaultdict(dict)
    for r in records:
        ds, pid, j = r.dataset, str(r.problem_id), int(r.sample)
        if (n is None or j < n) and (keep is None or pid in keep.get(ds, ())):
            by_problem[(ds, pid)][j] = r
    per_ds: dict[str, list] = defaultdict(list)
    rows: dict[str, list] = defaultdict(list)
    for (ds, _), samples in sorted(by_problem.items()):
        ordered = [samples[j] for j in sorted(samples)]
        correct = [s.correct for s in ordered]
        answers = [s.answer for s in ordered]
        problem = {"answers": answers, "correct": correct, "tokens": [int(s.tokens) for s in ordered]}
        keys = vote_keys(ordered[0].task, answers, [s.verdict for s in ordered])
        if keys is not None:  # a task whose answers vote by its verifier, not by value (countdown)
            problem["vote_keys"] = keys
        per_ds[ds].append(problem)
        for s, ok in zip(ordered, correct):
            rows[ds].append({**behaviour_counts(s.text), "tokens": int(s.tokens),
                             "correct": ok})

    def score(problems: list, sample_rows: list, tag: str) -> dict[str, Any]:
        out = score_problems(problems, k, equivalent, bootstrap=bootstrap, seed=stable_seed(seed, "ci", tag))
        out["behaviour"] = aggregate_behaviour(sample_rows)
        return out

    datasets = {ds: score(per_ds[ds], rows[ds], ds) for ds in per_ds}
    overall = score([p for ds in per_ds for p in per_ds[ds]], [r for ds in rows for r in rows[ds]], "overall")
    return {"k": k, "datasets": datasets, "overall": overall}


def fmt_pct(x: float | None) -> str:
    """A fraction as a percentage with one decimal ("–" for none)."""
    return "–" if x is None else f"{100 * x:.1f}"


def fmt_num(x: float | None, fmt: str = ".2f") -> str:
    return "–" if x is None else format(x, fmt)


def summary_markdown(summary: dict[str, Any]) -> str:
    """The metric table of a summary as Markdown (percentages; the interval is the 95 % bootstrap CI)."""
    k = summary["k"]
    head = (f"| dataset | problems | samples | pass@1 % (95% CI) | maj@{k} % | pass@{k} % | tokens | steps "
            f"| reflections | backtracks | ≥1 backtrack % |")
    lines = [f"# Evaluation of `{summary.get('model', '?')}`", "", head, "|" + "---|" * 11]
    for name, m in [*summary["datasets"].items(), ("**overall**", summary["overall"])]:
        ci = m.get("pass@1_ci95")
        ci_s = f" ({fmt_pct(ci[0])}–{fmt_pct(ci[1])})" if ci else ""
        b = m["behaviour"]["all"]
        lines.append(f"| {name} | {m['problems']} | {m['samples']} | {fmt_pct(m['pass@1'])}{ci_s} "
                     f"| {fmt_pct(m.get(f'maj@{k}'))} | {fmt_pct(m.get(f'pass@{k}'))} | {fmt_num(m['mean_tokens'], '.0f')} "
                     f"| {fmt_num(b['steps'])} | {fmt_num(b['reflections'])} | {fmt_num(b['backtracks'])} "
                     f"| {fmt_pct(b['backtrack_share'])} |")
    lines += ["", "Behaviour split by outcome (means per output):", "",
              "| dataset | outcome | outputs | tokens | steps | reflections | backtracks | ≥1 backtrack % |",
              "|" + "---|" * 8]
    for name, m in [*summary["datasets"].items(), ("overall", summary["overall"])]:
        for outcome in ("correct", "wrong"):
            b = m["behaviour"][outcome]
            lines.append(f"| {name} | {outcome} | {b['outputs']} | {fmt_num(b['tokens'], '.0f')} | {fmt_num(b['steps'])} "
                         f"| {fmt_num(b['reflections'])} | {fmt_num(b['backtracks'])} | {fmt_pct(b['backtrack_share'])} |")
    return "\n".join(lines) + "\n"


def _versions() -> dict[str, str]:
    """Versions that change scores: ours and the answer checker's (a score is only comparable under the same checker version)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("astro-reasoner", "math-verify", "transformers"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


def _first_prompt(policy: Policy, cfg: EvalConfig, problems: dict[str, list[Problem]]) -> dict[str, Any] | None:
    """The exact text sent to the backend for the first problem (template, few-shot examples and all)."""
    for label, probs in problems.items():
        if probs:
            text = PromptBuilder(policy, cfg.prompt_config()).continuation(probs[0])
            return {"dataset": label, "problem_id": probs[0].id, "prompt": text}
    return None


def run_eval(problems: dict[str, list[Problem]] | None, out: str | Path, cfg: EvalConfig, *,
             policy: Policy | None = None, checker: AnswerChecker | None = None, model: str | None = None,
             progress: bool = True) -> dict[str, Any]:
    """Evaluate ``policy`` (any :class:`~astro_reasoner.backends.base.Policy`; required) on ``problems`` as
    ``cfg`` says, into ``out``; resumes an interrupted run there. ``problems``: the datasets already loaded by
    :func:`load_datasets`, or None to load ``cfg.datasets`` here. ``checker``: default a ``Checker`` made and
    closed here. ``model`` names what is evaluated (default: the backend's model path or name); a resumed run
    must name the same. Returns the summary (also in summary.json)."""
    require_arguments("run_eval", policy=policy)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = model or str(getattr(policy, "model_path", None) or policy.name)
    problems = problems if problems is not None else load_datasets(cfg)  # before anything is written
    lock = _check_resume(out, cfg, model)  # noqa: F841 - held for the run
    own = checker is None
    if own:
        from ..checking import Checker

        checker = Checker(workers=cfg.checker_workers)
    t0, started = time.time(), now_utc()
    try:
        meta = run_metadata(policy, model, _first_prompt(policy, cfg, problems))
        stats = generate_missing(policy, cfg, problems, out / SAMPLES, checker, progress=progress)
        keep = {ds: {p.id for p in probs} for ds, probs in problems.items()}
        summary = summarize(load_samples(out), cfg.k, checker.equivalent, n=cfg.n, bootstrap=cfg.bootstrap,
                            seed=cfg.seed, keep=keep)
    finally:
        if own:
            checker.close()
    summary = {"model": model, "backend": policy.name, "n": cfg.n, **summary, "config": config_to_dict(cfg),
               "versions": _versions(), **meta,
               "run": {**stats, "wall_seconds": round(time.time() - t0, 2), "started": started,
                       "finished": now_utc()}}
    write_json(out / SUMMARY, summary)
    write_text_atomic(out / SUMMARY_MD, summary_markdown(summary))
    return summary


def evaluate_model(model: str, cfg: EvalConfig, out_dir: str | Path, *, backend: str = "hf",
                   backend_options: dict[str, Any] | None = None, checker: AnswerChecker | None = None,
                   progress: bool = True
                   ) -> dict[str, Any]:
    """Make the backend for ``model`` (hub id, local dir, alias such as ``smollm2-135m``, or a served model
    name for ``openai``), run :func:`run_eval`, and close the backend."""
    from ..backends import make_backend

    problems = load_datasets(cfg)  # a bad dataset spec fails in a second, before a model loads
    policy = make_backend(backend, model, **(backend_options or {}))
    try:
        return run_eval(problems, out_dir, cfg, policy=policy, checker=checker, model=model, progress=progress)
    finally:
        policy.close()
