"""Every module of runbase stays readable: none over 500 lines, and no import cycle among
them. An import counts wherever it is written: at the top, inside a function (a lazy import
still ties the two modules together) or under `if TYPE_CHECKING:`.

Importing `a.b.c` also runs `a/__init__.py` and `a/b/__init__.py`, so those count as
imported too, except for a module's own packages: they have begun running before it does,
so they count only where it reads a name defined in their `__init__`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "runbase"
MAX_LINES = 500


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}


def absolute(module: str, level: int, importer: str, is_package: bool) -> str:
    """The absolute name of `from <level dots><module> import ...` written in `importer`."""
    if level == 0:
        return module
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def named_imports(tree: ast.AST, importer: str, is_package: bool) -> Iterator[str]:
    """Every dotted name the module imports, at any depth of its code: `import a.b` gives
    `a.b`; `from a import b, c` gives `a.b` and `a.c` (each a module or a name in `a`)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = absolute(node.module or "", node.level, importer, is_package)
            yield from (f"{base}.{alias.name}" for alias in node.names)


def import_graph() -> dict[str, set[str]]:
    """Module -> the runbase modules its import runs (directly)."""
    modules = all_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        # The packages above a module have begun running before it does.
        running = {".".join(name.split(".")[:d]) for d in range(1, name.count(".") + 1)}
        targets: set[str] = set()
        for imported in named_imports(tree, name, path.name == "__init__.py"):
            parts = imported.split(".")
            # The longest prefix that is a module: `a.b.name` is a name in module `a.b`.
            depth = next((d for d in range(len(parts), 0, -1) if ".".join(parts[:d]) in modules), 0)
            if not depth:
                continue
            target = ".".join(parts[:depth])
            # Importing a module runs the packages above it first, except those already
            # running; a name read from a running package's __init__ is still an edge.
            targets.add(target)
            targets.update(
                package
                for package in (".".join(parts[:d]) for d in range(1, depth))
                if package in modules and package not in running
            )
        targets.discard(name)
        graph[name] = targets
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as a
    sorted list: every module in one can reach every other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph[module]):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return components


def one_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """The shortest loop through the component's first module, to show in a failure."""
    members = set(component)
    start = component[0]
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for module in frontier:
            for imported in sorted(graph[module] & members):
                if imported == start:
                    loop = [start, module]
                    while loop[-1] != start:
                        loop.append(came_from[loop[-1]])
                    return loop[::-1]
                if imported not in came_from:
                    came_from[imported] = module
                    following.append(imported)
        frontier = following
    raise AssertionError(f"no loop through {start}")


def test_no_module_is_over_500_lines() -> None:
    lengths = {name: len(path.read_text().splitlines()) for name, path in all_modules().items()}
    assert len(lengths) > 100
    too_long = {name: n for name, n in lengths.items() if n > MAX_LINES}
    assert not too_long, too_long


def test_no_import_cycle() -> None:
    graph = import_graph()
    cycles = find_cycles(graph)
    assert not cycles, "\n".join(" -> ".join(one_cycle(graph, c)) for c in cycles)


def test_the_graph_sees_every_kind_of_import() -> None:
    """The checks above are only as good as the graph: it must see relative imports,
    `from package import module`, imports inside functions and the packages above."""
    graph = import_graph()
    assert "runbase.engines.ltx2.engine" in graph["runbase.engines.ltx2.rank_process"]
    assert "runbase.storage" not in graph["runbase.storage.db"]
    # Ancestors of what is imported, unless they are the importer's own.
    assert "runbase.engines" in graph["runbase.dispatch.executor"]
    toy = {"a": {"b", "d"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert find_cycles(toy) == [["a", "b", "c"]]
    assert one_cycle(toy, ["a", "b", "c"]) == ["a", "b", "c", "a"]
    tree = ast.parse("def f():\n    from .x import y\n    import runbase.z\n")
    names = set(named_imports(tree, "runbase.pkg.mod", is_package=False))
    assert names == {"runbase.pkg.x.y", "runbase.z"}
