"""The SQLite database: one file in WAL mode, with forward migrations recorded in a schema-version table."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from services.errors import StoreError

MEMORY = ":memory:"


@dataclass(frozen=True)
class Migration:
    """One step of the schema: statements run in one transaction, never dropping data."""

    version: int
    description: str
    statements: tuple[str, ...]


# Append only: a released step is never edited, since databases in the field already ran it.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "usage log, sent-media cache and chat settings",
        (
            """
            CREATE TABLE usage (
                id          INTEGER PRIMARY KEY,
                at          REAL    NOT NULL,   -- seconds since the Unix epoch, UTC
                platform    TEXT    NOT NULL,
                chat_id     TEXT,
                chat_type   TEXT,
                user_id     TEXT,
                action      TEXT    NOT NULL,
                target      TEXT,
                backend     TEXT,
                outcome     TEXT    NOT NULL DEFAULT 'ok',
                bytes_sent  INTEGER NOT NULL DEFAULT 0,
                latency_ms  REAL    NOT NULL DEFAULT 0,
                cache_hit   INTEGER NOT NULL DEFAULT 0,
                units       INTEGER NOT NULL DEFAULT 0
            )
            """,
            "CREATE INDEX usage_at ON usage (at)",
            """
            CREATE TABLE media_cache (
                platform   TEXT NOT NULL,
                post_id    TEXT NOT NULL,
                variant    TEXT NOT NULL,
                ref        TEXT NOT NULL,
                stored_at  REAL NOT NULL,
                PRIMARY KEY (platform, post_id, variant)
            ) WITHOUT ROWID
            """,
            """
            CREATE TABLE chat_settings (
                platform             TEXT    NOT NULL,
                chat_id              TEXT    NOT NULL,
                auto_download        INTEGER NOT NULL,
                captions             INTEGER NOT NULL,
                slideshow_sound      INTEGER NOT NULL,
                language             TEXT    NOT NULL,
                remove_link_message  INTEGER NOT NULL,
                updated_at           REAL    NOT NULL,
                PRIMARY KEY (platform, chat_id)
            ) WITHOUT ROWID
            """,
        ),
    ),
    Migration(
        2,
        "per-user index for privacy requests; the size of each cached media file",
        (
            "CREATE INDEX usage_user ON usage (platform, user_id)",
            "ALTER TABLE media_cache ADD COLUMN size INTEGER",
        ),
    ),
    Migration(
        3,
        "each chat's video quality choice (auto follows DOWNLOAD__QUALITY)",
        ("ALTER TABLE chat_settings ADD COLUMN quality TEXT NOT NULL DEFAULT 'auto'",),
    ),
    Migration(
        4,
        "durable inbox of updates taken from the platforms, and its replay/expiry log",
        (
            # One row per update the bot took; payload is the platform's JSON, kept until it is answered.
            """
            CREATE TABLE inbox (
                platform     TEXT    NOT NULL,
                key          TEXT    NOT NULL,
                kind         TEXT    NOT NULL,
                payload      TEXT    NOT NULL,
                received_at  REAL    NOT NULL,
                state        TEXT    NOT NULL DEFAULT 'new',
                attempts     INTEGER NOT NULL DEFAULT 0,
                done_at      REAL,
                PRIMARY KEY (platform, key)
            )
            """,
            "CREATE INDEX inbox_open ON inbox (platform, done_at, received_at)",
            "CREATE INDEX inbox_done ON inbox (done_at)",
            """
            CREATE TABLE inbox_log (
                at        REAL NOT NULL,
                platform  TEXT NOT NULL,
                event     TEXT NOT NULL,
                key       TEXT NOT NULL
            )
            """,
            "CREATE INDEX inbox_log_at ON inbox_log (at)",
        ),
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1].version

# Bound parameters per statement: 32766 since SQLite 3.32, 999 before.
_MAX_VARIABLES = 32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999


class Database:
    """One SQLite connection (its own thread via aiosqlite); writes are serialised by a lock."""

    def __init__(self, conn: aiosqlite.Connection, path: str, version: int) -> None:
        self._conn = conn
        self._path = path
        self._version = version
        # One connection serves every task: a transaction must not interleave with another task's writes.
        self._write_lock = asyncio.Lock()
        self._closed = False

    @classmethod
    async def open(
        cls,
        path: Path | str,
        *,
        busy_timeout_ms: int = 5000,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> Database:
        """Open (creating it and its directory) the database at `path` and bring its schema up to date."""
        name = str(path)
        if name != MEMORY:
            try:
                Path(name).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the directory for {name}: {exc}") from exc
        try:
            # isolation_level=None: no implicit BEGIN; every transaction below is explicit.
            conn = await aiosqlite.connect(name, isolation_level=None, timeout=busy_timeout_ms / 1000)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the database {name}: {exc}") from exc
        try:
            await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            if name != MEMORY:
                await _use_wal(conn, busy_timeout_ms / 1000)
            # In WAL mode NORMAL survives a process crash; only an OS crash may lose the last commits.
            await conn.execute("PRAGMA synchronous = NORMAL")
            version = await _migrate(conn, name, migrations)
        except BaseException as exc:
            await conn.close()
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"cannot open the database {name}: {exc}") from exc
            raise
        return cls(conn, name, version)

    @property
    def path(self) -> str:
        """The file this database lives in (or `:memory:`)."""
        return self._path

    @property
    def version(self) -> int:
        """The schema version after migrations."""
        return self._version

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction (BEGIN IMMEDIATE … COMMIT, rolled back on error) holding the write lock."""
        self._check_open()
        async with self._write_lock:
            try:
                await self._conn.execute("BEGIN IMMEDIATE")
                yield self._conn
                await self._conn.execute("COMMIT")
            except BaseException as exc:
                # Also after a cancellation: the statement may still have run in the connection's thread.
                await _rollback(self._conn)
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"database error: {exc}") from exc
                raise

    async def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> int:
        """Run one write statement in its own transaction; return the number of rows it changed."""
        async with self.transaction() as conn:
            cursor = await conn.execute(sql, params)
            count = cursor.rowcount
            await cursor.close()
        return count

    async def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Insert rows atomically with as few statements as SQLite's variable limit allows.

        One multi-row INSERT rather than executemany: about twice as fast, and one release of the GIL around
        the statement's step instead of one per row (each retake may wait behind a busy event loop).
        """
        self._check_open()
        if not rows:
            return
        per_chunk = max(1, _MAX_VARIABLES // len(columns))
        row_marks = "(" + ", ".join("?" * len(columns)) + ")"
        head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "  # noqa: S608 - names are code constants
        statements: list[tuple[str, list[Any]]] = []
        for start in range(0, len(rows), per_chunk):
            chunk = rows[start : start + per_chunk]
            statements.append((head + ", ".join([row_marks] * len(chunk)), [v for row in chunk for v in row]))
        if len(statements) == 1:
            # A single statement is its own transaction: one round trip to the connection's thread.
            async with self._write_lock:
                try:
                    await self._conn.execute(*statements[0])
                except sqlite3.Error as exc:
                    raise StoreError(f"database error: {exc}") from exc
            return
        async with self.transaction() as conn:
            for sql, values in statements:
                await conn.execute(sql, values)

    async def fetchall(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> list[tuple[Any, ...]]:
        """Rows of a read query."""
        self._check_open()
        try:
            rows = await self._conn.execute_fetchall(sql, params)
        except sqlite3.Error as exc:
            raise StoreError(f"database error: {exc}") from exc
        return [tuple(row) for row in rows]

    async def fetchone(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> tuple[Any, ...] | None:
        """The first row of a read query, or None."""
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def integrity_check(self) -> str:
        """SQLite's own consistency check: `ok` when the file is sound."""
        rows = await self.fetchall("PRAGMA integrity_check")
        return "; ".join(str(row[0]) for row in rows)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the database {self._path} is closed")

    async def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._closed:
            return
        self._closed = True
        async with self._write_lock:
            with contextlib.suppress(sqlite3.Error):  # only a planner hint; closing matters more
                await self._conn.execute("PRAGMA optimize")
            await self._conn.close()


