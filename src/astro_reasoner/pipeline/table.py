"""The pipeline's final table, shaped like the paper's (ASTRO Table 1): one row per model variant, pass@1 and
maj@k per dataset, mean backtracks and mean length per output; and the compute spent per stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..io import read_json, write_json, write_text_atomic
from .config import PipelineConfig
from .runner import DONE

ROWS = (("base", "eval-base"), ("Direct-SFT", "eval-sft-direct"), ("ASTRO-SFT", "eval-sft-astro"),
        ("Direct-RL", "eval-rl-direct"), ("ASTRO-RL", "eval-rl-astro"))


def _pct(x: Any) -> str:
    return "–" if x is None else f"{100 * float(x):.1f}"


def _num(x: Any, fmt: str = ".2f") -> str:
    return "–" if x is None else format(float(x), fmt)


def collect(run_dir: Path, stage_order: list[str] | None = None) -> dict[str, Any]:
    """Rows (from each eval stage's summary.json) and per-stage compute (from each stage's _done.json)."""
    rows = []
    for label, stage in ROWS:
        path = run_dir / stage / "summary.json"
        if path.exists():
            s = read_json(path)
            rows.append({"row": label, "stage": stage, "k": s.get("k"), "datasets": s.get("datasets", {}),
                         "overall": s.get("overall", {})})
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
    return {"rows": rows, "compute": compute}


def results_markdown(data: dict[str, Any]) -> str:
    rows = data["rows"]
    datasets = sorted({ds for r in rows for ds in r["datasets"]})
    k = next((r["k"] for r in rows if r.get("k")), 8)
    head = ["model"] + [f"{ds} pass@1 %" for ds in datasets] + [f"{ds} maj@{k} %" for ds in datasets] + \
        ["backtracks / output", "reflections / output", "tokens / output"]
    lines = ["## Results", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        beh = r["overall"].get("behaviour", {}).get("all", {})
        cells = [r["row"]] + [_pct(r["datasets"].get(ds, {}).get("pass@1")) for ds in datasets] + \
            [_pct(r["datasets"].get(ds, {}).get(f"maj@{k}")) for ds in datasets] + \
            [_num(beh.get("backtracks")), _num(beh.get("reflections")), _num(r["overall"].get("mean_tokens"), ".0f")]
        lines.append("| " + " | ".join(cells) + " |")
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


def write_results(cfg: PipelineConfig, out: Path, stage_order: list[str] | None = None) -> Path:
    data = collect(cfg.run_dir_path, stage_order)
    write_json(out / "results.json", data)
    path = out / "results.md"
    write_text_atomic(path, results_markdown(data))
    return path
