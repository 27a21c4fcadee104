"""The database on both engines: forward migrations from every earlier version, refusing a newer schema,
transactions, batches; SQLite's file (WAL, not a database) and PostgreSQL's URL (unreachable, password)."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from pathlib import Path

import aiosqlite
import pytest

from services.errors import ServiceError, StoreError
from services.store.db import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Batch,
    Database,
    Engine,
    Migration,
    bind,
    masked_url,
    numbered,
)
from services.store.postgres import PostgresDatabase
from services.store.sqlite import SqliteDatabase
from tests.engines.postgres import PostgresServer
from tests.services.store.conftest import NewUrl, OpenDb, assert_sound, open_url

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
# The SQLite text of each released step, pinned: databases in the field ran exactly this.
RELEASED_SQLITE_SHA256 = {
    1: "74fdb7d01e6ba22486b6d24bcc48c5a3ae7238b8575b84595ccf92d40f419805",
    2: "f0feab898694b87f6ff578d386e73154845adb30e78d4aaedf53e7695ea7c14f",
    3: "36712c9f671d1349e8f6c98447a1edb647fdde33226cac28db197200fd9c916a",
    4: "d5daacf6ffb5d4eb8de7b5bb30add207b789732c8db0c2f0871d98104843b3ff",
}
COLUMNS = {
    "usage": "id, at, platform, chat_id, chat_type, user_id, action, target, backend, outcome,"
    " bytes_sent, latency_ms, cache_hit, units",
    "media_cache": "platform, post_id, variant, ref, stored_at",
    "chat_settings": "platform, chat_id, auto_download, captions, slideshow_sound, language,"
    " remove_link_message, updated_at",
}


async def tables(db: Database) -> set[str]:
    """The tables the database holds (in the test's schema on PostgreSQL)."""
    if db.engine == "sqlite":
        rows = await db.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        rows = await db.fetchall("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
    return {str(name) for (name,) in rows}


async def dump(db: Database) -> dict[str, list[tuple[object, ...]]]:
    """Every row of the data tables, with the columns version 1 had (so any version compares)."""
    present = await tables(db)
    return {
        table: sorted(await db.fetchall(f"SELECT {COLUMNS[table]} FROM {table}"))  # noqa: S608 - constants
        for table in TABLES
        if table in present
    }


async def schema(db: Database) -> list[tuple[object, ...]]:
    """The schema as the engine describes it: tables, columns with types, indexes."""
    if db.engine == "sqlite":
        rows = await db.fetchall(
            "SELECT name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name"
        )
        return [(name, " ".join((sql or "").split())) for name, sql in rows]
    columns = await db.fetchall(
        "SELECT table_name, ordinal_position, column_name, data_type, is_nullable, column_default"
        " FROM information_schema.columns WHERE table_schema = current_schema() ORDER BY 1, 2"
    )
    indexes = await db.fetchall(
        "SELECT indexname, replace(indexdef, current_schema() || '.', '') FROM pg_indexes"
        " WHERE schemaname = current_schema() ORDER BY 1"
    )
    return [*columns, *indexes]


def test_migrations_are_numbered_one_by_one() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert SCHEMA_VERSION == len(MIGRATIONS) >= 2
    for migration in MIGRATIONS:
        # "Never destroys data": no step drops or deletes anything, on either engine.
        for engine in ("sqlite", "postgres"):
            text = " ".join(migration.render(engine)).upper()
            assert "DROP " not in text and "DELETE " not in text


@pytest.mark.parametrize("version", sorted(RELEASED_SQLITE_SHA256))
def test_released_steps_render_unchanged_for_sqlite(version: int) -> None:
    statements = MIGRATIONS[version - 1].render("sqlite")
    assert hashlib.sha256("\x00".join(statements).encode()).hexdigest() == RELEASED_SQLITE_SHA256[version]


def test_postgres_rendering_uses_its_own_types() -> None:
    text = " ".join(MIGRATIONS[0].render("postgres"))
    assert "GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY" in text and "WITHOUT ROWID" not in text
    assert " REAL " not in text and "DOUBLE PRECISION" in text and "{" not in text


@pytest.mark.parametrize(
    ("sql", "params", "text", "args"),
    [
        ("SELECT ? + ?", (1, 2), "SELECT $1 + $2", [1, 2]),
        ("SELECT :a, :b, :a", {"b": 2, "a": 1}, "SELECT $1, $2, $1", [1, 2]),
        (
            "SELECT '?', 'x:y', \"q?\" FROM t WHERE a = ?",
            (5,),
            "SELECT '?', 'x:y', \"q?\" FROM t WHERE a = $1",
            [5],
        ),
        ("SELECT 'it''s ?', ?", ("v",), "SELECT 'it''s ?', $1", ["v"]),
        (
            "SELECT a::text FROM t -- what? :nothing\nWHERE b = ?",
            (1,),
            "SELECT a::text FROM t -- what? :nothing\nWHERE b = $1",
            [1],
        ),
        ("SELECT 1", (), "SELECT 1", []),
        ("SELECT 1", {}, "SELECT 1", []),
    ],
)
def test_parameters_are_numbered_for_postgres(
    sql: str, params: object, text: str, args: list[object]
) -> None:
    assert bind(sql, params) == (text, args)  # type: ignore[arg-type]


def test_parameter_mistakes_are_store_errors() -> None:
    with pytest.raises(StoreError, match="mixes"):
        numbered("SELECT ?, :a")
    with pytest.raises(StoreError, match="missing parameter :b"):
        bind("SELECT :a, :b", {"a": 1})
    with pytest.raises(StoreError, match="named parameters a"):
        bind("SELECT :a", (1,))


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://bot:s3cret@db:5432/tiktok", "postgresql://bot:****@db:5432/tiktok"),
        ("postgresql://bot@db/tiktok?sslmode=require", "postgresql://bot@db/tiktok?sslmode=require"),
        ("postgresql://db/tiktok?user=bot&password=s3cret", "postgresql://db/tiktok?user=bot&password=****"),
        ("postgresql://bot:p%40ss@db/tiktok", "postgresql://bot:****@db/tiktok"),
        ("sqlite:///data/bot.sqlite3", "sqlite:///data/bot.sqlite3"),
    ],
)
def test_masked_url(url: str, shown: str) -> None:
    assert masked_url(url) == shown


