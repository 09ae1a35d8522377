"""The pipeline's final table, shaped like the paper's (ASTRO Table 1): one row per model variant, pass@1 (95 %
CI) and maj@k per dataset, mean backtracks and mean length per output; then what issue 16 asks of a
comparison: ASTRO − Direct paired over problems with a bootstrap CI, backtracks split by correct/wrong,
accuracy by number of backtracks, what a model does after a reflection, Pearson r across RL checkpoints (from the analysis stage), the RL signal
(share of zero-variance groups), and the compute spent per stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..evaluate.attempts import attempts_markdown
from ..evaluate.compare import BACKTRACK_BINS, accuracy_by_backtracks, paired_difference, rl_signal
from ..io import read_json, read_jsonl, write_json, write_text_atomic
from .config import PipelineConfig
from .runner import DONE, stage_stats

ROWS = (("base", "eval-base"), ("Direct-SFT", "eval-sft-direct"), ("ASTRO-SFT", "eval-sft-astro"),
        ("Direct-RL", "eval-rl-direct"), ("ASTRO-RL", "eval-rl-astro"))
PAIRS = (("ASTRO-SFT − Direct-SFT", "eval-sft-astro", "eval-sft-direct"),
         ("ASTRO-RL − Direct-RL", "eval-rl-astro", "eval-rl-direct"),
         ("ASTRO-SFT − base", "eval-sft-astro", "eval-base"),
         ("Direct-SFT − base", "eval-sft-direct", "eval-base"))


def _pct(x: Any) -> str:
    return "–" if x is None else f"{100 * float(x):.1f}"


def _num(x: Any, fmt: str = ".2f") -> str:
    return "–" if x is None else format(float(x), fmt)


def collect(run_dir: Path, stage_order: list[str] | None = None, seed: int = 0) -> dict[str, Any]:
    """Rows (each eval stage's summary.json and samples), paired comparisons, the analysis stage's correlations,
    the RL signal, and per-stage compute (each stage's _done.json)."""
    rows = []
    for label, stage in ROWS:
        path = run_dir / stage / "summary.json"
        if path.exists():
            s = read_json(path)
            samples = run_dir / stage / "samples.jsonl"
            rows.append({"row": label, "stage": stage, "k": s.get("k"), "datasets": s.get("datasets", {}),
                         "overall": s.get("overall", {}),
                         "by_backtracks": accuracy_by_backtracks(read_jsonl(samples)) if samples.exists() else None})
    pairs = []
    for label, a, b in PAIRS:
        fa, fb = run_dir / a / "samples.jsonl", run_dir / b / "samples.jsonl"
        if (run_dir / a / "summary.json").exists() and (run_dir / b / "summary.json").exists():
            pairs.append({"pair": label, **paired_difference(read_jsonl(fa), read_jsonl(fb), seed=seed)})
    analysis = run_dir / "analysis" / "analysis.json"
    corr = {}
    if analysis.exists():
        for mode, rep in read_json(analysis).items():
            c = rep.get("correlations", {})
            corr[mode] = {"points": len(rep.get("points", [])), "backtracks": c.get("backtracks", {}).get("pooled"),
                          "tokens": c.get("tokens", {}).get("pooled")}
    attempts_file = run_dir / "analysis" / "attempts.json"  # what each model does after a reflection
    by_stage = read_json(attempts_file) if attempts_file.exists() else {}
    attempts = {label: by_stage[stage] for label, stage in ROWS if stage in by_stage}
    rl = {}
    for mode in ("direct", "astro"):
        done = run_dir / f"rl-{mode}" / DONE
        if done.exists():
            ckpt = stage_stats(done.parent).get("checkpoint")
            sig = rl_signal(Path(ckpt) / "metrics.jsonl") if ckpt else None
            if sig:
                rl[mode] = sig
    compute = []
    names = stage_order or sorted(p.parent.name for p in run_dir.glob(f"*/{DONE}") if ".stale-" not in p.parent.name)
    for name in names:
        done = run_dir / name / DONE
        if not done.exists():
            continue
        st = read_json(done).get("stats", {})
        compute.append({"stage": name, "seconds": round(float(st.get("seconds", 0.0)), 1),
                        "tokens": int(st.get("tokens", 0) or 0), "prompt_tokens": int(st.get("prompt_tokens", 0) or 0),
                        "trained_tokens": int(st.get("trained_tokens", 0) or 0)})
    return {"rows": rows, "pairs": pairs, "correlations": corr, "rl_signal": rl, "compute": compute,
            "attempts": attempts}


def results_markdown(data: dict[str, Any]) -> str:
    rows = data["rows"]
    datasets = sorted({ds for r in rows for ds in r["datasets"]})
    k = next((r["k"] for r in rows if r.get("k")), 8)
    head = ["model"] + [f"{ds} pass@1 %" for ds in datasets] + [f"{ds} maj@{k} %" for ds in datasets] + \
        ["backtracks / output", "reflections / output", "tokens / output"]
    lines = ["## Results", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        beh = r["overall"].get("behaviour", {}).get("all", {})
        cells = [r["row"]] + [_pct_ci(r["datasets"].get(ds, {})) for ds in datasets] + \
            [_pct(r["datasets"].get(ds, {}).get(f"maj@{k}")) for ds in datasets] + \
            [_num(beh.get("backtracks")), _num(beh.get("reflections")), _num(r["overall"].get("mean_tokens"), ".0f")]
        lines.append("| " + " | ".join(cells) + " |")
    lines += _comparison_lines(data)
    lines += ["", "## Compute per stage", "",
              "| stage | wall seconds | generated tokens | prompt tokens | trained tokens |", "|---|---|---|---|---|"]
    total_s = total_t = 0.0
    for c in data["compute"]:
        total_s += c["seconds"]
        total_t += c["tokens"]
        lines.append(f"| {c['stage']} | {c['seconds']:.1f} | {c['tokens']} | {c['prompt_tokens']} "
                     f"| {c.get('trained_tokens', 0)} |")
    lines.append(f"| **total** | {total_s:.1f} | {int(total_t)} | | |")
    return "\n".join(lines) + "\n"


def _pct_ci(m: dict[str, Any]) -> str:
    ci = m.get("pass@1_ci95")
    return _pct(m.get("pass@1")) + (f" ({_pct(ci[0])}–{_pct(ci[1])})" if ci else "")


def _pp(x: Any) -> str:
    return "–" if x is None else f"{100 * float(x):+.1f}"


def _comparison_lines(data: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    if data.get("pairs"):
        lines += ["", "## Paired differences (same problems; percentile bootstrap over problems)", "",
                  "| comparison | problems | difference (pp) | 95 % CI (pp) | problems better / worse |",
                  "|---|---|---|---|---|"]
        for p in data["pairs"]:
            ci = p.get("ci95")
            lines.append(f"| {p['pair']} | {p['problems']} | {_pp(p['diff'])} | "
                         f"{f'{_pp(ci[0])} to {_pp(ci[1])}' if ci else '–'} | {p['a_better']} / {p['b_better']} |")
    rows = data["rows"]
    if rows:
        lines += ["", "## Behaviour by outcome, and accuracy by number of backtracks", "",
                  "| model | backtracks / correct output | backtracks / wrong output | outputs with ≥ 1 backtrack % | "
                  + " | ".join(f"acc. % at {b} (n)" for b in (*BACKTRACK_BINS, "≥ 1")) + " |",
                  "|" + "---|" * (4 + len(BACKTRACK_BINS) + 1)]
        for r in rows:
            beh = r["overall"].get("behaviour", {})
            by = r.get("by_backtracks") or {}
            cells = [r["row"], _num(beh.get("correct", {}).get("backtracks")),
                     _num(beh.get("wrong", {}).get("backtracks")), _pct(beh.get("all", {}).get("backtrack_share"))]
            for b in (*BACKTRACK_BINS, ">=1"):
                g = by.get(b) or {}
                cells.append(f"{_pct(g.get('accuracy'))} ({g.get('outputs', 0)})")
            lines.append("| " + " | ".join(cells) + " |")
    attempt_lines = attempts_markdown(data.get("attempts") or {})
    if attempt_lines:
        lines += ["", "## After a reflection: does the check tell a right first attempt from a wrong one?", "",
                  "Each output cut at its backtracks into attempts, each attempt's stated answer verified "
                  "(evaluate/attempts.py); transitions: first -> last stated answer of outputs that backtracked.",
                  "", *attempt_lines]
    if data.get("correlations"):
        lines += ["", "## Backtracks vs accuracy across SFT → RL checkpoints (Pearson, ASTRO §4.3)", "",
                  "| arm | evaluated checkpoints | r (backtracks, pass@1) | p | r (tokens, pass@1) |", "|---|---|---|---|---|"]
        for mode, c in data["correlations"].items():
            bt, tk = c.get("backtracks") or {}, c.get("tokens") or {}
            lines.append(f"| {mode} | {c['points']} | {_num(bt.get('r'))} | {_num(bt.get('p'), '.3f')} | "
                         f"{_num(tk.get('r'))} |")
    if data.get("rl_signal"):
        lines += ["", "## RL signal (GRPO groups with equal rewards have zero advantage)", "",
                  "| arm | steps | mean share of zero-variance groups | steps with no signal % | mean grad norm |",
                  "|---|---|---|---|---|"]
        for mode, sig in data["rl_signal"].items():
            lines.append(f"| {mode} | {sig['steps']} | {_num(sig['frac_reward_zero_std'])} | "
                         f"{_pct(sig['steps_without_signal'])} | {_num(sig['grad_norm_mean'], '.3g')} |")
    return lines


def write_results(cfg: PipelineConfig, out: Path, stage_order: list[str] | None = None) -> Path:
    data = collect(cfg.run_dir_path, stage_order, seed=cfg.seed)
    write_json(out / "results.json", data)
    path = out / "results.md"
    about = f"{cfg.about.strip()}\n\n" if cfg.about else ""
    write_text_atomic(path, about + results_markdown(data))
    return path
