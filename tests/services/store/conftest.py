"""Fixtures for the store tests: every test that takes `db`, `store` or `open_db` runs on both engines.

SQLite: a file in a temporary directory. PostgreSQL: a fresh schema of the session's server (see
`tests/engines/postgres.py`), named in the URL's `search_path`, so each test starts from an empty database.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import pytest

from services.store import Store
from services.store.db import MIGRATIONS, Database, Engine, Migration
from services.store.postgres import PostgresDatabase
from services.store.sqlite import SqliteDatabase
from tests.engines.postgres import PostgresServer

_schemas = itertools.count(1)
OpenStore = Callable[..., Awaitable[Store]]
NewUrl = Callable[[], Awaitable[str]]


class OpenDb(Protocol):
    """Opens (again) the test's database on the test's engine."""

    def __call__(self, *, migrations: Sequence[Migration] = MIGRATIONS) -> Awaitable[Database]: ...


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest) -> Engine:
    engine: Engine = request.param
    return engine


@pytest.fixture
async def new_url(engine: Engine, request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[NewUrl]:
    """Makes the location of another empty database on the test's engine (dropped after the test)."""
    made: list[str] = []
    admin: asyncpg.Connection | None = None

    async def make() -> str:
        nonlocal admin
        if engine == "sqlite":
            return str(tmp_path / f"db{len(made) + 1}" / "bot.sqlite3")
        server: PostgresServer = request.getfixturevalue("postgres_server")
        if admin is None:
            admin = await asyncpg.connect(server.url())
        schema = f"test_{next(_schemas)}"
        await admin.execute(f"CREATE SCHEMA {schema}")
        made.append(schema)
        return server.url(search_path=schema)

    yield make
    if admin is not None:
        for schema in made:
            await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()


@pytest.fixture
async def db_url(new_url: NewUrl) -> str:
    """Where the test's database lives: a SQLite file path, or a PostgreSQL URL with its own schema."""
    return await new_url()


async def open_url(engine: Engine, url: str, migrations: Sequence[Migration] = MIGRATIONS) -> Database:
    """The test's engine, opened at `url`."""
    if engine == "sqlite":
        return await SqliteDatabase.open(url, migrations=migrations)
    return await PostgresDatabase.open(url, migrations=migrations)


@pytest.fixture
def open_db(engine: Engine, db_url: str) -> OpenDb:
    async def open_database(*, migrations: Sequence[Migration] = MIGRATIONS) -> Database:
        return await open_url(engine, db_url, migrations)

    return open_database


@pytest.fixture
async def db(open_db: OpenDb) -> AsyncIterator[Database]:
    database = await open_db()
    yield database
    await database.close()


async def assert_sound(db: Database) -> None:
    """SQLite's own consistency check passes (PostgreSQL keeps its files consistent without being asked)."""
    if isinstance(db, SqliteDatabase):
        assert await db.integrity_check() == "ok"


@pytest.fixture
def open_store(open_db: OpenDb) -> OpenStore:
    """Opens a Store on the test's database with the given usage-log options."""

    async def open_store(**options: Any) -> Store:
        return await Store.open(await open_db(), **options)

    return open_store


@pytest.fixture
async def store(open_store: OpenStore) -> AsyncIterator[Store]:
    opened = await open_store(flush_rows=50, flush_ms=20)
    yield opened
    await opened.aclose()