async def test_fresh_database(db: Database, engine: str) -> None:
    assert db.engine == engine
    assert db.version == SCHEMA_VERSION
    applied = await db.fetchall("SELECT version FROM schema_version ORDER BY version")
    assert [v for (v,) in applied] == [m.version for m in MIGRATIONS]
    assert await tables(db) >= {*TABLES, "schema_version"}
    await assert_sound(db)


async def test_new_sqlite_file_in_a_new_directory(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "bot.sqlite3"
    db = await SqliteDatabase.open(path)
    try:
        assert path.exists()
        assert db.version == SCHEMA_VERSION
        assert await db.fetchone("PRAGMA journal_mode") == ("wal",)
        assert await db.integrity_check() == "ok"
    finally:
        await db.close()


async def test_empty_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite3"
    path.write_bytes(b"")
    db = await SqliteDatabase.open(path)
    try:
        assert db.version == SCHEMA_VERSION
        assert set(await dump(db)) == set(TABLES)
    finally:
        await db.close()


@pytest.mark.parametrize("start", range(len(MIGRATIONS)))
async def test_upgrade_from_each_earlier_version_keeps_data(
    open_db: OpenDb, engine: Engine, new_url: NewUrl, start: int
) -> None:
    old = await open_db(migrations=MIGRATIONS[:start])
    assert old.version == start
    for statement in (s for version in range(1, start + 1) for s in SEED.get(version, [])):
        await old.execute(statement)
    before = await dump(old)
    await old.close()
    assert sum(len(rows) for rows in before.values()) == (5 if start else 0)

    db = await open_db()
    try:
        assert db.version == SCHEMA_VERSION
        after = await dump(db)
        assert after == before if start else all(not rows for rows in after.values())
        if start:
            # A column added later reads as NULL for rows that predate it.
            assert await db.fetchall("SELECT size FROM media_cache") == [(None,), (None,)]
        await assert_sound(db)
        upgraded = await schema(db)
    finally:
        await db.close()
    # The upgraded database has exactly the schema of one created by this code.
    fresh = await open_url(engine, await new_url())
    try:
        assert upgraded == await schema(fresh)
    finally:
        await fresh.close()


async def test_database_newer_than_code_is_refused(open_db: OpenDb, db_url: str) -> None:
    await (await open_db()).close()
    with pytest.raises(StoreError) as info:
        await open_db(migrations=MIGRATIONS[:1])
    assert isinstance(info.value, ServiceError)
    message = str(info.value)
    assert f"schema version {SCHEMA_VERSION}, newer than this code understands (1)" in message
    assert db_url in message
    assert "upgrade tiktok-bot" in message


async def test_future_version_row_is_refused_by_current_code(open_db: OpenDb) -> None:
    db = await open_db()
    await db.execute("INSERT INTO schema_version VALUES (99, 'from the future', 0)")
    await db.close()
    with pytest.raises(
        StoreError, match=f"schema version 99, newer than this code understands \\({SCHEMA_VERSION}\\)"
    ):
        await open_db()


async def test_failed_migration_rolls_back_and_keeps_data(open_db: OpenDb) -> None:
    db = await open_db()
    await db.execute(SEED[1][0])
    await db.close()
    broken = (
        *MIGRATIONS,
        Migration(SCHEMA_VERSION + 1, "broken", ("CREATE TABLE half (a INTEGER)", "SELECT * FROM nope")),
    )
    with pytest.raises(StoreError, match=f"migration {SCHEMA_VERSION + 1} \\(broken\\)"):
        await open_db(migrations=broken)
    db = await open_db()
    try:
        assert db.version == SCHEMA_VERSION
        assert "half" not in await tables(db)
        assert len(await db.fetchall("SELECT * FROM usage")) == 1
    finally:
        await db.close()


async def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"this is not a sqlite database, just some text " * 100)
    with pytest.raises(StoreError, match="cannot open the database"):
        await SqliteDatabase.open(path)


