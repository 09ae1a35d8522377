"""``outdir.claim_out_dir``: the one claim of an output directory (lock, settings file, resume check), and
each stage that claims a directory refusing changed settings with its one message."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from astro_reasoner.config import ConfigError
from astro_reasoner.io import DataError, DirectoryBusy
from astro_reasoner.outdir import changed_settings, claim_out_dir

SRC = Path(__file__).resolve().parent.parent / "src"
SETTINGS = {"k": 3, "temperature": 0.7, "stops": ("a", "b"), "batch_size": 8}


def claim(out, settings=SETTINGS, **kw):
    return claim_out_dir(out, settings, settings_file="settings.json", holds="trees", **kw)


def test_first_claim_writes_the_settings_and_the_same_settings_resume(tmp_path):
    out = tmp_path / "run"
    with claim(out):
        assert json.loads((out / "settings.json").read_text()) == {**SETTINGS, "stops": ["a", "b"]}
    stamp = (out / "settings.json").stat().st_mtime_ns
    claim(out).release()  # a tuple compares equal to the list read back
    assert (out / "settings.json").stat().st_mtime_ns == stamp  # nothing rewritten


def test_a_changed_key_is_refused_naming_it(tmp_path):
    claim(tmp_path).release()
    with pytest.raises(ConfigError) as err:
        claim(tmp_path, {**SETTINGS, "k": 4, "temperature": 1.0}, overwrite_flag="--overwrite")
    msg = str(err.value)
    assert msg.startswith(f"{tmp_path} holds trees made with other settings (k: 3 -> 4, temperature: 0.7 -> 1.0; "
                          "recorded in settings.json)")
    assert "use a new output directory, restore those settings, or pass --overwrite" in msg
    assert json.loads((tmp_path / "settings.json").read_text())["k"] == 3  # the refused run wrote nothing
    with pytest.raises(ConfigError, match=r"new: None -> 1\b"):  # an added key is a change too
        claim(tmp_path, {**SETTINGS, "new": 1})
    claim(tmp_path, {**SETTINGS, "new": 1}, only_common=True).release()  # unless only common keys count


def test_ignored_keys_are_not_compared_but_recorded(tmp_path):
    claim(tmp_path, ignore=("batch_size",)).release()
    claim(tmp_path, {**SETTINGS, "batch_size": 64}, ignore=("batch_size",)).release()
    assert json.loads((tmp_path / "settings.json").read_text())["batch_size"] == 64  # describes the latest run
    with pytest.raises(ConfigError, match="batch_size: 64 -> 1"):
        claim(tmp_path, {**SETTINGS, "batch_size": 1})
    assert changed_settings({"a": 1, "b": 2}, {"a": 1, "b": 3}, ignore=("b",)) == []


def test_overwrite_resets_the_settings(tmp_path):
    claim(tmp_path).release()
    claim(tmp_path, {"k": 9}, overwrite=True).release()
    assert json.loads((tmp_path / "settings.json").read_text()) == {"k": 9}
    claim(tmp_path, {"k": 9}).release()


def test_record_under_a_key_with_a_hash_beside_it(tmp_path):
    claim(tmp_path, record={"hash": "h1", "config": SETTINGS}, under="config").release()
    with pytest.raises(ConfigError, match="k: 3 -> 4"):
        claim(tmp_path, {**SETTINGS, "k": 4}, record={"hash": "h2", "config": {**SETTINGS, "k": 4}}, under="config")
    (tmp_path / "settings.json").write_text('{"hash": "h1"}')  # only a hash on disk: the hash is compared
    with pytest.raises(ConfigError, match="hash: 'h1' -> 'h2'"):
        claim(tmp_path, {**SETTINGS, "k": 4}, record={"hash": "h2", "config": {**SETTINGS, "k": 4}}, under="config")


def test_outputs_without_settings_and_an_older_settings_file(tmp_path):
    (tmp_path / "samples.jsonl").write_text("")
    with pytest.raises(ConfigError, match="settings are unknown"):
        claim(tmp_path, outputs=("samples.jsonl",))
    old = tmp_path / "old"
    old.mkdir()
    (old / "summary.json").write_text(json.dumps({"config": {**SETTINGS, "k": 2}, "wall_seconds": 1}))
    with pytest.raises(ConfigError, match=r"k: 2 -> 3; recorded in summary\.json"):
        claim(old, record={"config": SETTINGS}, under="config", fallback_file="summary.json")
    assert not (old / "settings.json").exists()


def test_a_second_claim_from_another_process_is_busy(tmp_path):
    code = ("import sys, time; from astro_reasoner.outdir import claim_out_dir; "
            "l = claim_out_dir(sys.argv[1], {'k': 3}, settings_file='settings.json'); "
            "print('claimed', flush=True); time.sleep(60)")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "claimed"
        with pytest.raises(DirectoryBusy, match=f"pid {holder.pid}"):
            claim(tmp_path, {"k": 3})
        # a helper process of the holder's run (leader=False) compares without the lock
        claim(tmp_path, {"k": 3}, leader=False).release()
        with pytest.raises(ConfigError, match="k: 3 -> 4"):
            claim(tmp_path, {"k": 4}, leader=False)
    finally:
        holder.kill()
        holder.wait()


# ---- each claimant, through the one message ---------------------------------------------------------------

UNIFIED = r"holds {} made with other settings \({}; recorded in {}\); a resumed run must use the same settings"


def test_search_refuses_changed_settings(tmp_path):
    from astro_reasoner.search.config import SearchConfig
    from astro_reasoner.search.storage import check_settings

    cfg = SearchConfig()
    check_settings(tmp_path, cfg.search_settings(), (0, 2)).release()
    check_settings(tmp_path, cfg.search_settings(), (1, 2)).release()  # shards share the settings
    other = dataclasses.replace(cfg, k=cfg.k + 1).search_settings()
    with pytest.raises(ConfigError, match=UNIFIED.format("trees", f"k: {cfg.k} -> {cfg.k + 1}", "search_config.json")):
        check_settings(tmp_path, other)


def test_clone_refuses_changed_settings_and_ignores_batch_size(tmp_path):
    from astro_reasoner.clone import CloneConfig
    from astro_reasoner.clone.run import _check_out_dir

    _check_out_dir(tmp_path, CloneConfig(max_backtracks=1), False).release()
    stored = json.loads((tmp_path / "clone_config.json").read_text())
    assert set(stored) == {"fingerprint", "config"}  # the layout existing clone directories have
    _check_out_dir(tmp_path, CloneConfig(max_backtracks=1, batch_size=3), False).release()
    with pytest.raises(ConfigError, match=UNIFIED.format("clone outputs", "max_backtracks: 1 -> 2",
                                                         "clone_config.json") + ".*pass --overwrite"):
        _check_out_dir(tmp_path, CloneConfig(max_backtracks=2), False)
    (tmp_path / "sft.jsonl").write_text("{}\n")
    _check_out_dir(tmp_path, CloneConfig(max_backtracks=2), True).release()
    assert not (tmp_path / "sft.jsonl").exists()


def test_eval_refuses_changed_settings(tmp_path):
    from astro_reasoner.evaluate.config import EvalConfig
    from astro_reasoner.evaluate.run import _check_resume

    cfg = EvalConfig(datasets=["x"], temperature=0.6)
    _check_resume(tmp_path, cfg, "m").release()
    _check_resume(tmp_path, dataclasses.replace(cfg, n=cfg.n * 2), "m").release()  # more samples: resumes
    with pytest.raises(ConfigError, match=UNIFIED.format("samples", "model: 'm' -> 'other', temperature: 0.6 -> 1.0",
                                                         "eval_config.json")):
        _check_resume(tmp_path, dataclasses.replace(cfg, temperature=1.0), "other")
    stored = json.loads((tmp_path / "eval_config.json").read_text())
    del stored["seed"]  # a file from a version that did not record the seed still resumes
    (tmp_path / "eval_config.json").write_text(json.dumps(stored))
    _check_resume(tmp_path, dataclasses.replace(cfg, seed=cfg.seed + 1), "m").release()


def test_training_refuses_changed_settings_and_resumes_a_longer_run(tmp_path):
    from astro_reasoner.train import SFTStageConfig
    from astro_reasoner.train.common import config_hash, run_settings, start_run

    cfg = SFTStageConfig(model="m", data="x.jsonl", output_dir=str(tmp_path), learning_rate=1e-5)
    assert start_run(cfg)[:2] == (False, None)
    stored = json.loads((tmp_path / "run_config.json").read_text())
    assert stored == {"run_hash": config_hash(cfg, with_length=False), "config": run_settings(cfg)}  # the layout
    assert stored["config"]["learning_rate"] == 1e-5 and "max_length" not in stored["config"]  # non-defaults
    assert start_run(dataclasses.replace(cfg, max_steps=99, threads=1))[:2] == (False, None)
    with pytest.raises(ConfigError, match=UNIFIED.format("a training run", "learning_rate: 1e-05 -> 0.0001",
                                                         "run_config.json") + ".*overwrite=true"):
        start_run(dataclasses.replace(cfg, learning_rate=1e-4))
    with pytest.raises(ConfigError, match="learning_rate: 1e-05 -> 3e-06"):  # back to the default: shown as such
        start_run(cfg.with_changes(learning_rate=3e-6))
    (tmp_path / "train_summary.json").write_text(json.dumps({"config_hash": config_hash(cfg)}))
    assert start_run(cfg)[:2] == (True, None)  # a finished run of this config is found on top of the claim
    assert start_run(dataclasses.replace(cfg, learning_rate=1e-4, overwrite=True))[:2] == (False, None)
    assert not (tmp_path / "train_summary.json").exists()


def test_best_of_n_refuses_changed_settings(tmp_path):
    from clone_helpers import build_tree

    from astro_reasoner.clone import BestOfNConfig, run_best_of_n

    tree = build_tree([(0, "So \\boxed{7}.", "7")], gold="7", stats={})  # no budget: nothing is sampled
    (tmp_path / "trees.jsonl").write_text(json.dumps(tree.to_json()) + "\n")
    cfg, out = BestOfNConfig(model="tiny", temperature=1.0), tmp_path / "bon"
    # no policy or checker: a run with nothing to sample needs neither
    assert run_best_of_n(tmp_path / "trees.jsonl", out, cfg)["no_budget"] == 1
    run_best_of_n(tmp_path / "trees.jsonl", out, dataclasses.replace(cfg, backend="openai"))
    with pytest.raises(ConfigError, match=UNIFIED.format("best-of-N records", "temperature: 1.0 -> 0.5",
                                                         "bestofn_config.json")):
        run_best_of_n(tmp_path / "trees.jsonl", out, dataclasses.replace(cfg, temperature=0.5))


def test_overwrite_replaces_a_settings_file_that_does_not_read_as_settings(tmp_path):
    (tmp_path / "settings.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="expected a JSON object of settings"):
        claim(tmp_path)
    claim(tmp_path, overwrite=True).release()
    claim(tmp_path).release()
