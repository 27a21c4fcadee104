"""End-to-end fixtures: every sandbox emulator on loopback, and the bot's App built from their environment."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.config import Settings, load_settings
from bot.logs import setup_logging
from bot.telegram.app import run_telegram
from bot.wiring import App, build_app
from sandbox.runner import Sandbox
from sandbox.telegram import TelegramEmulator


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    """Every emulator, started on loopback ports."""
    box = Sandbox()
    await box.start()
    try:
        yield box
    finally:
        await box.stop()


@pytest.fixture
def extra_env() -> dict[str, str]:
    """Settings a test module adds to the sandbox environment (override to change them)."""
    return {}


@pytest.fixture
def settings(
    sandbox: Sandbox, tmp_path: Path, extra_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """Settings pointing at the sandbox, with a fresh database; nothing from the developer's .env."""
    for key in list(os.environ):
        if "__" in key or key == "UPSTREAM_ROUTES":
            monkeypatch.delenv(key)
    env = {
        **sandbox.env(),
        "DATABASE__PATH": str(tmp_path / "bot.sqlite3"),
        "DATABASE__FLUSH_MS": "20",
        "DOWNLOAD__TEMP_DIR": str(tmp_path / "downloads"),
        **extra_env,
    }
    (tmp_path / "downloads").mkdir()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return load_settings(None)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[App]:
    """The bot's process-lifetime objects, closed (and the usage log flushed) at the end."""
    built = await build_app(settings)
    try:
        yield built
    finally:
        await built.aclose()


async def usage_rows(app: App) -> list[dict[str, object]]:
    """Every usage row written so far, as dicts (the log is flushed first)."""
    await app.store.usage.flush()
    # The columns as the schema has them now, so a migration needs no edit here.
    if app.store.db.engine == "sqlite":
        names = [str(column[1]) for column in await app.store.db.fetchall("PRAGMA table_info(usage)")]
    else:
        columns = await app.store.db.fetchall(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = 'usage' ORDER BY ordinal_position"
        )
        names = [str(name) for (name,) in columns]
    # In the order they happened: rows of inbox requests are written when each completes, not when recorded.
    rows = await app.store.db.fetchall("SELECT * FROM usage ORDER BY at, id")
    return [dict(zip(names, row, strict=True)) for row in rows]


async def wait_rows(
    app: App,
    action: str,
    count: int = 1,
    *,
    timeout: float = 5.0,  # noqa: ASYNC109
) -> list[dict[str, object]]:
    """The usage rows of one action once at least `count` exist (a reply lands before its row is logged)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        rows = [r for r in await usage_rows(app) if r["action"] == action]
        if len(rows) >= count:
            return rows
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"only {len(rows)} {action!r} rows after {timeout}s")
        await asyncio.sleep(0.02)


@pytest.fixture
async def tg(app: App, sandbox: Sandbox) -> AsyncIterator[TelegramEmulator]:
    """The Telegram frontend running against the emulator until the test ends."""
    emu = sandbox.get(TelegramEmulator)
    stop = asyncio.Event()
    task = asyncio.create_task(run_telegram(app, stop))
    await emu.wait_for(method="deleteWebhook", timeout=10)
    try:
        yield emu
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """The bot's own logging (LOG__FORMAT=json, INFO) into a buffer for the test; the root logger restored."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    setup_logging("INFO", "json", stream=stream)
    try:
        yield stream
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


def log_lines(stream: io.StringIO, message: str) -> list[dict[str, object]]:
    """The JSON lines logged so far whose message is `message`."""
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("message") == message]


async def wait_log_line(stream: io.StringIO, message: str, timeout: float = 20.0) -> dict[str, object]:  # noqa: ASYNC109
    """The one JSON line with `message`, once it has been logged (the usage row and the line come last)."""
    async with asyncio.timeout(timeout):
        while not (lines := log_lines(stream, message)):  # noqa: ASYNC110 -- a log line has no event to await
            await asyncio.sleep(0.02)
    (line,) = lines
    return line