async def test_no_server_at_the_url() -> None:
    with socket.socket() as sock:  # a port bound but not listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        url = f"postgresql://bot:hunter2@127.0.0.1:{port}/tiktok"
        with pytest.raises(StoreError, match="cannot open the database") as info:
            await PostgresDatabase.open(url, connect_timeout=5)
    assert "hunter2" not in str(info.value)
    assert f"postgresql://bot:****@127.0.0.1:{port}/tiktok" in str(info.value)


async def test_missing_database_names_it_without_the_password(postgres_server: PostgresServer) -> None:
    url = postgres_server.url("no_such_db").replace("postgres@", "postgres:hunter2@")
    with pytest.raises(StoreError, match='database "no_such_db" does not exist') as info:
        await PostgresDatabase.open(url)
    assert "hunter2" not in str(info.value) and "postgres:****@" in str(info.value)


async def test_two_processes_opening_a_fresh_database_at_once(open_db: OpenDb) -> None:
    # Both see version 0; the second must notice the first's migration under the lock, not repeat it.
    first, second = await asyncio.gather(open_db(), open_db())
    try:
        assert first.version == second.version == SCHEMA_VERSION
        assert len(await first.fetchall("SELECT * FROM schema_version")) == len(MIGRATIONS)
    finally:
        await first.close()
        await second.close()


async def test_failed_statement_rolls_back_the_transaction(db: Database) -> None:
    async def half_good() -> None:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO usage (at, platform, action) VALUES (1, 'cli', 'link')")
            await tx.execute("INSERT INTO usage (at, platform, action) VALUES (NULL, 'cli', 'link')")

    with pytest.raises(StoreError, match="database error"):
        await half_good()
    assert await db.fetchall("SELECT * FROM usage") == []
    # The connection is usable afterwards: no transaction was left open.
    assert await db.execute("INSERT INTO usage (at, platform, action) VALUES (1, 'cli', 'link')") == 1


async def test_a_transaction_sees_its_own_writes_and_commits_them_together(db: Database) -> None:
    async with db.transaction() as tx:
        assert (
            await tx.execute("INSERT INTO usage (at, platform, action) VALUES (?, ?, 'link')", (1, "cli"))
            == 1
        )
        assert await tx.fetchone("SELECT count(*) FROM usage WHERE platform = :p", {"p": "cli"}) == (1,)
        assert await tx.execute("UPDATE usage SET outcome = 'x' WHERE platform = 'cli'") == 1
        assert await tx.fetchall("SELECT outcome FROM usage") == [("x",)]
    assert await db.fetchall("SELECT outcome FROM usage") == [("x",)]

    class Boom(Exception):
        pass

    async def delete_then_fail() -> None:
        async with db.transaction() as tx:
            await tx.execute("DELETE FROM usage")
            raise Boom

    with pytest.raises(Boom):
        await delete_then_fail()
    assert await db.fetchone("SELECT count(*) FROM usage") == (1,)


async def test_concurrent_writers_on_two_connections(open_db: OpenDb) -> None:
    first = await open_db()
    second = await open_db()

    async def writer(db: Database, platform: str) -> None:
        for batch in range(20):
            rows = [(batch * 50 + i, platform, "link") for i in range(50)]
            await db.insert_rows("usage", ("at", "platform", "action"), rows)
            await db.execute("INSERT INTO usage (at, platform, action) VALUES (0, ?, 'one')", (platform,))

    try:
        await asyncio.gather(writer(first, "telegram"), writer(second, "discord"), writer(first, "cli"))
        counts = dict(await first.fetchall("SELECT platform, count(*) FROM usage GROUP BY platform"))
        assert counts == {"telegram": 1020, "discord": 1020, "cli": 1020}
        await assert_sound(second)
    finally:
        await first.close()
        await second.close()


