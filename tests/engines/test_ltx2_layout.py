"""The LTX-2 engine package stays readable: no module over 500 lines, no import cycle among
its modules (imports inside functions included), and torch only below the package's names.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "runbase" / "engines" / "ltx2"
PREFIX = "runbase.engines.ltx2"


def imports_of(path: Path) -> set[str]:
    """The package's modules `path` imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PREFIX):
            found.add(node.module.removeprefix(PREFIX).lstrip(".") or "__init__")
        elif isinstance(node, ast.Import):
            found.update(
                alias.name.removeprefix(PREFIX).lstrip(".")
                for alias in node.names
                if alias.name.startswith(PREFIX + ".")
            )
    return found


def test_no_module_is_over_500_lines() -> None:
    lengths = {p.name: len(p.read_text().splitlines()) for p in PACKAGE.glob("*.py")}
    assert len(lengths) > 10
    assert max(lengths.values()) <= 500, lengths


def test_no_import_cycle() -> None:
    graph = {p.stem: imports_of(p) - {p.stem} for p in PACKAGE.glob("*.py")}
    graph["__init__"] -= {"__init__"}
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        if state.get(module) == "done":
            return
        assert state.get(module) != "open", " -> ".join([*path, module])
        state[module] = "open"
        for imported in sorted(graph.get(module, ())):
            visit(imported, [*path, module])
        state[module] = "done"

    for module in sorted(graph):
        visit(module, [])
    assert "engine" in graph["rank_process"] and "rank_process" not in graph["engine"]
