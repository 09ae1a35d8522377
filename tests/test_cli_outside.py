"""A new user's first hour with the CLI: one line naming a missing extra, the same short flags on every command,
TRL-style flags and "did you mean" for config keys, and `astro check` exit codes that say the verdict."""

from __future__ import annotations

import sys

import pytest
import typer

from astro_reasoner.cli import app, command_name, main
from astro_reasoner.config import flag_overrides
from astro_reasoner.extras import MissingExtra, missing_extra_of


def _commands(cmd=None, path=("astro",)):
    cmd = cmd or typer.main.get_command(app)
    subs = getattr(cmd, "commands", None)
    if subs is None:
        yield " ".join(path), cmd
        return
    for name, sub in subs.items():
        yield from _commands(sub, (*path, name))


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.jsonl").write_text('{"problem": "1+1?", "answer": "2"}\n')
    return tmp_path


# ------------------------------------------------------------------------------------------- missing extras

@pytest.mark.parametrize("module, argv, command, extra", [
    ("trl", ["sft", "--data", "d.jsonl", "--model", "m", "--out", "o"], "astro sft", "train"),
    ("trl", ["rl", "train", "--prompts", "d.jsonl", "--model", "m", "--out", "o"], "astro rl train", "train"),
    ("peft", ["sft", "--data", "d.jsonl", "--model", "m", "--out", "o", "lora=true"], "astro sft", "train"),
    ("ray", ["search", "--problems", "d.jsonl", "--out", "o", "--workers", "2"], "astro search", "ray"),
    ("ctranslate2", ["eval", "--model", "m", "--backend", "ct2", "--datasets", "d.jsonl", "--out", "o"],
     "astro eval", "ct2"),
    ("trl", ["pipeline", "demo", "run_dir=run"], "astro pipeline", "train"),
])
def test_a_missing_extra_is_one_line_naming_it(workdir, monkeypatch, capsys, module, argv, command, extra):
    monkeypatch.setitem(sys.modules, module, None)  # as if the package were not installed
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == f"error: {command} needs the {extra} extra: pip install 'astro-reasoner[{extra}]'\n"
    assert not (workdir / "run").exists() and not (workdir / "o").exists()  # refused before any write


def test_a_pipeline_serving_with_llama_cpp_python_needs_the_server_extra(workdir, monkeypatch, capsys):
    (workdir / "p.yaml").write_text(
        "run_dir: run\nbackend: openai\nmodel: m\n"
        "server: {command: '{python} -m llama_cpp.server --model {gguf} --model_alias {model} --port {port}'}\n"
        "data: {train: {synth: {n: 2}}, test: {synth: {n: 2, seed: 1}}}\n")
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    assert main(["pipeline", "p.yaml", "--status"]) == 0  # looking needs nothing
    capsys.readouterr()
    assert main(["pipeline", "p.yaml"]) == 2
    assert capsys.readouterr().err == ("error: astro pipeline needs the server extra: "
                                       "pip install 'astro-reasoner[server]'\n")
    assert not (workdir / "run").exists()


def test_an_extra_module_missing_deeper_down_is_named_too():
    deep = ModuleNotFoundError("No module named 'peft'", name="peft.tuners")
    assert missing_extra_of(deep).line("astro rl") == ("astro rl needs the train extra: "
                                                       "pip install 'astro-reasoner[train]'")
    assert missing_extra_of(ModuleNotFoundError("x", name="numpy")) is None
    assert isinstance(missing_extra_of(MissingExtra("ray", "ray")), MissingExtra)
    assert command_name(["rl", "--prompts", "p"]) == "astro rl" and command_name(["--help"]) == "astro"


# ------------------------------------------------------------------------------------------------- flags

def test_short_flags_mean_the_same_on_every_command():
    seen = set()
    for name, cmd in _commands():
        for param in cmd.params:
            opts = set(param.opts) | set(param.secondary_opts)
            if "-b" in opts or "--backend-option" in opts:
                assert {"-b", "--backend-option"} <= opts, (name, param.opts)
                seen.add("-b")
            if "-o" in opts or "--out" in opts:
                assert {"-o", "--out"} <= opts, (name, param.opts)
                seen.add("-o")
    assert seen == {"-b", "-o"}


def test_generate_takes_b_as_backend_option(capsys):
    assert main(["generate", "-p", "1+1?", "--model", "m", "-b", "bogus=1"]) == 1
    assert "unknown option(s) bogus for backend 'hf'" in capsys.readouterr().err


def test_trl_style_flags_are_config_overrides():
    assert flag_overrides(["--learning_rate", "1e-5", "--max-steps=3", "--lora", "lora_r=8", "--reward_wrong",
                           "-1", "--packing"]) == ["learning_rate=1e-5", "max_steps=3", "lora=true", "lora_r=8",
                                                  "reward_wrong=-1", "packing=true"]


def test_sft_and_rl_accept_trl_style_flags(workdir, monkeypatch, capsys):
    import astro_reasoner.train.grpo as grpo
    import astro_reasoner.train.sft as sft

    got = {}
    monkeypatch.setattr(sft, "run_sft", lambda data, out, cfg: {"checkpoint": got.setdefault("sft", cfg).output_dir})
    monkeypatch.setattr(grpo, "run_grpo", lambda prompts, out, cfg: {"checkpoint": got.setdefault("rl", cfg).output_dir})
    assert main(["sft", "--data", "d.jsonl", "--model", "m", "--learning_rate", "1e-5", "-o", "o",
                 "--num-train-epochs=2", "--lora"]) == 0
    assert (got["sft"].learning_rate, got["sft"].num_train_epochs, got["sft"].lora) == (1e-5, 2, True)
    assert main(["rl", "--prompts", "d.jsonl", "--learning_rate", "2e-6", "--model", "m", "-o", "o"]) == 0
    assert got["rl"].learning_rate == 2e-6
    capsys.readouterr()
    assert main(["sft", "--data", "d.jsonl", "--model", "m", "-o", "o", "--learning_rat", "1e-5"]) == 1
    assert "unknown key(s) learning_rat (did you mean learning_rate?)" in capsys.readouterr().err


def test_unknown_keys_suggest_the_closest(capsys):
    assert main(["pipeline", "demo", "--status", "serach.iterations=3"]) == 1
    assert "unknown key(s) serach (did you mean search?)" in capsys.readouterr().err
    assert main(["pipeline", "demo", "--status", "search.iteratons=3"]) == 1
    assert "iteratons (did you mean iterations?)" in capsys.readouterr().err
    assert main(["generate", "-p", "x", "-b", "batch_sise=2"]) == 1
    assert "batch_sise (did you mean batch_size?)" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- astro check

@pytest.mark.parametrize("completion, verdict, code", [
    ("so \\boxed{1,000}", "correct", 0),
    ("so \\boxed{999}", "wrong", 1),
    ("no idea", "unparseable", 1),
])
def test_check_exit_code_is_the_verdict(capsys, completion, verdict, code):
    assert main(["check", "--gold", "1000", "--completion", completion]) == code
    assert f"verdict:   {verdict}" in capsys.readouterr().out


def test_check_help_documents_the_exit_codes(capsys):
    assert main(["check", "--help"]) == 0
    assert "0 correct; 1 wrong or unparseable" in " ".join(capsys.readouterr().out.split())
