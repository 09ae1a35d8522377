"""`run_eval` end to end: tiny model through the hf backend, resume after an interruption, the CLI, and
a scripted Policy (test double of the Protocol) whose outputs have known scores and behaviour."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest

from astro_reasoner.config import ConfigError
from astro_reasoner.evaluate.config import EvalConfig
from astro_reasoner.evaluate.run import SAMPLES, read_samples, run_eval
from astro_reasoner.types import Completion, GenParams

PROBLEMS = [{"id": f"q{i}", "problem": f"What is {i} + {i}?", "answer": str(2 * i), "source": "toy"}
            for i in range(1, 4)]


@pytest.fixture()
def problems_file(tmp_path) -> Path:
    path = tmp_path / "toy.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PROBLEMS))
    return path


class Interrupting:
    """Wraps a Policy and raises KeyboardInterrupt on call number ``at`` (a user pressing Ctrl-C)."""

    def __init__(self, policy, at: int):
        self.policy, self.at, self.calls = policy, at, 0
        self.name, self.deterministic = policy.name, policy.deterministic
        self.model_path = getattr(policy, "model_path", None)

    def generate(self, prompts, params):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return self.policy.generate(prompts, params)

    def __getattr__(self, name):
        return getattr(self.policy, name)


def _keys(records):
    return Counter((r["dataset"], r["problem_id"], r["sample"]) for r in records)


def test_tiny_model_run_resumes_after_interrupt(tiny_model_dir, problems_file, tmp_path):
    from astro_reasoner.backends import make_backend

    policy = make_backend("hf", str(tiny_model_dir), batch_size=8)
    cfg = EvalConfig(datasets=[str(problems_file)], n=2, k=2, max_tokens=6, temperature=1.0, bootstrap=50,
                     batch_size=2)
    out = tmp_path / "eval"
    with pytest.raises(KeyboardInterrupt):
        run_eval(None, out, cfg, policy=Interrupting(policy, at=2), progress=False)
    first = read_samples(out)
    assert len(first) == 4  # the first call (2 problems x 2 samples) was saved before the interruption
    with (out / SAMPLES).open("a") as fh:
        fh.write('{"dataset": "toy", "problem_id": "q3", "sam')  # a write torn by a crash
    counting = Interrupting(policy, at=-1)
    summary = run_eval(None, out, cfg, policy=counting, progress=False)
    assert counting.calls == 1 and summary["run"]["new_samples"] == 2  # only q3's two samples
    records = read_samples(out)
    assert _keys(records) == Counter({("toy", f"q{i}", j): 1 for i in (1, 2, 3) for j in (0, 1)})
    assert records[:4] == first  # finished samples are kept, not redone
    assert summary["datasets"]["toy"]["problems"] == 3 and summary["overall"]["samples"] == 6
    assert set(records[0]) >= {"text", "tokens", "answer", "verdict", "steps", "reflections", "backtracks",
                               "gold", "seed", "finish_reason"}
    assert all(r["tokens"] <= 6 for r in records)
    assert (out / "summary.md").read_text().count("| toy |") == 3  # the table, then correct / wrong rows

    # raising n later only adds the new sample indices
    more = run_eval(None, out, EvalConfig(**{**cfg.__dict__, "n": 3}), policy=policy, progress=False)
    assert more["run"]["new_samples"] == 3 and more["overall"]["samples"] == 9
    # other generation settings must not be mixed into the same directory
    with pytest.raises(ConfigError, match="temperature"):
        run_eval(None, out, EvalConfig(**{**cfg.__dict__, "temperature": 0.7}), policy=policy, progress=False)
    policy.close()


def test_cli_eval_end_to_end(tiny_model_dir, problems_file, tmp_path, capsys):
    from astro_reasoner.cli import main

    out = tmp_path / "cli-eval"
    argv = ["eval", "--model", str(tiny_model_dir), "--datasets", str(problems_file), "--n", "2", "--k", "1",
            "--limit", "2", "--out", str(out), "max_tokens=4", "bootstrap=20", "-b", "batch_size=4"]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["datasets"]["toy"]["problems"] == 2 and summary["k"] == 1
    assert "pass@1" in capsys.readouterr().out
    # what lighteval records besides scores: revision, dtype, start/end, the first rendered prompt
    assert summary["model_revision"].startswith("weights:") and summary["dtype"] == "float32"
    assert summary["run"]["started"] <= summary["run"]["finished"] and summary["run"]["started"].endswith("+00:00")
    first = summary["first_prompt"]
    assert first["problem_id"] == "q1" and "What is 1 + 1?" in first["prompt"] and "<|im_start|>" in first["prompt"]
    assert main(argv) == 0  # a finished run re-summarizes without generating
    assert json.loads((out / "summary.json").read_text())["run"]["new_samples"] == 0
    assert main(["eval", "--model", "x", "--out", str(out), "--n", "2", "--k", "4"]) == 1
    assert "k=4 with n=2" in capsys.readouterr().err


class Scripted:
    """A Policy test double: answers each prompt with fixed texts, cycling through them."""

    name, deterministic = "scripted", True

    def __init__(self, outputs: dict[str, list[str]]):
        self.outputs = outputs

    def apply_chat_template(self, messages: Sequence[dict[str, str]], continue_text: str = "") -> str:
        return messages[-1]["content"] + "\n" + continue_text

    def generate(self, prompts: Sequence[str], params: GenParams) -> list[list[Completion]]:
        res = []
        for p in prompts:
            texts = next(v for k, v in self.outputs.items() if k in p)
            res.append([Completion(texts[j % len(texts)], 10 * (j + 1), 0.0, "eos") for j in range(params.n)])
        return res

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def close(self) -> None:
        pass


ASTRO_STYLE = ("2 + 2 = 5.\n\nThe answer is 5.\n\n"
               "But wait, are we solving the problem correctly so far? Hmm, I think I made a mistake.\n\n"
               "Let's go back to where we had \"2 + 2 = 5\" and try a different approach.\n\n"
               "2 + 2 = 4.\n\nThe answer is \\boxed{4}.")


def test_scores_and_behaviour_with_known_outputs(problems_file, tmp_path):
    outputs = {"1 + 1": ["\\boxed{2}", "\\boxed{2.0}", "\\boxed{3}", "\\boxed{3}"],  # equivalent 2 and 2.0
               "2 + 2": [ASTRO_STYLE, "no idea"],
               "3 + 3": ["\\boxed{7}"]}
    cfg = EvalConfig(datasets=[str(problems_file)], n=4, k=4, max_tokens=64, bootstrap=100, seed=1)
    s = run_eval(None, tmp_path / "e", cfg, policy=Scripted(outputs), progress=False)
    toy = s["datasets"]["toy"]
    assert toy["pass@1"] == pytest.approx((2 / 4 + 2 / 4 + 0) / 3)
    assert toy["maj@4"] == pytest.approx((1 + 1 + 0) / 3)  # q1: {2, 2.0} ties {3, 3}; 2 seen first
    assert toy["pass@4"] == pytest.approx(2 / 3)
    assert toy["mean_tokens"] == pytest.approx(25.0)
    beh = toy["behaviour"]
    assert beh["correct"]["outputs"] == 4 and beh["wrong"]["outputs"] == 8
    assert beh["correct"]["backtracks"] == pytest.approx(0.5) and beh["wrong"]["backtracks"] == 0
    assert beh["all"]["backtrack_share"] == pytest.approx(2 / 12)
    astro = [r for r in read_samples(tmp_path / "e") if r["text"] == ASTRO_STYLE]
    assert {(r["steps"], r["reflections"], r["backtracks"], r["verdict"]) for r in astro} == {(4, 1, 1, "correct")}
    again = run_eval(None, tmp_path / "e", cfg, policy=Scripted(outputs), progress=False)
    assert again["datasets"]["toy"]["pass@1_ci95"] == toy["pass@1_ci95"]  # same seed, same interval


def test_model_revision_is_the_hub_commit_else_a_weights_hash(tmp_path):
    import os
    import types

    from astro_reasoner.evaluate.metadata import model_dtype, model_revision

    hub = types.SimpleNamespace(model=types.SimpleNamespace(config=types.SimpleNamespace(_commit_hash="c0ffee"),
                                                            dtype="torch.bfloat16"))
    assert model_revision(hub, "org/name") == ("c0ffee", "hub commit") and model_dtype(hub) == "bfloat16"
    snap = tmp_path / "models--org--name" / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (snap / "model.safetensors").write_bytes(b"x")
    assert model_revision(types.SimpleNamespace(), str(snap)) == ("a" * 40, "hub commit")
    local = tmp_path / "ckpt"
    local.mkdir()
    (local / "model.safetensors").write_bytes(b"weights")
    (local / "config.json").write_text("{}")
    first, how = model_revision(types.SimpleNamespace(model_path=str(local)), "my-model")
    assert first.startswith("weights:") and "sizes and mtimes" in how
    (local / "config.json").write_text('{"a": 1}')  # not a weight file: same revision
    assert model_revision(types.SimpleNamespace(), str(local))[0] == first
    (local / "model.safetensors").write_bytes(b"trained")
    os.utime(local / "model.safetensors", ns=(1, 1))
    assert model_revision(types.SimpleNamespace(), str(local))[0] != first
    served = types.SimpleNamespace(name="openai")
    assert model_revision(served, "served-name")[0] is None and model_dtype(served) is None
