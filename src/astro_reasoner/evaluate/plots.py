"""Matplotlib figures (Agg backend, PNG): correlation scatter plots, RL training curves, eval bars.

Each function takes plain data and a path, writes one PNG and returns the path; nothing here reads run
directories (that is ``evaluate.analyze`` and ``viz.report``). It lives in ``evaluate`` (not ``viz``) because
the analysis draws these figures: ``viz`` builds on ``evaluate``, never the other way round.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on servers or CI
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    _plt().close(fig)
    return path


def correlation_plot(points: Sequence[Mapping[str, Any]], x_key: str, x_label: str,
                     stats: Mapping[str, Mapping[str, Any]], path: str | Path, title: str = "") -> Path:
    """Accuracy (pass@1, %) against ``x_key`` for each (run, dataset) point, one colour per dataset, with
    the least-squares line and Pearson r per dataset in the legend (``stats[dataset] = {"r", "p"}``)."""
    import numpy as np

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    datasets = sorted({p["dataset"] for p in points})
    for i, ds in enumerate(datasets):
        pts = [p for p in points if p["dataset"] == ds and p.get(x_key) is not None and p.get("accuracy") is not None]
        xs = np.array([p[x_key] for p in pts], float)
        ys = np.array([100 * p["accuracy"] for p in pts], float)
        st = stats.get(ds, {})
        r = st.get("r")
        label = f"{ds} (r={r:.2f}, p={st['p']:.2g})" if r is not None and st.get("p") is not None else (
            f"{ds} (r={r:.2f})" if r is not None else ds)
        color = f"C{i}"
        ax.scatter(xs, ys, color=color, label=label, zorder=3)
        for p, x, y in zip(pts, xs, ys):
            ax.annotate(str(p.get("run", "")), (x, y), fontsize=7, alpha=0.7, xytext=(3, 3),
                        textcoords="offset points")
        if len(xs) >= 2 and np.ptp(xs) > 0:
            slope, icpt = np.polyfit(xs, ys, 1)
            grid = np.linspace(xs.min(), xs.max(), 20)
            ax.plot(grid, slope * grid + icpt, color=color, alpha=0.6, lw=1.2)
    pooled = stats.get("pooled", {})
    if pooled.get("r") is not None:
        title = f"{title}  (pooled r={pooled['r']:.2f})" if title else f"pooled r={pooled['r']:.2f}"
    ax.set_xlabel(x_label)
    ax.set_ylabel("pass@1 (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if datasets:
        ax.legend(fontsize=8)
    return _save(fig, path)


def training_curves(rows: Sequence[Mapping[str, Any]], series: Sequence[tuple[str, str]], path: str | Path,
                    title: str = "RL training") -> Path:
    """One panel per ``(key, label)`` in ``series`` over ``step``; rows lacking a key leave a gap."""
    plt = _plt()
    cols = 2 if len(series) > 1 else 1
    nrows = (len(series) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(5.2 * cols, 3.2 * nrows), squeeze=False)
    for ax, (key, label) in zip(axes.flat, series):
        pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        if len(pts) >= 20:  # RL curves are noisy: raw values faint, a centred moving average on top
            import numpy as np

            w = max(3, len(pts) // 20)
            smooth = np.convolve(ys, np.ones(w) / w, mode="valid")
            ax.plot(xs, ys, alpha=0.3, lw=0.8)
            ax.plot(xs[w // 2:w // 2 + len(smooth)], smooth, lw=1.6, color="C0", label=f"moving mean ({w})")
            ax.legend(fontsize=7)
        else:
            ax.plot(xs, ys, marker="o", ms=3)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("RL step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(series):]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def accuracy_bars(summary: Mapping[str, Any], path: str | Path) -> Path:
    """pass@1 with its 95 % interval and maj@k per dataset of one eval summary."""
    import numpy as np

    plt = _plt()
    k = summary.get("k", 8)
    names = list(summary["datasets"])
    p1 = np.array([100 * (summary["datasets"][d]["pass@1"] or 0) for d in names])
    maj = np.array([100 * (summary["datasets"][d].get(f"maj@{k}") or 0) for d in names])
    err = np.zeros((2, len(names)))
    for i, d in enumerate(names):
        ci = summary["datasets"][d].get("pass@1_ci95")
        if ci:
            err[:, i] = [p1[i] - 100 * ci[0], 100 * ci[1] - p1[i]]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(names) + 2), 3.6))
    ax.bar(x - 0.2, p1, 0.4, yerr=err, capsize=4, label="pass@1 (95% CI)")
    ax.bar(x + 0.2, maj, 0.4, label=f"maj@{k}")
    ax.set_xticks(x, names)
    ax.set_ylabel("%")
    ax.set_ylim(0, max(5.0, float(max([*p1 + err[1], *maj], default=0)) * 1.15))
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(f"{summary.get('model', '')}", fontsize=9)
    return _save(fig, path)


def behaviour_bars(summary: Mapping[str, Any], path: str | Path) -> Path:
    """Mean reflections and backtracks per output, correct vs wrong, pooled over datasets."""
    import numpy as np

    plt = _plt()
    beh = summary["overall"]["behaviour"]
    keys = ["steps", "reflections", "backtracks"]
    x = np.arange(len(keys))
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    for off, outcome, color in ((-0.2, "correct", "#2e7d32"), (0.2, "wrong", "#c62828")):
        vals = [beh[outcome][kk] or 0 for kk in keys]
        ax.bar(x + off, vals, 0.4, label=f"{outcome} ({beh[outcome]['outputs']})", color=color)
    ax.set_xticks(x, keys)
    ax.set_ylabel("mean per output")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)