async def schema_version(conn: aiosqlite.Connection) -> int:
    """The highest applied migration, 0 for a database without a schema-version table."""
    rows = list(
        await conn.execute_fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        )
    )
    if not rows:
        return 0
    found = list(await conn.execute_fetchall("SELECT max(version) FROM schema_version"))
    value = found[0][0] if found else None
    return int(value or 0)


async def _migrate(conn: aiosqlite.Connection, name: str, migrations: Sequence[Migration]) -> int:
    """Apply every migration newer than the database, each in its own transaction; return the version."""
    latest = migrations[-1].version if migrations else 0
    current = await schema_version(conn)
    if current > latest:
        raise StoreError(
            f"the database {name} has schema version {current}, newer than this code understands "
            f"({latest}); upgrade tiktok-bot, or point it at another database file"
        )
    for migration in migrations:
        if migration.version <= current:
            continue
        await conn.execute("BEGIN IMMEDIATE")
        try:
            # Read again under the write lock: another process may have migrated while we waited.
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                " version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
            if await schema_version(conn) < migration.version:
                for statement in migration.statements:
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.description, time.time()),
                )
            await conn.execute("COMMIT")
        except BaseException as exc:
            await _rollback(conn)
            if isinstance(exc, sqlite3.Error):
                raise StoreError(
                    f"migration {migration.version} ({migration.description}) of {name} failed: {exc}"
                ) from exc
            raise
        current = migration.version
    return current


async def _use_wal(conn: aiosqlite.Connection, patience: float) -> None:
    """Switch the file to WAL, waiting out another process that holds it (SQLite's busy handler does not)."""
    deadline = time.monotonic() + patience
    while True:
        try:
            await conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            # Changing the journal mode needs the file to itself; a second process opening it at the same
            # moment gets "locked" at once rather than after busy_timeout.
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.01)


async def _rollback(conn: aiosqlite.Connection) -> None:
    """Roll back the open transaction, if SQLite has not already."""
    # SQLite may have rolled back already (e.g. after SQLITE_FULL); then nothing is left open.
    with contextlib.suppress(sqlite3.Error):
        await conn.execute("ROLLBACK")
