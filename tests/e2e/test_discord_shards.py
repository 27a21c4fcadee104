"""Discord shards on the shared stream: two bot processes, one shard each, a real redis-server and PostgreSQL.

`tiktok-bot discord` runs twice in child processes with DISCORD__SHARD_COUNT=2 (shard 0 in one, shard 1 in the
other) against the Discord emulator, which routes each guild's events to its shard like Discord:
`(guild_id >> 22) % 2`. Link messages in guilds of both shards are answered (each process puts its shard's
events into its partition of the stream and answers them). Then the shard-1 process is SIGKILLed while it
holds entries of a burst (taken from the stream, downloads in progress): the shard-0 process claims them once
the claim timeout (REDIS__LEASE) passed and answers every one through REST, although the guild is not in its
cache. Usage rows: exactly one per message, in the shared PostgreSQL.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from sandbox.catalogue import catalogue_with, synthetic_posts
from sandbox.discord import DiscordEmulator
from sandbox.tiktok import TikTokEmulator
from sandbox.ttsave import TTSaveEmulator
from tests.e2e.crash_rig import Child, CrashRig
from tests.engines.postgres import PostgresServer
from tests.engines.redis import RedisServer

POSTS = synthetic_posts(10, size=200_000, serial=9_100)
FIRST, BURST = POSTS[:4], POSTS[4:]
CONCURRENCY = 4
LEASE = 2  # seconds: a killed process's stream entries pass to the other after this
_databases = itertools.count(1)


@pytest.fixture
async def database_url(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """A fresh PostgreSQL database both processes share."""
    name = f"shards_{next(_databases)}"
    admin = await asyncpg.connect(postgres_server.url())
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        yield postgres_server.url(name)
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    finally:
        await admin.close()


def replies(emu: DiscordEmulator, channel_id: int, asked: list[int]) -> Counter[int]:
    """The bot's replies per asked message."""
    counts: Counter[int] = Counter()
    for m in emu.messages_in(channel_id):
        if m.author_id == emu.world.bot.id and m.reference is not None:
            counts[int(m.reference.get("message_id", 0))] += 1
    return Counter({k: v for k, v in counts.items() if k in set(asked)})


def guild_per_shard(emu: DiscordEmulator) -> dict[int, int]:
    """Shard -> a guild of it (guild ids carry their creation time in ms: a new one until both have one)."""
    found: dict[int, int] = {}
    while len(found) < 2:
        guild = emu.add_guild(f"Guild {len(emu.world.guilds)}")
        found.setdefault((guild.id >> 22) % 2, guild.id)
    return found


def link_channel_per_shard(emu: DiscordEmulator, member_id: int) -> dict[int, int]:
    """Shard -> a "links" channel in a guild of that shard, `member_id` a member of each guild."""
    guilds = guild_per_shard(emu)
    for guild in guilds.values():
        emu.add_member(guild, member_id)
    return {shard: emu.add_text_channel(guild, "links").id for shard, guild in guilds.items()}


async def pending_until(redis: aioredis.Redis, key: str, done: Callable[[int], bool]) -> None:
    """Wait until the partition's pending count satisfies `done` (the children's progress signals nothing
    here but through Redis)."""
    async with asyncio.timeout(60):
        while not done(await pending(redis, key)):  # noqa: ASYNC110 -- another process's progress
            await asyncio.sleep(0.02)


async def pending(redis: aioredis.Redis, key: str) -> int:
    """Entries of a stream partition handed out and not acknowledged."""
    if not await redis.exists(key):
        return 0
    summary = await redis.xpending(key, "workers")
    return int(summary["pending"])


async def test_two_shard_processes_answer_both_shards_and_a_killed_ones_entries(
    tmp_path: Path,
    redis_server: RedisServer,
    redis_client: aioredis.Redis,
    redis_prefix: str,
    database_url: str,
) -> None:
    env = {
        "REDIS__URL": redis_server.url,
        "REDIS__PREFIX": redis_prefix,
        "REDIS__LEASE": str(LEASE),
        "DATABASE__URL": database_url,
        "DISCORD__SHARD_COUNT": "2",
        "LIMITS__CONCURRENCY": str(CONCURRENCY),
        "LIMITS__USER_PER_MINUTE": "100",
        "LIMITS__CHAT_PER_MINUTE": "100",
    }
    async with CrashRig(tmp_path, catalogue_with(POSTS), env) as rig:
        emu = rig.sandbox.get(DiscordEmulator)
        demo = emu.demo
        assert demo is not None
        channels = link_channel_per_shard(emu, demo.member_id)
        children: dict[int, Child] = {
            shard: rig.start("discord", env={"DISCORD__SHARD_IDS": str(shard)}) for shard in (0, 1)
        }
        try:
            await emu.transcript.wait_until(
                lambda: sorted(s.shard for s in emu.sessions if s.connected and s.shard) == [(0, 2), (1, 2)],
                timeout=90,
            )
            # Both shards: each process answers its own guild's links.
            asked: dict[int, list[int]] = {0: [], 1: []}
            for n, fixture in enumerate(FIRST):
                shard = n % 2
                message = await emu.send_message(channels[shard], demo.member_id, f"see {fixture.url}")
                asked[shard].append(message.id)
            for shard in (0, 1):
                await emu.transcript.wait_until(
                    lambda s=shard: all(replies(emu, channels[s], asked[s])[m] for m in asked[s]), timeout=90
                )
            for shard in (0, 1):  # both partitions of the stream were used and are acknowledged
                assert await redis_client.exists(f"{redis_prefix}updates:discord:{shard}")
                await pending_until(redis_client, f"{redis_prefix}updates:discord:{shard}", lambda n: n == 0)

            # A burst in shard 1's guild, downloads slowed so shard 1's process holds its entries when killed.
            tiktok, ttsave = rig.sandbox.get(TikTokEmulator), rig.sandbox.get(TTSaveEmulator)
            tiktok.media_latency = ttsave.media_latency = 2.0
            burst = [
                (await emu.send_message(channels[1], demo.member_id, f"now {fixture.url}")).id
                for fixture in BURST
            ]
            partition = f"{redis_prefix}updates:discord:1"
            await pending_until(redis_client, partition, lambda n: n == len(burst))
            children[1].kill()
            assert not replies(emu, channels[1], burst)  # killed before any reply went out
            tiktok.media_latency = ttsave.media_latency = 0.0
            # Shard 0's process claims them after the lease and answers in shard 1's guild through REST.
            await emu.transcript.wait_until(
                lambda: all(replies(emu, channels[1], burst)[m] for m in burst), timeout=120
            )
            assert max(replies(emu, channels[1], burst).values()) == 1
            await pending_until(redis_client, partition, lambda n: n == 0)
        finally:
            for child in children.values():
                if child.proc.poll() is None:
                    await child.stop()
        db = await asyncpg.connect(database_url)
        try:
            rows = await db.fetch("SELECT target, outcome FROM usage WHERE action = 'link'")
            replayed = await db.fetchval("SELECT count(*) FROM inbox_log WHERE event = 'replayed'")
            open_entries = await db.fetchval("SELECT count(*) FROM inbox WHERE done_at IS NULL")
        finally:
            await db.close()
        # One row per message, whichever process answered it; the burst counted as replayed by the claimer.
        assert Counter(r["target"] for r in rows) == Counter(p.id for p in POSTS)
        assert {r["outcome"] for r in rows} == {"ok"}
        assert replayed == len(burst)
        assert open_entries == 0
