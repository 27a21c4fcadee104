"""The usage log: batching, shutdown, crash safety, concurrent writers, hashing, retention and deletion."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.errors import StoreError
from services.store import Store
from services.store.db import Database, Engine
from services.store.usage import UsageEvent, UsageLog
from tests.services.store.conftest import OpenDb, OpenStore, assert_sound

NOW = datetime(2024, 5, 10, 12, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[3]


def event(n: int = 0, **fields: Any) -> UsageEvent:
    values: dict[str, Any] = {"platform": "telegram", "action": "link", "user_id": 1, "target": str(n)}
    values.update(fields)
    return UsageEvent(**values)


async def count(db: Database, where: str = "1 = 1", params: tuple[Any, ...] = ()) -> int:
    row = await db.fetchone(f"SELECT count(*) FROM usage WHERE {where}", params)  # noqa: S608 - test constants
    assert row is not None
    return int(row[0])


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def count_batches(monkeypatch: pytest.MonkeyPatch, db: Database) -> list[int]:
    """Spy on the database: the size of every batch insert (one transaction each)."""
    sizes: list[int] = []
    original = db.insert_rows

    async def spy(table: str, columns: Any, rows: Any) -> None:
        sizes.append(len(rows))
        await original(table, columns, rows)

    monkeypatch.setattr(db, "insert_rows", spy)
    return sizes


async def test_event_round_trip(db: Database) -> None:
    log = UsageLog(db)
    at = datetime(2024, 5, 10, 12, 0, 0, 123456, tzinfo=UTC)
    log.record(
        UsageEvent(
            platform="discord",
            action="audio",
            chat_id=555,
            chat_type="guild",
            user_id="777",
            target="7300000000000000001",
            backend="web",
            outcome="unavailable:private",
            bytes_sent=4096,
            latency_ms=12.5,
            cache_hit=True,
            units=3,
            at=at,
        )
    )
    [row] = await log.rows_for_user("discord", 777)
    assert row.at == at
    assert (row.platform, row.chat_id, row.chat_type, row.user_id) == ("discord", "555", "guild", "777")
    assert (row.action, row.target, row.backend, row.outcome) == (
        "audio",
        "7300000000000000001",
        "web",
        "unavailable:private",
    )
    assert (row.bytes_sent, row.latency_ms, row.cache_hit, row.units) == (4096, 12.5, True, 3)
    await log.aclose()


def test_default_time_is_now_utc() -> None:
    before = datetime.now(UTC)
    made = UsageEvent("cli", "stats")
    assert made.at.tzinfo is UTC and before <= made.at <= datetime.now(UTC)


async def test_naive_time_is_taken_as_utc(db: Database) -> None:
    log = UsageLog(db)
    log.record(event(at=datetime(2024, 5, 10, 12, 0)))
    [row] = await log.rows_for_user("telegram", 1)
    assert row.at == NOW
    await log.aclose()


async def test_flush_after_n_rows(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    batches = count_batches(monkeypatch, db)
    log = UsageLog(db, flush_rows=10, flush_ms=60_000)
    log.start()
    for n in range(25):
        log.record(event(n))
    assert log.pending == 25 and log.written == 0  # record() only queued them
    await eventually(lambda: _is(log.written == 25))
    assert batches == [25]  # one transaction for everything queued when the writer woke
    for n in range(5):
        log.record(event(n))
    await asyncio.sleep(0.1)
    assert log.written == 25 and log.pending == 5  # under N rows and long before T ms: still queued
    await log.aclose()
    assert log.written == 30 and batches == [25, 5]
    assert await count(db) == 30


async def test_flush_after_t_ms(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    batches = count_batches(monkeypatch, db)
    log = UsageLog(db, flush_rows=1000, flush_ms=200)
    log.start()
    started = time.monotonic()
    for n in range(3):
        log.record(event(n))
    await asyncio.sleep(0.02)
    assert log.written == 0  # not yet: fewer than N rows and less than T ms
    await eventually(lambda: _is(log.written == 3))
    assert time.monotonic() - started >= 0.2
    assert batches == [3]
    await log.aclose()


async def test_clean_shutdown_loses_nothing(open_store: OpenStore, open_db: OpenDb) -> None:
    store = await open_store(flush_rows=10_000, flush_ms=60_000)
    for n in range(1234):
        store.usage.record(event(n))
    await store.aclose()
    db = await open_db()
    assert await count(db) == 1234
    await db.close()


async def test_a_burst_costs_a_handler_only_a_queue_put(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches = count_batches(monkeypatch, db)
    log = UsageLog(db, flush_rows=100, flush_ms=10)
    log.start()
    events = [event(n) for n in range(1000)]
    started = time.perf_counter()
    for item in events:
        assert log.record(item) is None  # synchronous: nothing to await, nothing written yet
    elapsed = time.perf_counter() - started
    assert batches == [] and log.pending == 1000
    assert elapsed < 0.05, f"1000 record() calls took {elapsed * 1000:.1f} ms"
    await log.aclose()
    assert sum(batches) == 1000


async def test_flush_writes_everything_recorded_before_it(db: Database) -> None:
    log = UsageLog(db, flush_rows=7, flush_ms=5)
    log.start()
    for round_ in range(20):
        for n in range(13):
            log.record(event(round_ * 13 + n))
        await log.flush()
        assert await count(db) == (round_ + 1) * 13
    await log.aclose()


async def test_after_close_events_are_dropped_and_counted(db: Database) -> None:
    log = UsageLog(db)
    log.start()
    log.record(event())
    await log.aclose()
    await log.aclose()  # idempotent
    log.record(event())
    assert log.dropped == 1 and log.written == 1
    assert await count(db) == 1


async def test_a_malformed_event_is_dropped_not_raised(db: Database) -> None:
    log = UsageLog(db)
    log.record(event(1, bytes_sent="lots"))
    log.record(event(2, at="yesterday"))
    log.record(event(3))
    assert log.dropped == 2 and log.pending == 1
    await log.aclose()
    assert await db.fetchall("SELECT target FROM usage") == [("3",)]


async def test_queue_is_bounded(db: Database) -> None:
    log = UsageLog(db, max_pending=5)
    for n in range(8):
        log.record(event(n))
    assert log.pending == 5 and log.dropped == 3
    await log.aclose()
    assert await count(db) == 5


async def test_large_backlog_is_written_in_bounded_transactions(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches = count_batches(monkeypatch, db)
    log = UsageLog(db, max_batch=10)
    for n in range(35):
        log.record(event(n))
    await log.flush()
    assert batches == [10, 10, 10, 5]
    await log.aclose()


async def test_failed_write_is_retried_not_lost(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    original = db.insert_rows
    calls = 0

    async def flaky(table: str, columns: Any, rows: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:  # the second transaction of the first flush fails
            raise StoreError("disk I/O error")
        await original(table, columns, rows)

    monkeypatch.setattr(db, "insert_rows", flaky)
    log = UsageLog(db, flush_rows=1000, flush_ms=5, max_batch=10)
    for n in range(25):
        log.record(event(n))
    log.start()
    await eventually(lambda: _is(log.written == 25))
    await log.aclose()
    targets = sorted(int(t) for (t,) in await db.fetchall("SELECT target FROM usage"))
    assert targets == list(range(25))  # every event once: none lost, none written twice
    assert calls == 4  # 10 written, 10 failed; then the requeued 15 as 10 + 5


async def test_concurrent_writers_on_one_store(store: Store) -> None:
    async def handler(worker: int) -> None:
        for n in range(300):
            store.usage.record(event(n, user_id=worker, platform="discord" if worker % 2 else "telegram"))
            if n % 25 == 0:
                await store.media.put("telegram", f"{worker}-{n}", "video", f"ref-{worker}-{n}")
                await store.chats.set("telegram", worker, captions=bool(n % 2))
            await asyncio.sleep(0)

    await asyncio.gather(*(handler(worker) for worker in range(12)))
    await store.usage.flush()
    assert await count(store.db) == 12 * 300
    for worker in range(12):
        platform = "discord" if worker % 2 else "telegram"
        assert await count(store.db, "platform = ? AND user_id = ?", (platform, str(worker))) == 300
    media = await store.db.fetchone("SELECT count(*) FROM media_cache")
    assert media == (12 * 12,)
    await assert_sound(store.db)


async def test_two_stores_on_one_database(open_store: OpenStore, open_db: OpenDb) -> None:
    # Two processes on one file (SQLite) or two replicas on one server (PostgreSQL).
    first = await open_store(flush_rows=20, flush_ms=5)
    second = await open_store(flush_rows=20, flush_ms=5)

    async def burst(store: Store, platform: str) -> None:
        for n in range(1000):
            store.usage.record(event(n, platform=platform))
            if n % 50 == 0:
                await asyncio.sleep(0.001)

    await asyncio.gather(burst(first, "telegram"), burst(second, "discord"))
    await first.aclose()
    await second.aclose()
    db = await open_db()
    assert dict(await db.fetchall("SELECT platform, count(*) FROM usage GROUP BY platform")) == {
        "telegram": 1000,
        "discord": 1000,
    }
    await db.close()


CHILD = """
import asyncio, sys
from services.store import Store, UsageEvent
from services.store.postgres import PostgresDatabase
from services.store.sqlite import SqliteDatabase

