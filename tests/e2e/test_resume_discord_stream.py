"""RESUME on the shared stream: a killed sharded process's missed events go into their shards' partitions.

`tiktok-bot discord` runs in a child process with REDIS__URL (a real redis-server) and DISCORD__SHARD_COUNT=2
(one process, both shards) over the shared SQLite file, and is killed with SIGKILL just after it stored some
link messages in the stream. More then go to guilds of both shards: only the dead sessions have them. The next
process RESUMEs each dead session, puts the missed events into partition `discord:<shard>` of the stream (as
the live gateway does; those the dead process stored already are not added twice), claims what the dead one
held, and answers everything: once each, one usage row each, nothing left unacknowledged in either partition.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import redis.asyncio as aioredis

from sandbox.catalogue import FixturePost, catalogue_with, synthetic_posts
from sandbox.discord import DiscordEmulator
from sandbox.redis_server import RedisServer
from sandbox.tiktok import TikTokEmulator
from sandbox.ttsave import TTSaveEmulator
from tests.e2e.crash_rig import Child, CrashRig
from tests.e2e.test_crash_discord import answers
from tests.e2e.test_discord_shards import link_channel_per_shard, pending
from tests.e2e.test_resume_discord import STARTUP, poll, saved

POSTS = synthetic_posts(12, size=200_000, serial=8_700)
BEFORE, AFTER = POSTS[:4], POSTS[4:]
CONCURRENCY = 4
LATENCY = 5.0  # seconds per media download while the stream is counted


async def send(
    emu: DiscordEmulator, channels: dict[int, int], asked: dict[int, list[int]], posts: list[FixturePost]
) -> None:
    """A link message per post, alternating between the shards' guilds."""
    demo = emu.demo
    assert demo is not None
    for n, fixture in enumerate(posts):
        shard = n % 2
        message = await emu.send_message(channels[shard], demo.member_id, f"see {fixture.url}")
        asked[shard].append(message.id)


async def test_a_killed_sharded_process_s_missed_events_are_resumed_into_the_stream(
    tmp_path: Path, redis_server: RedisServer, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    env = {
        "REDIS__URL": redis_server.url,
        "REDIS__PREFIX": redis_prefix,
        "REDIS__LEASE": "2",
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
        child: Child = rig.start("discord")
        try:
            await emu.transcript.wait_until(
                lambda: sorted(s.shard for s in emu.sessions if s.connected and s.shard) == [(0, 2), (1, 2)],
                timeout=STARTUP,
            )
            first = {s.shard[0]: s.id for s in emu.sessions if s.connected and s.shard}
            for shard, session in first.items():
                position = emu.gateway.sessions[session].seq
                await poll(lambda s=session, p=position: saved(rig, s, p), f"shard {shard}'s session saved")
            # Slow downloads: no reply goes out before the kill, and the entries stay in the stream
            # (unanswered, so unacknowledged) long enough after the restart to be counted.
            tiktok, ttsave = rig.sandbox.get(TikTokEmulator), rig.sandbox.get(TTSaveEmulator)
            tiktok.media_latency = ttsave.media_latency = LATENCY
            keys = [f"{redis_prefix}updates:discord:{shard}" for shard in (0, 1)]
            asked: dict[int, list[int]] = {0: [], 1: []}
            # Before the kill: some stored in the stream (taken by the process that dies), maybe some still in
            # the socket. The saved position may lag behind them: the RESUME replays those again.
            await send(emu, channels, asked, BEFORE)
            async with asyncio.timeout(STARTUP):
                while sum([await redis_client.xlen(key) for key in keys]) < 2:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)  # another process's progress: Redis signals nothing here
            child.kill()
            # Sent to the dead sessions: only a RESUME gets them to the bot.
            await send(emu, channels, asked, AFTER)
            for session in first.values():
                assert not emu.gateway.sessions[session].connected
            child = rig.start("discord")
            async with asyncio.timeout(STARTUP):
                # Each shard's missed events in its own partition (recovered before the worker takes any).
                while [await redis_client.xlen(key) for key in keys] != [len(asked[0]), len(asked[1])]:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)  # another process's progress: Redis signals nothing here
            tiktok.media_latency = ttsave.media_latency = 0.0
            for shard in (0, 1):
                await emu.transcript.wait_until(
                    lambda s=shard: all(answers(emu, channels[s], asked[s])[m] for m in asked[s]),
                    timeout=STARTUP,
                )
            # Every entry acknowledged (and so deleted), none held by a consumer.
            for key in keys:
                async with asyncio.timeout(60):
                    while await pending(redis_client, key) or await redis_client.xlen(key):  # noqa: ASYNC110
                        await asyncio.sleep(0.05)  # another process's progress: Redis signals nothing here
            assert not await redis_client.exists(f"{redis_prefix}updates")  # no event left unpartitioned
            # The side connections ended both old sessions with 1000.
            assert not set(first.values()) & set(emu.gateway.sessions)
        finally:
            err = await child.stop()
        for shard in (0, 1):
            counts = answers(emu, channels[shard], asked[shard])
            assert counts == Counter(dict.fromkeys(asked[shard], 1)), counts
        assert "resumed the previous gateway session of shard 0" in err, err
        assert "resumed the previous gateway session of shard 1" in err, err
        rows = rig.query("SELECT target, outcome FROM usage WHERE action = 'link'")
        assert Counter(target for target, _ in rows) == Counter(p.id for p in POSTS)
        assert {outcome for _, outcome in rows} == {"ok"}
        assert rig.query("SELECT count(*) FROM inbox WHERE done_at IS NULL") == [(0,)]
