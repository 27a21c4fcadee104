"""Redis fixtures: one real redis-server per test session (sandbox/redis_server.py), a key prefix per test."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from sandbox.redis_server import RedisServer

__all__ = ["RedisServer", "redis_client", "redis_prefix", "redis_server"]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the whole test session."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix of this test's own, so tests sharing the server never see each other's keys."""
    return f"test-{secrets.token_hex(4)}:"


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A client of the session's redis-server, closed after the test."""
    client = aioredis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()