async def test_close_is_idempotent(open_db: OpenDb) -> None:
    db = await open_db()
    await db.close()
    await db.close()


async def test_insert_rows_in_several_statements_is_one_transaction(db: Database) -> None:
    columns = ("at", "platform", "action", "target")
    rows = [(n, "cli", "link", str(n)) for n in range(20_000)]  # over SQLite's variable limit
    await db.insert_rows("usage", columns, rows)
    assert await db.fetchone("SELECT count(*), min(at), max(at) FROM usage") == (20_000, 0.0, 19_999.0)
    bad = [*rows[:15_000], (None, "cli", "link", "x")]  # NOT NULL fails in the last statement
    with pytest.raises(StoreError):
        await db.insert_rows("usage", columns, bad)
    assert await db.fetchone("SELECT count(*) FROM usage") == (20_000,)
    await db.insert_rows("usage", columns, [])


async def test_a_batch_runs_in_one_transaction_and_answers_each_step(db: Database) -> None:
    batch = Batch()
    batch.insert_rows("usage", ("at", "platform", "action"), [(n, "cli", "link") for n in range(20_000)])
    batch.executemany("UPDATE usage SET outcome = ? WHERE at = ?", [("a", 1), ("b", 2)])
    batch.executemany("UPDATE usage SET outcome = 'never'", [])  # no rows: no statement
    batch.execute("DELETE FROM usage WHERE at >= ?", (10,))
    returning = batch.fetchall(
        "INSERT INTO media_cache (platform, post_id, variant, ref, stored_at) VALUES"
        " ('cli', '1', 'video', 'R', 0), ('cli', '2', 'video', 'S', 0)"
        " ON CONFLICT (platform, post_id, variant) DO NOTHING RETURNING post_id"
    )
    answers = await db.run_batch(batch)
    assert len(answers) == 4
    assert sorted(answers[returning]) == [("1",), ("2",)]
    assert await db.fetchall("SELECT at, outcome FROM usage WHERE outcome != 'ok' ORDER BY at") == [
        (1.0, "a"),
        (2.0, "b"),
    ]
    assert await db.fetchone("SELECT count(*) FROM usage") == (10,)
    assert await db.run_batch(Batch()) == []

    failing = Batch()
    failing.execute("DELETE FROM usage")
    failing.fetchall(
        "INSERT INTO media_cache (platform, post_id, variant, ref, stored_at) VALUES"
        " ('cli', '3', 'video', 'T', 0) RETURNING post_id"
    )
    failing.execute("INSERT INTO usage (at, platform, action) VALUES (NULL, 'cli', 'link')")
    with pytest.raises(StoreError, match="database error"):
        await db.run_batch(failing)
    # Nothing of the failed batch stayed, and no transaction was left open.
    assert await db.fetchone("SELECT count(*) FROM usage") == (10,)
    assert await db.fetchone("SELECT count(*) FROM media_cache") == (2,)
    assert await db.execute("INSERT INTO usage (at, platform, action) VALUES (1, 'cli', 'link')") == 1


async def test_sqlite_writes_are_one_trip_to_the_connection_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The point of a batch on SQLite: one call into aiosqlite's thread, not one per statement."""
    trips = 0
    real = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: object, *args: object, **kwargs: object) -> object:
        nonlocal trips
        trips += 1
        return await real(self, fn, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    db = await SqliteDatabase.open(tmp_path / "bot.sqlite3")
    try:
        trips = 0
        batch = Batch()
        batch.execute("INSERT INTO usage (at, platform, action) VALUES (1, 'cli', 'link')")
        batch.executemany("UPDATE usage SET outcome = ? WHERE at = ?", [("a", 1), ("b", 2)])
        batch.insert_rows("usage", ("at", "platform", "action"), [(2, "cli", "post")])
        await db.run_batch(batch)
        assert trips == 1
        assert await db.execute("UPDATE usage SET outcome = 'c' WHERE platform = 'cli'") == 2
        assert trips == 2
    finally:
        await db.close()


async def test_use_after_close_is_a_store_error(open_db: OpenDb) -> None:
    db = await open_db()
    await db.close()
    with pytest.raises(StoreError, match="is closed"):
        await db.fetchall("SELECT 1")
    with pytest.raises(StoreError, match="is closed"):
        await db.execute("DELETE FROM usage")
    with pytest.raises(StoreError, match="is closed"):
        await db.insert_rows("usage", ("at", "platform", "action"), [(1, "cli", "link")])
    with pytest.raises(StoreError, match="is closed"):
        async with db.transaction():
            pass
    batch = Batch()
    batch.execute("DELETE FROM usage")
    with pytest.raises(StoreError, match="is closed"):
        await db.run_batch(batch)
