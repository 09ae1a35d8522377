"""Imports between the package's parts go one way only (read from the source with ``ast``, nothing imported).

A unit is a subpackage (``search``, ``backends``, ...) or a top-level module (``models``, ``io``, ...). At
module level there must be no cycle at all; a cycle there is an ImportError waiting for the right import order.
Imports inside functions (kept lazy on purpose, for heavy optional dependencies) may not close the loops that
were broken by moving the shared thing down: ``models`` <-> ``backends`` and ``evaluate`` <-> ``viz``.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "astro_reasoner"


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path, module_level: bool) -> set[str]:
    """Absolute names of the astro_reasoner modules ``path`` imports."""
    rel = path.relative_to(SRC.parent).with_suffix("")
    package = list(rel.parts[:-1])  # the package a relative import starts from (also for __init__)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if module_level else list(ast.walk(tree))
    if module_level:  # `if TYPE_CHECKING:` / try-blocks at module level still run at import time
        nodes = [n for top in tree.body for n in ([top] + [c for c in ast.walk(top) if top is not c]
                                                   if isinstance(top, (ast.If, ast.Try)) else [top])]
    out = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                if node.module:
                    out.add(".".join([*base, node.module]))
                else:
                    out.update(".".join([*base, a.name]) for a in node.names)
            elif node.module:
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m == "astro_reasoner" or m.startswith("astro_reasoner.")}


def unit_graph(module_level: bool) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC.parent).with_suffix("")
        src_unit = _unit(".".join(rel.parts))
        for target in _imports(path, module_level):
            dst = _unit(target)
            if dst != src_unit:
                edges.setdefault(src_unit, set()).add(dst)
    return edges


def _reaches(edges: dict[str, set[str]], a: str, b: str) -> bool:
    seen, todo = set(), [a]
    while todo:
        for nxt in edges.get(todo.pop(), ()):
            if nxt == b:
                return True
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return False


def cycles(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted({tuple(sorted((a, b))) for a in edges for b in edges[a] if _reaches(edges, b, a)})


def test_no_import_cycle_at_module_level():
    assert cycles(unit_graph(module_level=True)) == []


def test_the_broken_loops_stay_broken_even_through_lazy_imports():
    edges = unit_graph(module_level=False)
    for low, high in (("models", "backends"), ("evaluate", "viz")):
        assert not _reaches(edges, low, high), f"{low} imports {high} again (directly or through others)"
    for leaf in ("errors", "text"):  # anyone may import these: they import nothing of ours
        assert not edges.get(leaf), f"{leaf} imports {sorted(edges[leaf])}"


def test_the_search_core_imports_no_torch_and_no_prompt_text():
    tree = ast.parse((SRC / "search" / "mcts.py").read_text(encoding="utf-8"))
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {("." * n.level) + (n.module or "") for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any(n.split(".")[0] in ("torch", "transformers") or n.endswith("prompts") for n in names), names


def test_the_checker_sees_a_cycle_when_there_is_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [("a", "b"), ("a", "c"), ("b", "c")]
