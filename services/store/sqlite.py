"""The SQLite engine: one file in WAL mode, one connection (a thread of its own via aiosqlite)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from services.errors import StoreError
from services.store.db import (
    DIALECTS,
    MIGRATIONS,
    SCHEMA_VERSION_TABLE,
    Batch,
    Engine,
    Migration,
    Params,
    insert_statements,
    newer_than_code,
    run_batch_in,
)

MEMORY = ":memory:"

# Bound parameters per statement: 32766 since SQLite 3.32, 999 before.
_MAX_VARIABLES = 32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999


class _SqliteTransaction:
    """Statements on the connection while `SqliteDatabase.transaction` holds it."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        cursor = await self._conn.execute(sql, params)
        count = cursor.rowcount
        await cursor.close()
        return count

    async def fetchall(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in await self._conn.execute_fetchall(sql, params)]

    async def fetchone(self, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self._conn.executemany(sql, rows)

    async def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            for sql, values in insert_statements(table, columns, rows, _MAX_VARIABLES):
                await self._conn.execute(sql, values)


class SqliteDatabase:
    """One SQLite connection; a lock keeps one task's transaction from interleaving with another's writes."""

    def __init__(self, conn: aiosqlite.Connection, path: str, version: int) -> None:
        self._conn = conn
        self._path = path
        self._version = version
        # One connection serves every task: a transaction must not interleave with another task's writes.
        self._write_lock = asyncio.Lock()
        self._closed = False
        # aiosqlite runs every call in its thread through `Connection._execute` (there is no public way in);
        # with it, a whole write goes in one trip. Without it (another aiosqlite), one trip per statement.
        call = getattr(conn, "_execute", None)
        raw = getattr(conn, "_connection", None)
        self._direct: tuple[Callable[..., Awaitable[Any]], sqlite3.Connection] | None = (
            (call, raw) if callable(call) and isinstance(raw, sqlite3.Connection) else None
        )

    @classmethod
    async def open(
        cls,
        path: Path | str,
        *,
        busy_timeout_ms: int = 5000,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> SqliteDatabase:
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
    def engine(self) -> Engine:
        """Always `sqlite`."""
        return "sqlite"

    @property
    def name(self) -> str:
        """The file this database lives in (or `:memory:`)."""
        return self._path

    @property
    def path(self) -> str:
        """The file this database lives in (or `:memory:`)."""
        return self._path

    @property
    def version(self) -> int:
        """The schema version after migrations."""
        return self._version

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_SqliteTransaction]:
        """A write transaction (BEGIN IMMEDIATE … COMMIT, rolled back on error) holding the write lock."""
        self._check_open()
        async with self._write_lock:
            try:
                await self._conn.execute("BEGIN IMMEDIATE")
                yield _SqliteTransaction(self._conn)
                await self._conn.execute("COMMIT")
            except BaseException as exc:
                # Also after a cancellation: the statement may still have run in the connection's thread.
                await _rollback(self._conn)
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"database error: {exc}") from exc
                raise

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one write statement in its own transaction; return the number of rows it changed."""
        self._check_open()
        if self._direct is None:
            async with self.transaction() as tx:
                return await tx.execute(sql, params)
        # One statement is its own transaction in autocommit mode: it and its row count in one trip to the
        # connection's thread (BEGIN, the statement, closing its cursor and COMMIT were four).
        count: int = await self._in_thread(_run_one, sql, params)
        return count

    async def run_batch(self, batch: Batch) -> list[list[tuple[Any, ...]]]:
        """Run a batch in one write transaction, in one trip to the connection's thread; rows per step."""
        self._check_open()
        if not batch:
            return []
        if self._direct is None:
            async with self.transaction() as tx:
                return await run_batch_in(tx, batch)
        results: list[list[tuple[Any, ...]]] = await self._in_thread(_run_steps, list(batch.steps))
        return results

    async def _in_thread(self, function: Callable[..., Any], *args: Any) -> Any:
        """`function(sqlite3_connection, *args)` in the connection's thread, holding the write lock."""
        assert self._direct is not None
        call, raw = self._direct
        async with self._write_lock:
            try:
                return await call(function, raw, *args)
            except sqlite3.Error as exc:
                raise StoreError(f"database error: {exc}") from exc

    async def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Insert rows atomically with as few statements as SQLite's variable limit allows.

        One multi-row INSERT rather than executemany: about twice as fast, and one release of the GIL around
        the statement's step instead of one per row (each retake may wait behind a busy event loop).
        """
        self._check_open()
        if not rows:
            return
        statements = insert_statements(table, columns, rows, _MAX_VARIABLES)
        if len(statements) == 1:
            # A single statement is its own transaction: one round trip to the connection's thread.
            async with self._write_lock:
                try:
                    await self._conn.execute(*statements[0])
                except sqlite3.Error as exc:
                    raise StoreError(f"database error: {exc}") from exc
            return
        async with self.transaction() as tx:
            await tx.insert_rows(table, columns, rows)

    async def fetchall(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """Rows of a read query."""
        self._check_open()
        try:
            rows = await self._conn.execute_fetchall(sql, params)
        except sqlite3.Error as exc:
            raise StoreError(f"database error: {exc}") from exc
        return [tuple(row) for row in rows]

    async def fetchone(self, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
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


def _run_one(conn: sqlite3.Connection, sql: str, params: Params) -> int:
    """One statement in autocommit mode, in the connection's thread; the number of rows it changed."""
    cursor = conn.execute(sql, params)
    try:
        return cursor.rowcount
    finally:
        cursor.close()


def _run_steps(conn: sqlite3.Connection, steps: list[tuple[str, str, Any]]) -> list[list[tuple[Any, ...]]]:
    """A batch's statements between BEGIN IMMEDIATE and COMMIT, in the connection's thread; rows per step."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        results: list[list[tuple[Any, ...]]] = []
        for kind, sql, arg in steps:
            rows: list[tuple[Any, ...]] = []
            if kind == "fetchall":
                rows = [tuple(row) for row in conn.execute(sql, arg).fetchall()]
            elif kind == "executemany":
                conn.executemany(sql, arg)
            elif kind == "insert_rows":
                for text, values in insert_statements(sql, arg[0], arg[1], _MAX_VARIABLES):
                    conn.execute(text, values)
            else:
                conn.execute(sql, arg)
            results.append(rows)
        conn.execute("COMMIT")
    except BaseException:
        # SQLite may have rolled back already (e.g. after SQLITE_FULL); then nothing is left open.
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    return results


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
        raise newer_than_code(name, current, latest)
    for migration in migrations:
        if migration.version <= current:
            continue
        await conn.execute("BEGIN IMMEDIATE")
        try:
            # Read again under the write lock: another process may have migrated while we waited.
            await conn.execute(SCHEMA_VERSION_TABLE.format_map(DIALECTS["sqlite"]))
            if await schema_version(conn) < migration.version:
                for statement in migration.render("sqlite"):
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
