"""The package's layering: no import cycle anywhere in camleak/, and nothing imports the CLI.

Every import is read from the source with ast, function-level and conditional ones included, so
a lazy `from . import cli` inside a function counts as much as one at the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "camleak"


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """camleak module -> the camleak modules it imports (anywhere in its body)."""
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    modules = set(files)
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    stem = ".".join(base + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                targets.add(stem)
                targets.update(f"{stem}.{alias.name}" for alias in node.names)  # `from . import cli`
        found = set()
        for target in targets:
            # a submodule import also runs its packages' __init__, but those are not edges of ours:
            # take the deepest camleak module the target names
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
        graph[name] = found
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path [a, b, ..., a], or None (depth-first search, colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_no_import_cycle_in_camleak():
    graph = import_graph()
    assert len(graph) > 20 and "camleak.cli" in graph  # the scan saw the package
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_nothing_imports_the_cli():
    """The CLI is the top layer: only the entry point (`python -m camleak`) may import it."""
    importers = sorted(m for m, deps in import_graph().items() if "camleak.cli" in deps and m != "camleak.__main__")
    assert importers == []


def test_the_scan_sees_function_level_and_relative_imports(tmp_path):
    """A lazy import inside a function closes a cycle just as a top-level one does."""
    pkg = tmp_path / "camleak"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "cli.py").write_text("from .sub.low import helper\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "low.py").write_text("def helper():\n    from .. import cli\n    return cli\n")
    graph = import_graph(pkg)
    assert "camleak.cli" in graph["camleak.sub.low"]
    assert find_cycle(graph) == ["camleak.cli", "camleak.sub.low", "camleak.cli"]
    (pkg / "sub" / "low.py").write_text("def helper():\n    return 1\n")
    assert find_cycle(import_graph(pkg)) is None
