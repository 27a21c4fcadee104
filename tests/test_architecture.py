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
