"""DATABASE__URL: which engine the bot opens, the SQLite default, the password kept out of config and logs."""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from bot.__main__ import main
from bot.cli.run import _secrets, run_frontends
from bot.cli.stats import show_stats
from bot.config import SettingsError, load_settings, masked
from bot.engines import open_database
from bot.logs import setup_logging
from services.store import Store, UsageEvent
from tests.engines.postgres import PostgresServer


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if "__" in key or key == "UPSTREAM_ROUTES":
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
async def pg_url(postgres_server: PostgresServer) -> str:
    """A fresh database on the session's server, with a password in the URL (trust auth ignores it)."""
    name = f"wiring_{datetime.now(UTC).strftime('%H%M%S%f')}"
    admin = await asyncpg.connect(postgres_server.url())
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    return postgres_server.url(name).replace("postgres@", "postgres:hunter2-secret@")


@pytest.mark.parametrize(
    ("url", "engine", "path"),
    [
        (None, "sqlite", "data/tiktok-bot.sqlite3"),
        ("sqlite:///state/bot.sqlite3", "sqlite", "state/bot.sqlite3"),
        ("sqlite:////var/lib/bot.sqlite3", "sqlite", "/var/lib/bot.sqlite3"),
        ("postgresql://bot:pw@db:5432/tiktok", "postgres", None),
        ("postgres://bot@db/tiktok", "postgres", None),
    ],
)
def test_url_names_the_engine(
    monkeypatch: pytest.MonkeyPatch, url: str | None, engine: str, path: str
) -> None:
    if url is not None:
        monkeypatch.setenv("DATABASE__URL", url)
    db = load_settings(None).database
    assert db.engine == engine
    if path is not None:
        assert db.sqlite_path == Path(path)


def test_database_path_keeps_working_without_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE__PATH", "/srv/bot.sqlite3")
    assert load_settings(None).database.sqlite_path == Path("/srv/bot.sqlite3")


@pytest.mark.parametrize(
    "url", ["mysql://bot:hunter2-secret@db/x", "hunter2-secret", "sqlite://relative", "sqlite:///"]
)
def test_unknown_url_is_refused_without_echoing_it(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("DATABASE__URL", url)
    with pytest.raises(SettingsError) as info:
        load_settings(None)
    message = str(info.value)
    assert "DATABASE__URL" in message and "hunter2" not in message and "\n" not in message


def test_config_masks_only_the_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE__URL", "postgresql://bot:hunter2-secret@db:5432/tiktok")
    assert masked(load_settings(None))["database"]["url"] == "postgresql://bot:****@db:5432/tiktok"
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out and "postgresql://bot:****@db:5432/tiktok" in out


def test_logs_never_show_the_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE__URL", "postgresql://bot:hunter2-secret@db:5432/tiktok")
    settings = load_settings(None)
    assert settings.database.url is not None
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    setup_logging("INFO", "json", secrets=_secrets(settings))
    try:
        logging.getLogger("tiktok_bot.test").warning(
            "connecting to %s with %s", settings.database.url.get_secret_value(), "hunter2-secret"
        )
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    err = capsys.readouterr().err
    assert "connecting to" in err and "hunter2" not in err


async def test_wiring_opens_postgresql_and_the_store_works_on_it(
    monkeypatch: pytest.MonkeyPatch, pg_url: str
) -> None:
    monkeypatch.setenv("DATABASE__URL", pg_url)
    settings = load_settings(None).database
    db = await open_database(settings)
    assert db.engine == "postgres" and "hunter2" not in db.name
    store = await Store.open(db)
    store.usage.record(UsageEvent(platform="telegram", action="link", user_id=1, target="7300"))
    await store.media.put("telegram", "7300", "video", "FILE-ID")
    await store.chats.set("telegram", 5, captions=False)
    report = await store.stats(days=1)
    await store.aclose()
    assert report.requests == 1 and report.top_posts == (("7300", 1),)


async def test_stats_cli_reads_postgresql(
    monkeypatch: pytest.MonkeyPatch, pg_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE__URL", pg_url)
    store = await Store.open(await open_database(load_settings(None).database))
    for n in range(3):
        store.usage.record(UsageEvent(platform="discord", action="post", user_id=n, target="42"))
    await store.aclose()
    args = argparse.Namespace(days=1.0, top=10, json=True, health=None)
    assert await show_stats(args, load_settings(None)) == 0
    out = capsys.readouterr().out
    report = json.loads(out)
    assert report["requests"] == 3 and report["exists"] is True
    assert "hunter2" not in out and ":****@" in report["database"]


async def test_run_says_in_one_line_when_the_database_is_unreachable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as closed:  # bound, not listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        monkeypatch.setenv("DATABASE__URL", f"postgresql://bot:hunter2-secret@127.0.0.1:{port}/tiktok")
        monkeypatch.setenv("TELEGRAM__TOKEN", "123456:test-token")
        root = logging.getLogger()
        saved = (root.handlers[:], root.level)
        try:
            assert await run_frontends(load_settings(None), ("telegram",)) == 1
        finally:
            root.handlers[:], level = saved
            root.setLevel(level)
    err = capsys.readouterr().err
    assert "cannot start: cannot open the database postgresql://bot:****@127.0.0.1" in err
    assert "hunter2" not in err and "Traceback" not in err
