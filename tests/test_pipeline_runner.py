"""The stage-graph runner: skip finished stages, resume started ones, redo stale or forced ones."""

from __future__ import annotations

import pytest

from astro_reasoner.pipeline.runner import Stage, StageGraph


def _graph(run_dir, calls, settings=None, fail_at=None):
    settings = settings or {}

    def make(name):
        def run(out, inputs):
            calls.append(name)
            if fail_at == name:
                (out / "partial.txt").write_text("half")
                raise KeyboardInterrupt
            (out / "result.txt").write_text(name + "".join(sorted(p.name for p in inputs.values())))
            return {"tokens": len(name)}
        return run

    return StageGraph(run_dir, [
        Stage("a", make("a"), settings=settings.get("a", {})),
        Stage("b", make("b"), deps=("a",), settings=settings.get("b", {})),
        Stage("c", make("c"), deps=("a",)),
        Stage("d", make("d"), deps=("b", "c")),
    ])


def test_runs_once_then_skips(tmp_path):
    calls = []
    res = _graph(tmp_path, calls).run()
    assert calls == ["a", "b", "c", "d"]
    assert [r.skipped for r in res] == [False] * 4
    assert (tmp_path / "d" / "result.txt").read_text() == "dbc"
    calls.clear()
    res = _graph(tmp_path, calls).run()
    assert calls == [] and all(r.skipped for r in res)
    assert res[0].stats["tokens"] == 1


def test_changed_setting_reruns_stage_and_dependents_only(tmp_path):
    calls = []
    _graph(tmp_path, calls).run()
    calls.clear()
    _graph(tmp_path, calls, settings={"b": {"lr": 2}}).run()
    assert calls == ["b", "d"]
    assert (tmp_path / "b.stale-1" / "result.txt").exists()  # old output kept aside, never mixed


def test_interrupted_stage_resumes_in_place(tmp_path):
    calls = []
    with pytest.raises(KeyboardInterrupt):
        _graph(tmp_path, calls, fail_at="c").run()
    assert calls == ["a", "b", "c"]
    g = _graph(tmp_path, [])
    assert g.status("c") == "partial" and g.status("d") == "todo"
    calls.clear()
    _graph(tmp_path, calls).run()
    assert calls == ["c", "d"]
    assert (tmp_path / "c" / "partial.txt").exists()  # same directory: the stage resumes its own work


def test_force_redoes_stage_and_downstream(tmp_path):
    calls = []
    _graph(tmp_path, calls).run()
    calls.clear()
    g = _graph(tmp_path, calls)
    assert g.invalidate(["c"]) == ["c", "d"]
    g.run()
    assert calls == ["c", "d"]


def test_until_runs_only_what_is_needed(tmp_path):
    calls = []
    _graph(tmp_path, calls).run(until="b")
    assert calls == ["a", "b"]


def test_bad_graph_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="declared before"):
        StageGraph(tmp_path, [Stage("b", lambda o, i: None, deps=("a",))])
    with pytest.raises(ValueError, match="unknown stage"):
        _graph(tmp_path, []).invalidate(["zzz"])
