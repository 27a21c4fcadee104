"""Shared end-to-end fixtures: every sandbox emulator running, and the bot's App built from their environment.

`sandbox` yields a started `sandbox.runner.Sandbox`; `settings` is `Settings` read from the sandbox's
environment plus a temporary DATABASE__PATH (never from `.env` or the developer's own variables); `app` is
`bot.wiring.build_app(settings)`, closed afterwards; `usage` reads its usage table. Each frontend keeps its
own fixtures in a module of its own, registered in a marked section at the end of this file.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest

from bot.config import Settings
from bot.wiring import App, build_app
from sandbox.runner import Sandbox

# Variables Settings reads; a developer's own values must not leak into a test.
SETTINGS_PREFIXES = (*(f"{name.upper()}__" for name in Settings.model_fields), "UPSTREAM_ROUTES")


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    """Every emulator the sandbox offers, started on loopback."""
    async with Sandbox() as running:
        yield running


@pytest.fixture
def settings_env(sandbox: Sandbox, tmp_path: Path) -> dict[str, str]:
    """The environment the bot runs with: the sandbox's, a temporary database, quick usage-log flushes."""
    return sandbox.env() | {
        "DATABASE__PATH": str(tmp_path / "tiktok-bot.sqlite3"),
        "DATABASE__FLUSH_MS": "20",
    }


@pytest.fixture
def settings(settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings from `settings_env` alone (no `.env`, nothing else from the process environment)."""
    for name in list(os.environ):
        if name.upper().startswith(SETTINGS_PREFIXES):
            monkeypatch.delenv(name)
    for name, value in settings_env.items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[App]:
    """The process-lifetime objects (store, clients, services, flow), closed after the test."""
    built = await build_app(settings)
    try:
        yield built
    finally:
        await built.aclose()


class UsageTable:
    """Reads the SQLite usage table the way an operator would (after flushing the queued rows)."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def rows(self, **where: object) -> list[dict[str, object]]:
        """Rows in order, optionally only those whose columns equal the given values."""
        await self.app.store.usage.flush()
        async with aiosqlite.connect(self.app.settings.database.path) as db:
            db.row_factory = aiosqlite.Row
            async with db.execute("SELECT * FROM usage ORDER BY id") as cursor:
                rows = [dict(row) async for row in cursor]
        return [r for r in rows if all(r.get(k) == v for k, v in where.items())]


@pytest.fixture
def usage(app: App) -> UsageTable:
    """The usage table of the test's database."""
    return UsageTable(app)


# === Discord: the bot connected to the sandbox's Discord emulator (tests/e2e/discord_fixtures.py) ===
from tests.e2e.discord_fixtures import discord_bot, discord_global  # noqa: E402, F401
