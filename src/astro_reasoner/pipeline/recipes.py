"""Recipes: the pipeline configs that ship with the package (``astro pipeline mini-countdown``).

In the repository they live in ``configs/`` (``configs/*.yaml`` and ``configs/accelerate/*``);
``src/astro_reasoner/recipes`` is a symbolic link to that directory, so the wheel and the sdist carry the same
files as package data (pyproject.toml ``package-data``) and an installed ``astro`` finds them without the
source tree. A name is resolved only when no file of that name exists: a path always wins.

Relative paths *inside* a recipe (``run_dir: runs/demo``, mini-math's ``data_dir: ../shared/data``, a
``launcher.config_file``) are read from the directory ``astro`` runs in, not from where the recipe file lies.
"""

from __future__ import annotations

from pathlib import Path

from ..config import ConfigError

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"


def recipe_names() -> list[str]:
    """The packaged pipeline recipes, by name (``demo``, ``mini-countdown``, ...)."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def packaged_file(path: str | Path) -> Path | None:
    """The packaged copy of a repository path under ``configs/`` (``configs/accelerate/fsdp.yaml``), or None."""
    parts = Path(path).parts
    if len(parts) < 2 or parts[0] != "configs" or ".." in parts:
        return None
    candidate = RECIPES_DIR.joinpath(*parts[1:])
    return candidate if candidate.is_file() else None


def resolve_recipe(arg: str | Path) -> Path:
    """``arg`` itself when that file exists; else the packaged recipe it names: ``mini-countdown``,
    ``mini-countdown.yaml`` or ``configs/mini-countdown.yaml`` (the repository path, from any directory)."""
    path = Path(arg)
    if path.exists():
        return path
    if len(path.parts) == 1:
        name = path.name[:-5] if path.name.endswith(".yaml") else path.name
        candidate = RECIPES_DIR / f"{name}.yaml"
        if candidate.is_file():
            return candidate
    found = packaged_file(path)
    if found is not None:
        return found
    raise ConfigError(f"pipeline config {arg} not found: it is neither a file nor a packaged recipe; give a YAML "
                      f"file or one of the recipes {', '.join(recipe_names()) or '(none installed)'}")


def recipes_help() -> str:
    """One paragraph for `astro pipeline --help`: the recipe names and how their relative paths resolve."""
    names = ", ".join(recipe_names()) or "(none installed)"
    return (f"Packaged recipes (give the name instead of a file, e.g. `astro pipeline mini-countdown`): {names}. "
            "A file of that name in the working directory wins. Relative paths inside a recipe (run_dir, "
            "data.data_dir such as mini-math's ../shared/data, launcher.config_file) are relative to the working "
            "directory, not to the recipe; override them, e.g. run_dir=/tmp/x data.data_dir=/data.")
