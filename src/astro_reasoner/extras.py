"""Optional extras (pyproject.toml ``[project.optional-dependencies]``): what each one provides, and the one-line
error a command gives when the extra it needs is not installed (``astro`` exits with 2, as for a usage error).

Commands check what they need before any work (``require``); ``main`` also turns a ModuleNotFoundError of an
extra's module that escapes from deeper code into the same line (``missing_extra_of``).
"""

from __future__ import annotations

import importlib.util

# extra -> the top-level modules it installs that our code imports
EXTRAS: dict[str, tuple[str, ...]] = {
    "train": ("trl", "peft"),
    "ray": ("ray",),
    "ct2": ("ctranslate2",),
    "server": ("llama_cpp",),
}
MODULE_EXTRA = {module: extra for extra, modules in EXTRAS.items() for module in modules}


class MissingExtra(ImportError):
    """An optional extra is not installed. ``str()`` says which and how to install it."""

    def __init__(self, extra: str, module: str, what: str | None = None):
        self.extra, self.module, self.what = extra, module, what
        super().__init__(self.line(), name=module)

    def line(self, command: str | None = None) -> str:
        who = command or self.what or "this"
        return f"{who} needs the {self.extra} extra: pip install 'astro-reasoner[{self.extra}]'"


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (None in sys.modules counts as missing)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module object without a spec
        return False


def require(extra: str, *modules: str, what: str | None = None) -> None:
    """Raise MissingExtra unless ``modules`` (default: all of the extra's) are importable."""
    for module in modules or EXTRAS[extra]:
        if not installed(module):
            raise MissingExtra(extra, module, what)


def missing_extra_of(exc: BaseException) -> MissingExtra | None:
    """The MissingExtra behind ``exc``: itself, or a ModuleNotFoundError of one of an extra's modules."""
    if isinstance(exc, MissingExtra):
        return exc
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        top = exc.name.split(".")[0]
        if top in MODULE_EXTRA:
            return MissingExtra(MODULE_EXTRA[top], top)
    return None
