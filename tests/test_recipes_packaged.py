"""The pipeline recipes ship in the package: `astro demo` and `astro pipeline <name>` work outside the repo."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from astro_reasoner.cli import main
from astro_reasoner.config import ConfigError
from astro_reasoner.pipeline.launch import parse_launcher
from astro_reasoner.pipeline.recipes import RECIPES_DIR, recipe_names, resolve_recipe

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
RECIPE_FILES = sorted(p.relative_to(CONFIGS) for p in CONFIGS.rglob("*") if p.is_file())


def test_packaged_recipes_are_the_repository_configs():
    assert {"demo", "mini-countdown", "mini-math", "llama3.1-8b", "llama3.1-70b"} <= set(recipe_names())
    assert Path("accelerate/multi_gpu.yaml") in RECIPE_FILES
    for rel in RECIPE_FILES:
        assert (RECIPES_DIR / rel).read_bytes() == (CONFIGS / rel).read_bytes(), rel


def test_recipe_names_resolve_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for arg in ("mini-countdown", "mini-countdown.yaml", "configs/mini-countdown.yaml"):
        assert resolve_recipe(arg) == RECIPES_DIR / "mini-countdown.yaml"
    (tmp_path / "demo").write_text("run_dir: mine\n")
    assert resolve_recipe("demo") == Path("demo")  # an existing file wins over the recipe name
    with pytest.raises(ConfigError, match="neither a file nor a packaged recipe.*mini-countdown"):
        resolve_recipe("mini-countdwn")
    spec = parse_launcher({"kind": "accelerate", "config_file": "configs/accelerate/multi_gpu.yaml"})
    assert Path(spec.config_file) == RECIPES_DIR / "accelerate" / "multi_gpu.yaml"


def test_pipeline_status_by_recipe_name_outside_the_repo(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["pipeline", "mini-countdown", "--status", f"run_dir={tmp_path / 'x'}"]) == 0
    out = capsys.readouterr().out
    assert "warm-start" in out and "eval-rl-astro" in out
    assert main(["pipeline", "nope", "--status"]) == 1
    assert "recipes demo, " in capsys.readouterr().err


def test_help_names_existing_configs_and_says_how_relative_paths_resolve(capsys):
    assert main(["demo", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    default = re.search(r"\[default: ([^\]]+)\]", out).group(1)
    assert resolve_recipe(default).is_file()
    assert main(["pipeline", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert "mini-countdown" in out and "relative to the working directory" in out


def test_wheel_and_sdist_carry_the_recipes(tmp_path):
    src = tmp_path / "src"  # a copy: building in the repository would leave build/ and *.egg-info there
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "configs", src / "configs")
    shutil.copytree(REPO / "src", src / "src", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("astro_reasoner-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        for rel in RECIPE_FILES:
            assert zf.read(f"astro_reasoner/recipes/{rel.as_posix()}") == (CONFIGS / rel).read_bytes(), rel
    # the sdist too (a wheel built from it must carry them as well): the symbolic link becomes real files
    proc = subprocess.run([sys.executable, "-c", "import sys; from setuptools import build_meta; "
                           "print(build_meta.build_sdist(sys.argv[1]))", str(tmp_path / "sdist")],
                          cwd=src, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    sdist = tmp_path / "sdist" / proc.stdout.strip().splitlines()[-1]
    with tarfile.open(sdist) as tf:
        members = {m.name.split("/", 1)[-1]: m for m in tf.getmembers()}
        for rel in RECIPE_FILES:
            member = members[f"src/astro_reasoner/recipes/{rel.as_posix()}"]
            assert member.isfile() and tf.extractfile(member).read() == (CONFIGS / rel).read_bytes(), rel
