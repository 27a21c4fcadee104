"""`tiktok-bot stats`: on a database not yet created, on a populated one, and on one it must refuse."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.__main__ import main
from sandbox.redis_server import RedisServer, free_port
from services.shared.redis import RedisUpdateStream, connect
from services.store import Store, UsageEvent
from services.store.sqlite import SqliteDatabase


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if "__" in key or key == "UPSTREAM_ROUTES":
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no stray .env


@pytest.fixture
def db_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "state" / "bot.sqlite3"
    monkeypatch.setenv("DATABASE__PATH", str(path))
    return path


def populate(path: Path) -> None:
    async def write() -> None:
        store = await Store.open(await SqliteDatabase.open(path))
        now = datetime.now(UTC)
        for n in range(30):
            store.usage.record(
                UsageEvent(
                    platform="telegram" if n % 3 else "discord",
                    action="link" if n % 5 else "post",
                    user_id=n % 4,
                    chat_id=100 + n % 2,
                    target=f"73{n % 3}",
                    backend="ttsave",
                    outcome="ok" if n % 10 else "upstream_error",
                    latency_ms=float(n),
                    at=now - timedelta(hours=n),
                )
            )
        store.usage.record(UsageEvent("telegram", "link", at=now - timedelta(days=30)))
        await store.aclose()

    asyncio.run(write())


def test_fresh_database_table(db_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats"]) == 0
    out = capsys.readouterr().out
    assert f"Database {db_path} (not created yet: no usage recorded)" in out
    assert "(7 days)" in out and "requests        0" in out
    assert not db_path.exists() and not db_path.parent.exists()  # reading stats creates nothing


def test_fresh_database_json(db_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "--days", "2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["exists"] is False and data["database"] == str(db_path)
    assert data["days"] == 2 and data["requests"] == 0 and data["top_posts"] == []
    assert data["latency_ms"] == {"p50": None, "p95": None}


def test_populated_database_table(db_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    populate(db_path)
    assert main(["stats", "--days", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"Database {db_path}"
    assert "requests        24" in out  # 0..23 hours old; the 24-hour-old row fell out while the CLI started
    assert "backend  requests  errors  error rate" in out


def test_populated_database_json(db_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    populate(db_path)
    assert main(["stats", "--json", "--top", "2"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["exists"] is True
    assert data["requests"] == 30  # the 30-day-old row is outside the default 7 days
    assert data["by_platform"] == {"telegram": 20, "discord": 10}
    assert data["by_action"] == {"link": 24, "post": 6}
    assert data["by_outcome"] == {"ok": 27, "upstream_error": 3}
    assert data["unique_users"] == 8  # users 0-3 on each platform
    assert data["unique_chats"] == 4
    assert data["top_posts"] == [{"target": "730", "count": 10}, {"target": "731", "count": 10}]
    assert data["backends"] == [{"backend": "ttsave", "requests": 30, "errors": 3, "error_rate": 0.1}]
    # Latencies 0..29: nearest rank 15 of 30 is 14, rank 29 is 28.
    assert data["latency_ms"] == {"p50": 14.0, "p95": 28.0}


def test_database_newer_than_the_code(db_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    populate(db_path)
    with sqlite3.connect(db_path) as conn:
        conn.execute("INSERT INTO schema_version VALUES (999, 'future', 0)")
    conn.close()
    assert main(["stats"]) == 1
    err = capsys.readouterr().err
    assert "schema version 999, newer than this code" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_days_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["stats", "--days", "0"])
    assert "must be more than 0" in capsys.readouterr().err


def fill_stream(url: str, prefix: str) -> None:
    """Entries in three partitions (one written 90 s ago by a process that used no other), some taken, one
    answered; keys that are not the stream's under the same and another prefix."""

    async def write() -> None:
        client = connect(url)
        try:
            stream = RedisUpdateStream(client, prefix, consumer="replica-a")
            await stream.add("telegram:1", "{}", part="")
            await stream.add_many([(f"discord:{n}", "{}", "message", f"discord:{n % 2}") for n in range(4)])
            taken = await stream.take(1, 0.1, parts=["discord:0", "discord:1"])  # 1 of each partition
            assert len(taken) == 2
            await stream.done(taken[0])  # answered: acknowledged and deleted
            old = int((await client.time())[0] * 1000) - 90_000
            await client.xadd(
                f"{prefix}updates:discord:7", {"key": "discord:9", "payload": "{}"}, id=f"{old}-0"
            )
            await client.set(f"{prefix}updates:not-a-stream", "x")
            await client.xadd(f"other-{prefix}updates", {"key": "x"})  # another bot sharing the Redis
        finally:
            await client.aclose()

    asyncio.run(write())


def test_stream_entries_count_as_open_across_partitions(
    db_path: Path,
    redis_server: RedisServer,
    redis_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("REDIS__URL", redis_server.url)
    monkeypatch.setenv("REDIS__PREFIX", redis_prefix)
    populate(db_path)
    fill_stream(redis_server.url, redis_prefix)
    assert main(["stats", "--json"]) == 0
    inbox = json.loads(capsys.readouterr().out)["inbox"]
    # 1 + 4 - 1 answered + 1 in a partition no process of this run used.
    assert inbox["stream"]["unacknowledged"] == 5 and inbox["stream"]["partitions"] == 4
    assert 90 <= inbox["stream"]["oldest_age_s"] < 150
    assert inbox["unfinished"] == 5 and inbox["oldest_unfinished_age_s"] == inbox["stream"]["oldest_age_s"]
    assert main(["stats"]) == 0
    out = capsys.readouterr().out
    assert f"Shared stream ({redis_prefix}updates*): 5 not acknowledged in 4 partitions" in out
    assert "inbox open      5 (oldest " in out


def test_stream_not_answering_is_said(
    db_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS__URL", f"redis://:hunter2@127.0.0.1:{free_port()}/0")
    assert main(["stats"]) == 0
    out = capsys.readouterr().out
    assert (
        "Shared stream (tiktok-bot:updates*): not available: Redis is not answering (ConnectionError)" in out
    )
    assert "hunter2" not in out