async def main():
    url = sys.argv[1]
    engine = PostgresDatabase if url.startswith("postgresql://") else SqliteDatabase
    store = await Store.open(await engine.open(url), flush_rows=400, flush_ms=15)
    n = 0
    while True:
        for _ in range(100):
            store.usage.record(UsageEvent("cli", "link", user_id=1, target=str(n), latency_ms=n))
            n += 1
        print(n, store.usage.written, flush=True)
        # Handlers wait on I/O between events; a loop that never idles can starve the database thread.
        await asyncio.sleep(0.001)

asyncio.run(main())
"""


async def test_sigkill_mid_burst_loses_only_the_unflushed_tail(
    engine: Engine, db_url: str, open_db: OpenDb
) -> None:
    root = ROOT
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        db_url,
        cwd=root,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert child.stdout is not None
    recorded = written = 0
    try:
        async with asyncio.timeout(30):
            # Kill once several batches are on disk and more are queued: truly in the middle of a burst.
            while written < 5000 or recorded <= written:
                line = await child.stdout.readline()
                assert line, "the child exited early"
                recorded, written = map(int, line.split())
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    assert child.returncode == -signal.SIGKILL

    if engine == "sqlite":
        # The file as the crash left it (with its WAL), checked before anything else opens it.
        with sqlite3.connect(db_url) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        conn.close()
    db = await open_db()
    targets = sorted(int(t) for (t,) in await db.fetchall("SELECT target FROM usage"))
    # Everything reported written is there, and what is there is a gap-free prefix: whole batches only.
    assert len(targets) >= written
    assert targets == list(range(len(targets)))
    await assert_sound(db)
    await db.close()


def expected_hash(salt: str, platform: str, value: str) -> str:
    return hmac.new(salt.encode(), f"{platform}\x00{value}".encode(), hashlib.sha256).hexdigest()


async def test_hashed_user_and_chat_ids(open_store: OpenStore, engine: Engine, db_url: str) -> None:
    store = await open_store(hash_user_ids=True, salt="pepper-123")
    store.usage.record(event(user_id=987654321, chat_id=-1001234567890))
    store.usage.record(event(user_id=987654321, chat_id=987654321, chat_type="private"))
    store.usage.record(event(user_id=987654321, platform="discord"))
    await store.usage.flush()
    rows = await store.db.fetchall("SELECT platform, user_id, chat_id FROM usage ORDER BY id")
    user = expected_hash("pepper-123", "telegram", "987654321")
    assert rows == [
        ("telegram", user, expected_hash("pepper-123", "telegram", "-1001234567890")),
        ("telegram", user, user),  # a private chat's id is its user's id, so it is hashed as well
        ("discord", expected_hash("pepper-123", "discord", "987654321"), None),
    ]
    assert len(user) == 64 and user != expected_hash("other-salt", "telegram", "987654321")
    [mine] = [r for r in await store.usage.rows_for_user("telegram", 987654321) if r.chat_type == "private"]
    assert mine.user_id == user
    await store.aclose()
    if engine == "sqlite":
        # No raw id anywhere in the file (the WAL is checkpointed into it on close).
        raw = b"".join(p.read_bytes() for p in Path(db_url).parent.iterdir())
        assert b"987654321" not in raw and b"1001234567890" not in raw


async def test_unhashed_ids_are_kept_as_text(db: Database) -> None:
    log = UsageLog(db)
    log.record(event(user_id=42, chat_id=-7))
    await log.flush()
    assert await db.fetchall("SELECT user_id, chat_id FROM usage") == [("42", "-7")]
    await log.aclose()


def test_hashing_needs_a_salt(db: Database) -> None:
    with pytest.raises(StoreError, match="salt"):
        UsageLog(db, hash_user_ids=True, salt="")


@pytest.mark.parametrize("hashed", [False, True])
async def test_delete_user_deletes_only_that_users_rows(db: Database, hashed: bool) -> None:
    log = UsageLog(db, hash_user_ids=hashed, salt="s" if hashed else "", flush_rows=1000, flush_ms=60_000)
    log.start()
    for n in range(5):
        log.record(event(n, user_id=100))
        log.record(event(n, user_id=200))
        log.record(event(n, user_id=100, platform="discord"))  # the same number on another platform
    await log.flush()
    log.record(event(99, user_id=100))  # still queued when the request comes
    assert await log.delete_user("telegram", 100) == 6
    assert await log.rows_for_user("telegram", 100) == []
    assert len(await log.rows_for_user("telegram", 200)) == 5
    assert len(await log.rows_for_user("discord", 100)) == 5
    assert await count(db) == 10
    assert await log.delete_user("telegram", 100) == 0
    await log.aclose()


async def test_retention_purge(db: Database) -> None:
    log = UsageLog(db, retention_days=30)
    for age in (timedelta(days=40), timedelta(days=30, seconds=1), timedelta(days=29), timedelta(0)):
        log.record(event(at=NOW - age))
    await log.flush()
    assert await log.purge(now=NOW) == 2
    remaining = await db.fetchall("SELECT at FROM usage ORDER BY at")
    assert [datetime.fromtimestamp(at, UTC) for (at,) in remaining] == [NOW - timedelta(days=29), NOW]
    assert await log.purge(now=NOW) == 0
    await log.aclose()


async def test_no_retention_keeps_everything(db: Database) -> None:
    log = UsageLog(db, retention_days=0)
    log.record(event(at=NOW - timedelta(days=3650)))
    await log.flush()
    assert await log.purge() == 0
    assert await count(db) == 1
    await log.aclose()


async def test_purge_runs_when_the_store_starts(open_store: OpenStore) -> None:
    store = await open_store()
    old = datetime.now(UTC) - timedelta(days=10)
    store.usage.record(event(1, at=old))
    store.usage.record(event(2))
    await store.aclose()
    store = await open_store(retention_days=7)
    await eventually(lambda: _counted(store.db, 1))
    await store.aclose()


def test_invalid_settings(db: Database) -> None:
    with pytest.raises(StoreError):
        UsageLog(db, flush_rows=0)
    with pytest.raises(StoreError):
        UsageLog(db, retention_days=-1)


async def _is(value: bool) -> bool:
    return value


async def _counted(db: Database, expected: int) -> bool:
    return await count(db) == expected
