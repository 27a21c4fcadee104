"""House rule 1: dependencies point one way, bot -> services -> (httpx, aiosqlite)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_IN_SERVICES = {"aiogram", "discord", "bot", "pydantic_settings"}


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


SERVICE_FILES = sorted((ROOT / "services").rglob("*.py"))


@pytest.mark.parametrize("path", SERVICE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_services_import_no_frontend(path: Path) -> None:
    bad = _imported_roots(path) & FORBIDDEN_IN_SERVICES
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_the_scan_sees_imports(tmp_path: Path) -> None:
    # Guard against a scanner that silently finds nothing.
    sample = tmp_path / "x.py"
    sample.write_text("import aiogram\nfrom discord.ext import commands\nfrom bot.config import Settings\n")
    assert _imported_roots(sample) >= {"aiogram", "discord", "bot"}


def test_no_grab_bag_modules() -> None:
    names = {p.stem for p in ROOT.glob("*/**/*.py") if ".venv" not in p.parts}
    assert not names & {"utils", "helpers", "misc", "manager"}


def test_sandbox_and_bot_not_imported_by_services() -> None:
    for path in SERVICE_FILES:
        assert "sandbox" not in _imported_roots(path), path


# --- the module import graph -------------------------------------------------------------------------------

GRAPH_PACKAGES = ("bot", "services", "sandbox")
# Who may import the emulators: the CLI commands that start them (besides sandbox/, tests and bench).
SANDBOX_IMPORTERS = {"bot.cli.demo", "bot.cli.sandbox"}


def _module_files() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for package in GRAPH_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import that runs: at module level and inside functions, not in `if TYPE_CHECKING:` blocks."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            # Annotations only (never executed): no import-time order and no coupling at run time.
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Each module of bot/ services/ sandbox/ to the modules of those packages it imports."""

    def owner(name: str) -> str | None:
        # `from a.b import c` names module a.b.c if it exists, else a name inside a.b.
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        deps: set[str] = set()
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package
                    for _ in range(node.level - 1):
                        anchor = anchor.rpartition(".")[0]
                    base = f"{anchor}.{base}" if base else anchor
                targets = [f"{base}.{alias.name}" for alias in node.names]
            deps.update(found for target in targets if (found := owner(target)) is not None)
        # A submodule importing its own package's __init__ is Python's import order, not a cycle.
        deps -= {module, *(module.rsplit(".", n)[0] for n in range(1, module.count(".") + 1))}
        graph[module] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in sorted(graph.get(node, ())):
            if dep not in index:
                connect(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            group: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_no_import_cycles() -> None:
    graph = import_graph(_module_files())
    found = cycles(graph)
    detail = "\n".join(
        f"{group}: " + "; ".join(f"{m} -> {sorted(graph[m] & set(group))}" for m in group) for group in found
    )
    assert not found, f"import cycles:\n{detail}"


def test_the_graph_sees_cycles_and_hidden_imports(tmp_path: Path) -> None:
    # A cycle closed by an import inside a function still counts; one under TYPE_CHECKING does not.
    (tmp_path / "a.py").write_text("import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from a import x\n")
    (tmp_path / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a\n")
    modules = {name: tmp_path / f"{name}.py" for name in ("a", "b", "c")}
    graph = import_graph(modules)
    assert graph == {"a": {"b"}, "b": {"a"}, "c": set()}
    assert cycles(graph) == [["a", "b"]]


def test_only_the_sandbox_commands_import_the_sandbox() -> None:
    graph = import_graph(_module_files())
    importers = {
        module
        for module, deps in graph.items()
        if not module.startswith("sandbox") and any(dep.split(".")[0] == "sandbox" for dep in deps)
    }
    assert importers <= SANDBOX_IMPORTERS, f"{sorted(importers - SANDBOX_IMPORTERS)} import sandbox"
    assert importers, "the scan found no importer at all"


def test_the_graph_covers_the_sandbox() -> None:
    # The emulators are in the cycle scan too: every module of sandbox/ is a node, their imports are edges.
    modules = _module_files()
    graph = import_graph(modules)
    sandbox_modules = {m for m in modules if m.split(".")[0] == "sandbox"}
    assert {"sandbox.faults", "sandbox.telegram.wire", "sandbox.discord.rest"} <= sandbox_modules
    assert sandbox_modules <= set(graph)
    assert "sandbox.faults" in graph["sandbox.base"] and "sandbox.base" in graph["sandbox.tiktok"]
