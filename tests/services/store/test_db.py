"""The database file: WAL, forward migrations from every earlier version, refusing a newer schema."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from services.errors import ServiceError, StoreError
from services.store.db import MIGRATIONS, SCHEMA_VERSION, Database, Migration

# Rows a database at each version may hold, written with the columns that version has.
SEED: dict[int, list[str]] = {
    1: [
        "INSERT INTO usage (at, platform, chat_id, chat_type, user_id, action, target, backend, outcome,"
        " bytes_sent, latency_ms, cache_hit, units) VALUES (1700000000.5, 'telegram', '-100', 'group', '42',"
        " 'link', '7300', 'ttsave', 'ok', 1234, 55.5, 1, 2)",
        "INSERT INTO usage (at, platform, user_id, action, outcome)"
        " VALUES (1700000001, 'discord', '43', 'post', 'not_found')",
        "INSERT INTO media_cache (platform, post_id, variant, ref, stored_at)"
        " VALUES ('telegram', '7300', 'video', 'FILE-ID-1', 1700000000)",
        "INSERT INTO media_cache (platform, post_id, variant, ref, stored_at)"
        " VALUES ('telegram', '7301', 'photo:0', 'FILE-ID-2', 1700000000)",
        "INSERT INTO chat_settings (platform, chat_id, auto_download, captions, slideshow_sound, language,"
        " remove_link_message, updated_at) VALUES ('telegram', '-100', 0, 1, 0, 'ru', 1, 1700000000)",
    ],
}
TABLES = ("usage", "media_cache", "chat_settings")


def _dump(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of the data tables, with the columns version 1 had (so any version compares)."""
    columns = {
        "usage": "id, at, platform, chat_id, chat_type, user_id, action, target, backend, outcome,"
        " bytes_sent, latency_ms, cache_hit, units",
        "media_cache": "platform, post_id, variant, ref, stored_at",
        "chat_settings": "platform, chat_id, auto_download, captions, slideshow_sound, language,"
        " remove_link_message, updated_at",
    }
    with sqlite3.connect(path) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        dump = {
            table: sorted(conn.execute(f"SELECT {columns[table]} FROM {table}"))  # noqa: S608 - constants
            for table in TABLES
            if table in names
        }
    conn.close()
    return dump


def _schema(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name"
        ).fetchall()
    conn.close()
    return [(name, " ".join((sql or "").split())) for name, sql in rows]


def test_migrations_are_numbered_one_by_one() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert SCHEMA_VERSION == len(MIGRATIONS) >= 2
    for migration in MIGRATIONS:
        # "Never destroys data": no step drops or deletes anything.
        text = " ".join(migration.statements).upper()
        assert "DROP " not in text and "DELETE " not in text


async def test_new_file_in_a_new_directory(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "bot.sqlite3"
    db = await Database.open(path)
    try:
        assert path.exists()
        assert db.version == SCHEMA_VERSION
        assert await db.fetchone("PRAGMA journal_mode") == ("wal",)
        assert await db.integrity_check() == "ok"
        applied = await db.fetchall("SELECT version FROM schema_version ORDER BY version")
        assert [v for (v,) in applied] == [m.version for m in MIGRATIONS]
    finally:
        await db.close()


async def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite3"
    path.write_bytes(b"")
    db = await Database.open(path)
    await db.close()
    assert db.version == SCHEMA_VERSION
    assert set(_dump(path)) == set(TABLES)


@pytest.mark.parametrize("start", range(len(MIGRATIONS)))
async def test_upgrade_from_each_earlier_version_keeps_data(tmp_path: Path, start: int) -> None:
    path = tmp_path / "old.sqlite3"
    old = await Database.open(path, migrations=MIGRATIONS[:start])
    assert old.version == start
    for statement in (s for version in range(1, start + 1) for s in SEED.get(version, [])):
        await old.execute(statement)
    await old.close()
    before = _dump(path)
    assert sum(len(rows) for rows in before.values()) == (5 if start else 0)

    db = await Database.open(path)
    try:
        assert db.version == SCHEMA_VERSION
        after = _dump(path)
        assert after == before if start else all(not rows for rows in after.values())
        if start:
            # A column added later reads as NULL for rows that predate it.
            assert await db.fetchall("SELECT size FROM media_cache") == [(None,), (None,)]
        assert await db.integrity_check() == "ok"
    finally:
        await db.close()
    # The upgraded file has exactly the schema of a file created by this code.
    fresh = tmp_path / "fresh.sqlite3"
    await (await Database.open(fresh)).close()
    assert _schema(path) == _schema(fresh)


async def test_database_newer_than_code_is_refused(db_path: Path) -> None:
    await (await Database.open(db_path)).close()
    with pytest.raises(StoreError) as info:
        await Database.open(db_path, migrations=MIGRATIONS[:1])
    assert isinstance(info.value, ServiceError)
    message = str(info.value)
    assert f"schema version {SCHEMA_VERSION}, newer than this code understands (1)" in message
    assert str(db_path) in message
    assert "upgrade tiktok-bot" in message


async def test_future_version_row_is_refused_by_current_code(db_path: Path) -> None:
    await (await Database.open(db_path)).close()
    with sqlite3.connect(db_path) as conn:
        conn.execute("INSERT INTO schema_version VALUES (99, 'from the future', 0)")
    conn.close()
    with pytest.raises(
        StoreError, match=f"schema version 99, newer than this code understands \\({SCHEMA_VERSION}\\)"
    ):
        await Database.open(db_path)


async def test_failed_migration_rolls_back_and_keeps_data(db_path: Path) -> None:
    db = await Database.open(db_path)
    await db.execute(SEED[1][0])
    await db.close()
    broken = (
        *MIGRATIONS,
        Migration(SCHEMA_VERSION + 1, "broken", ("CREATE TABLE half (a)", "SELECT * FROM nope")),
    )
    with pytest.raises(StoreError, match=f"migration {SCHEMA_VERSION + 1} \\(broken\\)"):
        await Database.open(db_path, migrations=broken)
    db = await Database.open(db_path)
    try:
        assert db.version == SCHEMA_VERSION
        assert await db.fetchall("SELECT name FROM sqlite_master WHERE name = 'half'") == []
        assert len(await db.fetchall("SELECT * FROM usage")) == 1
    finally:
        await db.close()


async def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"this is not a sqlite database, just some text " * 100)
    with pytest.raises(StoreError, match="cannot open the database"):
        await Database.open(path)


