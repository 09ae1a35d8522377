"""The behaviour counter on real text, labelled by hand (issue 11, item 8).

``tests/data/behaviour_labelled.jsonl``: outputs of SmolLM2-135M-Instruct fine-tuned on ASTRO traces, LM
rewrites of template CoTs (``astro clone rewrite=true``), and base-model outputs that say "wait", "go back",
"check" in other senses. Each line holds the text and its hand labels: how many reflections (every check of
the work so far, whether it ends in doubt or in a confirmation) and how many backtracks the text contains.
How the file was made is in ``tests/data/README.md``.

Per label, counts are compared text by text: a true positive is min(counted, labelled), precision = TP /
counted, recall = TP / labelled (micro-averaged over the file).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from astro_reasoner.behaviour import analyze_behaviour

DATA = Path(__file__).parent / "data" / "behaviour_labelled.jsonl"
LABELS = ("reflections", "backtracks")
GOAL = 0.9


def load() -> list[dict]:
    return [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]


def scores(rows: list[dict]) -> dict[str, dict[str, float]]:
    out = {}
    for label in LABELS:
        tp = counted = gold = 0
        for r in rows:
            c = analyze_behaviour(r["text"]).counts()[label]
            tp += min(c, r[label])
            counted += c
            gold += r[label]
        out[label] = {"precision": tp / counted if counted else 1.0, "recall": tp / gold if gold else 1.0,
                      "counted": counted, "labelled": gold}
    return out


def test_the_labelled_file_is_large_and_varied():
    rows = load()
    assert len(rows) >= 60
    kinds = Counter(r["kind"] for r in rows)
    assert set(kinds) == {"sft-model", "rewrite", "base-model"} and min(kinds.values()) >= 10, kinds
    for label in LABELS:  # both labels occur, and so do texts without them
        assert sum(r[label] > 0 for r in rows) >= 10 and sum(r[label] == 0 for r in rows) >= 10


def test_counter_precision_and_recall_on_real_text(capsys):
    rows = load()
    result = scores(rows)
    by_kind = {k: scores([r for r in rows if r["kind"] == k]) for k in sorted({r["kind"] for r in rows})}
    with capsys.disabled():
        print("\nbehaviour counter on", len(rows), "hand-labelled real texts:")
        for name, res in [("all", result), *by_kind.items()]:
            print(f"  {name:11s} " + "  ".join(
                f"{lab}: P={res[lab]['precision']:.3f} R={res[lab]['recall']:.3f} "
                f"({res[lab]['counted']} counted / {res[lab]['labelled']} labelled)" for lab in LABELS))
    for label in LABELS:
        assert result[label]["precision"] >= GOAL, (label, result[label])
        assert result[label]["recall"] >= GOAL, (label, result[label])


@pytest.mark.parametrize("label", LABELS)
def test_the_score_detects_a_broken_counter(label, monkeypatch):
    """The measurement can fail: a counter that sees nothing has recall 0, one that doubles everything
    falls below the goal in precision."""
    import astro_reasoner.behaviour as beh

    rows = load()
    real = beh.analyze_behaviour

    def doubled(text, patterns=None):
        b = real(text, patterns)
        b.reflections *= 2
        b.backtracks = b.backtracks * 2
        return b

    monkeypatch.setattr(__import__(__name__), "analyze_behaviour", lambda text, patterns=None: beh.Behaviour())
    assert scores(rows)[label]["recall"] == 0.0
    monkeypatch.setattr(__import__(__name__), "analyze_behaviour", doubled)
    assert scores(rows)[label]["precision"] < GOAL
