"""The PostgreSQL engine: a pool of asyncpg connections, for several bot processes sharing one database.

Statements arrive in the store's shared SQL (`?` or `:name` parameters) and are numbered for PostgreSQL by
`services.store.db.bind`. Migrations take a transaction-scoped advisory lock, so replicas starting together
apply each step once. Errors of the driver or the network surface as `StoreError`, with the URL's password
masked wherever the URL is named.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from services.errors import StoreError
from services.store.db import (
    DIALECTS,
    MIGRATIONS,
    SCHEMA_VERSION_TABLE,
    Batch,
    Engine,
    Migration,
    Params,
    bind,
    masked_url,
    newer_than_code,
    numbered,
    run_batch_in,
)

# Any number will do as long as it is constant: it names the lock replicas take while migrating.
_MIGRATION_LOCK = 0x7469_6B74_6F6B  # "tiktok"
_Connection = asyncpg.Connection | PoolConnectionProxy
_FAILURES = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


def _rowcount(status: str) -> int:
    """Rows changed, from a command status such as `INSERT 0 3` or `DELETE 2` (0 for other commands)."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class _PostgresTransaction:
    """Statements on the connection `PostgresDatabase.transaction` holds."""

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        text, args = bind(sql, params)
        return _rowcount(await self._conn.execute(text, *args))

    async def fetchall(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        text, args = bind(sql, params)
        return [tuple(record) for record in await self._conn.fetch(text, *args)]

    async def fetchone(self, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        text, _ = numbered(sql)
        await self._conn.executemany(text, rows)

    async def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            await self._conn.executemany(_insert_sql(table, columns), rows)


def _insert_sql(table: str, columns: Sequence[str]) -> str:
    """One row's INSERT with numbered parameters; `executemany` pipelines the rows through it."""
    marks = ", ".join(f"${n}" for n in range(1, len(columns) + 1))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"  # noqa: S608 - code constants


class PostgresDatabase:
    """A pool of connections to one PostgreSQL database; PostgreSQL itself orders concurrent writes."""

    def __init__(self, pool: asyncpg.Pool, name: str, version: int) -> None:
        self._pool = pool
        self._name = name
        self._version = version
        self._closed = False

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        pool_size: int = 10,
        connect_timeout: float = 10.0,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> PostgresDatabase:
        """Connect to the database at `url` (postgresql://user:password@host:port/db) and migrate it."""
        name = masked_url(url)
        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=1,
                max_size=pool_size,
                timeout=connect_timeout,
                server_settings={"application_name": "tiktok-bot"},
            )
        except (*_FAILURES, ValueError) as exc:
            raise StoreError(f"cannot open the database {name}: {_without_secret(exc, url)}") from exc
        try:
            async with pool.acquire() as conn:
                version = await _migrate(conn, name, migrations)
        except BaseException as exc:
            pool.terminate()
            if isinstance(exc, _FAILURES):
                raise StoreError(f"cannot open the database {name}: {exc}") from exc
            raise
        return cls(pool, name, version)

    @property
    def engine(self) -> Engine:
        """Always `postgres`."""
        return "postgres"

    @property
    def name(self) -> str:
        """The database's URL with its password masked."""
        return self._name

    @property
    def version(self) -> int:
        """The schema version after migrations."""
        return self._version

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_PostgresTransaction]:
        """A transaction on one pooled connection: committed at the end, rolled back when the block raises."""
        self._check_open()
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                yield _PostgresTransaction(conn)
        except _FAILURES as exc:
            raise StoreError(f"database error: {exc}") from exc

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one write statement (its own transaction); return the number of rows it changed."""
        self._check_open()
        text, args = bind(sql, params)
        try:
            return _rowcount(await self._pool.execute(text, *args))
        except _FAILURES as exc:
            raise StoreError(f"database error: {exc}") from exc

    async def run_batch(self, batch: Batch) -> list[list[tuple[Any, ...]]]:
        """Run a batch in one transaction on one pooled connection; rows per step."""
        if not batch:
            return []
        async with self.transaction() as tx:
            return await run_batch_in(tx, batch)

    async def insert_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Insert rows atomically: one prepared INSERT, its rows pipelined by `executemany`."""
        self._check_open()
        if not rows:
            return
        try:
            await self._pool.executemany(_insert_sql(table, columns), rows)
        except _FAILURES as exc:
            raise StoreError(f"database error: {exc}") from exc

    async def fetchall(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """Rows of a read query."""
        self._check_open()
        text, args = bind(sql, params)
        try:
            return [tuple(record) for record in await self._pool.fetch(text, *args)]
        except _FAILURES as exc:
            raise StoreError(f"database error: {exc}") from exc

    async def fetchone(self, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
        """The first row of a read query, or None."""
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the database {self._name} is closed")

    async def close(self) -> None:
        """Close the pool, waiting a while for queries in flight (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.wait_for(self._pool.close(), timeout=10)
        except (TimeoutError, *_FAILURES):
            self._pool.terminate()


async def schema_version(conn: _Connection) -> int:
    """The highest applied migration, 0 for a database without a schema-version table."""
    if await conn.fetchval("SELECT to_regclass('schema_version')") is None:
        return 0
    return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version"))


async def _migrate(conn: _Connection, name: str, migrations: Sequence[Migration]) -> int:
    """Apply every migration newer than the database, each in its own transaction; return the version."""
    latest = migrations[-1].version if migrations else 0
    current = await schema_version(conn)
    if current > latest:
        raise newer_than_code(name, current, latest)
    for migration in migrations:
        if migration.version <= current:
            continue
        try:
            async with conn.transaction():
                # One replica migrates at a time; the others find the step done once they get the lock.
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
                await conn.execute(SCHEMA_VERSION_TABLE.format_map(DIALECTS["postgres"]))
                if await schema_version(conn) < migration.version:
                    for statement in migration.render("postgres"):
                        await conn.execute(statement)
                    await conn.execute(
                        "INSERT INTO schema_version (version, description, applied_at) VALUES ($1, $2, $3)",
                        migration.version,
                        migration.description,
                        time.time(),
                    )
        except asyncpg.PostgresError as exc:
            raise StoreError(
                f"migration {migration.version} ({migration.description}) of {name} failed: {exc}"
            ) from exc
        current = migration.version
    return current


def _without_secret(exc: BaseException, url: str) -> str:
    """The error's text with the URL's password (if the driver quoted it) masked."""
    text = str(exc)
    with contextlib.suppress(ValueError):
        password = urlsplit(url).password
        if password:
            text = text.replace(password, "****")
    return text