async def test_two_processes_opening_a_fresh_file_at_once(db_path: Path) -> None:
    # Both see version 0; the second must notice the first's migration under the write lock, not repeat it.
    first, second = await asyncio.gather(Database.open(db_path), Database.open(db_path))
    try:
        assert first.version == second.version == SCHEMA_VERSION
        assert len(await first.fetchall("SELECT * FROM schema_version")) == len(MIGRATIONS)
    finally:
        await first.close()
        await second.close()


async def test_failed_statement_rolls_back_the_transaction(db: Database) -> None:
    async def half_good() -> None:
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO usage (at, platform, action) VALUES (1, 'cli', 'link')")
            await conn.execute("INSERT INTO usage (at, platform, action) VALUES (NULL, 'cli', 'link')")

    with pytest.raises(StoreError, match="database error"):
        await half_good()
    assert await db.fetchall("SELECT * FROM usage") == []
    # The connection is usable afterwards: no transaction was left open.
    assert await db.execute("INSERT INTO usage (at, platform, action) VALUES (1, 'cli', 'link')") == 1


async def test_concurrent_writers_on_two_connections(db_path: Path) -> None:
    first = await Database.open(db_path)
    second = await Database.open(db_path)

    async def writer(db: Database, platform: str) -> None:
        for batch in range(20):
            rows = [(batch * 50 + i, platform, "link") for i in range(50)]
            await db.insert_rows("usage", ("at", "platform", "action"), rows)
            await db.execute("INSERT INTO usage (at, platform, action) VALUES (0, ?, 'one')", (platform,))

    try:
        await asyncio.gather(writer(first, "telegram"), writer(second, "discord"), writer(first, "cli"))
        counts = dict(await first.fetchall("SELECT platform, count(*) FROM usage GROUP BY platform"))
        assert counts == {"telegram": 1020, "discord": 1020, "cli": 1020}
        assert await second.integrity_check() == "ok"
    finally:
        await first.close()
        await second.close()


async def test_close_is_idempotent(db_path: Path) -> None:
    db = await Database.open(db_path)
    await db.close()
    await db.close()


async def test_insert_rows_in_several_statements_is_one_transaction(db: Database) -> None:
    columns = ("at", "platform", "action", "target")
    rows = [(n, "cli", "link", str(n)) for n in range(20_000)]  # over the variable limit: several statements
    await db.insert_rows("usage", columns, rows)
    assert await db.fetchone("SELECT count(*), min(at), max(at) FROM usage") == (20_000, 0.0, 19_999.0)
    bad = [*rows[:15_000], (None, "cli", "link", "x")]  # NOT NULL fails in the last statement
    with pytest.raises(StoreError):
        await db.insert_rows("usage", columns, bad)
    assert await db.fetchone("SELECT count(*) FROM usage") == (20_000,)
    await db.insert_rows("usage", columns, [])


async def test_use_after_close_is_a_store_error(db_path: Path) -> None:
    db = await Database.open(db_path)
    await db.close()
    with pytest.raises(StoreError, match="is closed"):
        await db.fetchall("SELECT 1")
    with pytest.raises(StoreError, match="is closed"):
        await db.execute("DELETE FROM usage")
    with pytest.raises(StoreError, match="is closed"):
        await db.insert_rows("usage", ("at", "platform", "action"), [(1, "cli", "link")])
