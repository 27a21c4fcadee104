"""Discord on the shared stream (REDIS__URL): link messages and slash commands go through their shard's
partition of the stream and are answered from it, with usage rows and done tombstones in the database."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from tests.e2e.discord.conftest import CLIP, DiscordRun, url
from tests.engines.redis import RedisServer


@pytest.fixture
def extra_env(redis_server: RedisServer, redis_prefix: str) -> dict[str, str]:
    return {"REDIS__URL": redis_server.url, "REDIS__PREFIX": redis_prefix, "REDIS__LEASE": "2"}


async def test_messages_and_commands_are_answered_from_the_stream(
    discord_bot: DiscordRun, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    run = discord_bot
    assert run.app.deliveries.shared
    inter = await run.command("post", link=url(CLIP), locale="en-US")
    message = await run.paste(f"look {url(CLIP)}")
    await run.answered(inter)
    await run.reply_to(message)
    await run.settled()
    partition = f"{redis_prefix}updates:discord:0"
    keys = {f"interaction:{inter.id}", f"message:{message.id}"}
    db = run.app.store.db
    async with asyncio.timeout(10):
        while True:  # the completion lands a moment after the reply
            done = {str(k) for (k,) in await db.fetchall("SELECT key FROM inbox WHERE done_at IS NOT NULL")}
            if keys <= done and not await redis_client.xlen(partition):
                break
            await asyncio.sleep(0.02)
    [group] = await redis_client.xinfo_groups(partition)
    assert group["pending"] == 0 and group["last-delivered-id"] != "0-0"  # handed out through the stream
    assert not await redis_client.keys(f"{redis_prefix}state:*")  # the deferred note went with its entry
    rows = await db.fetchall(
        "SELECT action, outcome FROM usage WHERE action IN ('post', 'link') ORDER BY action"
    )
    assert rows == [("link", "ok"), ("post", "ok")]
