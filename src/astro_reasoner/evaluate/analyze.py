"""Across-run analytics: does search behaviour track accuracy? And how does RL change behaviour?

- ``correlation``: ASTRO §4.3 reports that, across RL checkpoints, the number of backtracks per output
  correlates with benchmark accuracy (Pearson r > 0.8). Given several eval runs (e.g. successive RL
  checkpoints) we compute Pearson r and its p-value (scipy.stats.pearsonr) between the mean backtracks per
  output and pass@1, per dataset and pooled over all (run, dataset) points, and the same for output length
  (mean tokens), which is the obvious confounder (longer outputs have more room for backtracks).
- ``training``: curves of reward, length, reflections and backtracks over RL steps from the metrics JSONL
  the RL stage writes (fields ``step, reward_mean, length_mean, reflections_mean, backtracks_mean``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..io import DataError, read_json, read_jsonl, write_json, write_text_atomic
from .run import SUMMARY, is_eval_dir
from .run import fmt_num as _fmt

CORRELATIONS = {  # x key in a point -> (axis label, file stem)
    "backtracks": ("mean backtracks per output", "correlation_backtracks"),
    "tokens": ("mean output tokens", "correlation_length"),
}

# The RL metrics file (written by the train stage) and the names TRL itself logs for the same quantities.
TRAINING_SERIES = (
    ("reward_mean", "mean reward", ("reward",)),
    ("length_mean", "mean output length (tokens)", ("completions/mean_length", "completion_length")),
    ("reflections_mean", "mean self-reflections per output", ("behaviour/reflections_mean",)),
    ("backtracks_mean", "mean backtracks per output", ("behaviour/backtracks_mean",)),
    ("correct_frac", "fraction of correct outputs", ()),
)


def find_eval_dirs(paths: Sequence[str | Path]) -> list[Path]:
    """Each path is an eval directory (has summary.json) or a directory holding several (searched
    recursively, sorted by path); a path with none is an error naming it."""
    found: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such directory")
        if is_eval_dir(p):
            found.append(p)
            continue
        inner = sorted(s.parent for s in p.rglob(SUMMARY) if is_eval_dir(s.parent))
        if not inner:
            raise DataError(f"{p}: no eval {SUMMARY} here or below; run `astro eval --out {p}` first")
        found.extend(inner)
    return found


def _label(run: Path, all_runs: Sequence[Path]) -> str:
    """A short, unique label: the directory name, or the path below the common parent if names repeat."""
    names = [r.name for r in all_runs]
    if names.count(run.name) == 1:
        return run.name
    try:
        import os

        base = Path(os.path.commonpath([str(r) for r in all_runs]))
        return str(run.relative_to(base)) or run.name
    except ValueError:
        return str(run)


def collect_points(run_dirs: Sequence[Path]) -> list[dict[str, Any]]:
    """One point per (run, dataset): accuracy (pass@1), mean backtracks and mean tokens per output."""
    points = []
    for run in run_dirs:
        summary = read_json(run / SUMMARY)
        for ds, m in summary.get("datasets", {}).items():
            beh = (m.get("behaviour") or {}).get("all") or {}
            points.append({"run": _label(run, run_dirs), "dir": str(run), "dataset": ds,
                           "accuracy": m.get("pass@1"), "backtracks": beh.get("backtracks"),
                           "reflections": beh.get("reflections"), "tokens": m.get("mean_tokens")})
    return points


def pearson(xs: Sequence[float], ys: Sequence[float]) -> dict[str, Any]:
    """Pearson r and two-sided p-value; r is None for < 2 points or a constant series, p for < 3 points."""
    from scipy import stats

    n = len(xs)
    out: dict[str, Any] = {"n": n, "r": None, "p": None}
    if n < 2 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return out
    res = stats.pearsonr(xs, ys)
    r, p = float(res.statistic), float(res.pvalue)
    out["r"] = None if math.isnan(r) else r
    out["p"] = None if (n < 3 or math.isnan(p)) else p
    return out


def correlations(points: Sequence[dict[str, Any]], x_key: str) -> dict[str, dict[str, Any]]:
    """Pearson(x_key, accuracy) per dataset and ``pooled`` over all points."""
    usable = [p for p in points if p.get(x_key) is not None and p.get("accuracy") is not None]
    out = {}
    for ds in sorted({p["dataset"] for p in usable}):
        pts = [p for p in usable if p["dataset"] == ds]
        out[ds] = pearson([p[x_key] for p in pts], [p["accuracy"] for p in pts])
    out["pooled"] = pearson([p[x_key] for p in usable], [p["accuracy"] for p in usable])
    return out


def correlation_report(run_dirs: Sequence[str | Path], out_dir: str | Path) -> dict[str, Any]:
    """Compute both correlations over ``run_dirs``; write correlation.json, correlation.md and two PNGs."""
    from .plots import correlation_plot

    runs = find_eval_dirs(run_dirs)
    points = collect_points(runs)
    out = Path(out_dir)
    result: dict[str, Any] = {"runs": [str(r) for r in runs], "points": points, "correlations": {}, "plots": {}}
    lines = ["# Behaviour vs accuracy across runs", "", f"{len(runs)} runs, {len(points)} (run, dataset) points.",
             "", "| x | dataset | n | Pearson r | p-value |", "|---|---|---|---|---|"]
    for x_key, (x_label, stem) in CORRELATIONS.items():
        stats = correlations(points, x_key)
        result["correlations"][x_key] = stats
        png = correlation_plot(points, x_key, x_label, stats, out / f"{stem}.png",
                               title=f"pass@1 vs {x_label}")
        result["plots"][x_key] = str(png)
        for ds, st in stats.items():
            lines.append(f"| {x_label} | {ds} | {st['n']} | {_fmt(st['r'])} | {_fmt(st['p'], '.3g')} |")
    lines += ["", "r needs ≥ 2 runs with different values; the p-value needs ≥ 3 runs."]
    write_json(out / "correlation.json", result)
    write_text_atomic(out / "correlation.md", "\n".join(lines) + "\n")
    return result


def read_training_metrics(path: str | Path) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """Rows with ``step`` and the standard keys (filled from known aliases), and the series present."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such metrics file (the RL stage writes it in its output dir)")
    rows = []
    for i, raw in enumerate(read_jsonl(path, tolerate_torn_tail=True)):
        row = {"step": raw.get("step", i)}
        for key, _, aliases in TRAINING_SERIES:
            for name in (key, *aliases):
                if isinstance(raw.get(name), (int, float)) and not isinstance(raw.get(name), bool):
                    row[key] = float(raw[name])
                    break
        rows.append(row)
    series = [(key, label) for key, label, _ in TRAINING_SERIES if any(key in r for r in rows)]
    if not series:
        want = ", ".join(k for k, _, _ in TRAINING_SERIES)
        raise DataError(f"{path}: no row has any of the fields {want}; is this the RL stage's metrics file?")
    return rows, series


def training_report(metrics_path: str | Path, out: str | Path) -> dict[str, Any]:
    """Plot the RL curves to ``out`` (a .png file, or a directory that gets training.png and
    training.json); returns the first/last value of each series present."""
    from .plots import training_curves

    out = Path(out)
    out_png = out if out.suffix.lower() == ".png" else out / "training.png"
    rows, series = read_training_metrics(metrics_path)
    training_curves(rows, series, out_png, title=f"RL training ({Path(metrics_path).name})")
    result: dict[str, Any] = {"rows": len(rows), "plot": str(out_png), "series": {}}
    for key, label in series:
        vals = [(r["step"], r[key]) for r in rows if key in r]
        result["series"][key] = {"label": label, "first": vals[0], "last": vals[-1], "points": len(vals)}
    if out_png is not out:
        write_json(out / "training.json", result)
    return result
