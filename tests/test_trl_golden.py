"""The stage configs, now TRL's own config classes, build for every packaged recipe the TrainingArguments that
the one-by-one mapping of e2d60b7 built (tests/golden/trl_configs.json, made by tests/golden/dump_trl_configs.py
at that commit): the refactor of issue 13 changes no training run.

Each recipe section (sft, rl, warm_start.sft; as the recipes were then, stored in the file's ``inputs``) is
built as the pipeline builds it, on the three hosts the golden
file simulates (a CPU without / with native bfloat16, a bf16 GPU). Compared: every key of the golden
``to_dict()`` (the new configs have more keys: ours), except

- ``vllm_mode`` when ``use_vllm`` is false: e2d60b7 passed no vLLM option then, so TRL's default ``colocate``
  stood; ours is ``server`` (the user-facing default when vLLM is on), and nothing reads it without vLLM;
- ``report_to`` when tensorboard's presence differs from the machine that made the file (``auto`` follows it).

A section e2d60b7 refused on a host (vLLM on CPU) must now build (``astro pipeline --plan`` describes such a
config anywhere) and be refused with the same message when a run starts (``runtime.check_runtime``).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("trl")

from astro_reasoner.config import ConfigError, build_config  # noqa: E402
from astro_reasoner.train import runtime  # noqa: E402
from astro_reasoner.train.trl_configs import RLStageConfig, SFTStageConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
GOLDEN = json.loads((REPO / "tests" / "golden" / "trl_configs.json").read_text())
CASES = [(host, recipe, section) for host, recipes in GOLDEN["hosts"].items()
         for recipe, sections in recipes.items() for section in sections]


def simulate(monkeypatch, host: str) -> None:
    import transformers.training_args as ta

    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: host == "cpu-bf16")
    monkeypatch.setattr(runtime, "cpu_has_amx", lambda: host == "cpu-bf16")  # the golden's bf16 host had AMX
    monkeypatch.setattr(runtime, "cuda_available", lambda: host == "gpu-bf16")
    monkeypatch.setattr(runtime, "cuda_has_bf16", lambda: host == "gpu-bf16")
    if host == "gpu-bf16":  # TrainingArguments' own bf16 check passes; the device stays this machine's CPU
        monkeypatch.setattr(ta, "is_torch_bf16_gpu_available", lambda: True)


def stage_config(recipe: str, section: str):
    """The section's config, built as pipeline/stages.py and pipeline/warm_start.py build it, from the recipe
    section as it was when the golden file was made (``inputs``: later edits of a recipe do not move the pin)."""
    inputs = GOLDEN["inputs"][recipe]
    values, seed = inputs["sections"][section], inputs["seed"]
    paths = GOLDEN["paths"]
    if section == "rl":
        cls, fixed = RLStageConfig, {"prompts": paths["prompts"]}
    else:
        cls, fixed = SFTStageConfig, {"data": paths["data"]}
    fixed.update(model=paths["model"], output_dir=paths["out_dir"], seed=seed)
    return build_config(cls, {**values, **fixed}, where=section)


@pytest.mark.parametrize("host, recipe, section", CASES, ids=["/".join(c) for c in CASES])
def test_recipe_builds_the_trl_config_of_e2d60b7(monkeypatch, host, recipe, section):
    simulate(monkeypatch, host)
    golden = GOLDEN["hosts"][host][recipe][section]
    cfg = stage_config(recipe, section)
    if "refused" in golden:
        with pytest.raises(ConfigError) as err:
            runtime.check_runtime(cfg)
        assert str(err.value) == golden["refused"]
        return
    runtime.check_runtime(cfg)  # accepted at run time too
    now = json.loads(json.dumps(cfg.to_dict(), default=str))
    skip = set()
    if not golden.get("use_vllm"):
        skip.add("vllm_mode")
    if GOLDEN["made_with"]["tensorboard_installed"] != (importlib.util.find_spec("tensorboard") is not None):
        skip.add("report_to")
    diff = {k: (v, now.get(k, "<missing>")) for k, v in golden.items() if k not in skip and now.get(k) != v}
    assert diff == {}, f"{recipe} [{section}] on {host}: key: (e2d60b7, now)"
