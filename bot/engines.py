"""The one place that picks each engine: the store (SQLite or PostgreSQL) and shared state (memory or Redis).

Kept apart from `bot.wiring` (which pulls in the chat flow, metrics and aiohttp) so that `tiktok-bot stats`
opens the database without paying for the whole bot; each engine's driver is imported only when chosen.
"""

from __future__ import annotations

import logging

from bot.config import DatabaseSettings, Settings
from services.shared import SharedState
from services.shared.memory import memory_state
from services.store.db import Database

log = logging.getLogger("tiktok_bot.wiring")


async def open_database(settings: DatabaseSettings, *, create: bool = True) -> Database:
    """The engine DATABASE__URL names, opened and migrated: the one place that picks SQLite or PostgreSQL.

    With `create` off, a SQLite file that does not exist yet reads as an empty database and is not created.
    """
    if settings.engine == "postgres":
        assert settings.url is not None
        # Imported only when chosen: asyncpg costs ~50 ms of start-up that a bot on SQLite never uses.
        from services.store.postgres import PostgresDatabase

        return await PostgresDatabase.open(settings.url.get_secret_value(), pool_size=settings.pool_size)
    from services.store.sqlite import MEMORY, SqliteDatabase

    path = settings.sqlite_path
    if not create and not path.exists():
        return await SqliteDatabase.open(MEMORY)
    return await SqliteDatabase.open(path)


async def build_shared_state(settings: Settings) -> SharedState:
    """The one place the engine of shared state is chosen: Redis when REDIS__URL is set, else this process."""
    url = settings.redis.url
    if url is None or not url.get_secret_value():
        return memory_state()
    # Imported only when chosen: redis-py costs ~50 ms of start-up that one process on SQLite never uses.
    from services.shared.redis import connect as connect_redis
    from services.shared.redis import redis_state

    client = connect_redis(url.get_secret_value(), client_name="tiktok-bot")
    try:
        state = await redis_state(client, prefix=settings.redis.prefix, lease=settings.redis.lease)
    except BaseException:
        await client.aclose()
        raise
    log.info("shared state in Redis", extra={"action": "startup", "backend": "redis"})
    return state
