"""What only the Redis engine promises: state shared between processes, and leases that lapse."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from services.shared import SharedState
from services.shared.redis import RedisFlightLocks, RedisUpdateStream, redis_state
from tests.engines.redis import RedisServer


@pytest.fixture
async def replicas(redis_server: RedisServer, redis_prefix: str) -> AsyncIterator[list[SharedState]]:
    """Two engines on two connection pools: two replicas as far as Redis can tell."""
    states = [
        await redis_state(aioredis.from_url(redis_server.url, decode_responses=True), prefix=redis_prefix)
        for _ in range(2)
    ]
    yield states
    for state in states:
        await state.aclose()


async def test_one_holder_across_replicas(replicas: list[SharedState]) -> None:
    inside = 0
    peak = 0

    async def work(state: SharedState) -> None:
        nonlocal inside, peak
        async with state.locks.hold("post:1"):
            inside += 1
            peak = max(peak, inside)
            await asyncio.sleep(0.02)
            inside -= 1

    await asyncio.gather(*(work(replicas[i % 2]) for i in range(8)))
    assert peak == 1


async def test_a_dead_holders_lease_lapses(redis_server: RedisServer, redis_prefix: str) -> None:
    client = aioredis.from_url(redis_server.url, decode_responses=True)
    try:
        # A replica that took the lease and died: nobody renews or releases it.
        await client.set(redis_prefix + "lock:post:2", "dead-replica", px=300)
        locks = RedisFlightLocks(client, redis_prefix, lease=5)
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with asyncio.timeout(10), locks.hold("post:2"):
            waited = loop.time() - started
            assert await client.get(redis_prefix + "lock:post:2") != "dead-replica"
        assert waited >= 0.2
        assert await client.get(redis_prefix + "lock:post:2") is None  # released by its holder
    finally:
        await client.aclose()


async def test_a_live_holder_keeps_its_lease_past_the_lease_time(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    client = aioredis.from_url(redis_server.url, decode_responses=True)
    try:
        locks = RedisFlightLocks(client, redis_prefix, lease=0.3)
        other = RedisFlightLocks(client, redis_prefix, lease=0.3)
        got_in = asyncio.Event()

        async def waiter() -> None:
            async with other.hold("post:3"):
                got_in.set()

        async with locks.hold("post:3"):
            task = asyncio.create_task(waiter())
            await asyncio.sleep(1.0)  # over three lease times: renewed, so the waiter must still wait
            assert not got_in.is_set()
        async with asyncio.timeout(10):
            await task
        assert got_in.is_set()
    finally:
        await client.aclose()


async def test_rate_windows_are_shared(replicas: list[SharedState]) -> None:
    assert await replicas[0].windows.take([("user:telegram:1", 2)], 60) == 0
    assert await replicas[1].windows.take([("user:telegram:1", 2)], 60) == 0
    assert await replicas[0].windows.take([("user:telegram:1", 2)], 60) > 0
    assert await replicas[1].windows.take([("user:telegram:1", 2)], 60) > 0


async def test_caches_and_counters_are_shared(replicas: list[SharedState]) -> None:
    await replicas[0].short_links.put("ZMabc", "post", 60)
    assert await replicas[1].short_links.get("ZMabc") == "post"
    await replicas[0].media.set("telegram:9", "media:video", "FILE")
    assert (await replicas[1].media.load("telegram:9"))[0] == {"media:video": "FILE"}
    assert await replicas[0].counters.take("research:2026-12-06", 1, 60)
    assert not await replicas[1].counters.take("research:2026-12-06", 1, 60)


async def test_a_dead_replicas_updates_are_claimed_by_a_live_one(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    client = aioredis.from_url(redis_server.url, decode_responses=True)
    try:
        dead = RedisUpdateStream(client, redis_prefix, consumer="dead", claim_after=0.3)
        live = RedisUpdateStream(client, redis_prefix, consumer="live", claim_after=0.3)
        await dead.add("telegram:1", '{"update_id": 1}')
        [taken] = await dead.take(10, block=0.05)  # ...and the replica dies before answering
        assert await live.take(10, block=0.05) == []  # not abandoned yet
        await asyncio.sleep(0.4)
        [claimed] = await live.take(10, block=0.05)
        assert (claimed.id, claimed.key, claimed.deliveries) == (taken.id, "telegram:1", 2)
        await live.done(claimed)
        assert await live.depth() == (0, 0.0)
    finally:
        await client.aclose()


async def test_a_live_replica_keeps_what_it_works_on(redis_server: RedisServer, redis_prefix: str) -> None:
    client = aioredis.from_url(redis_server.url, decode_responses=True)
    try:
        busy = RedisUpdateStream(client, redis_prefix, consumer="busy", claim_after=0.3)
        other = RedisUpdateStream(client, redis_prefix, consumer="other", claim_after=0.3)
        await busy.add("telegram:2", "{}")
        [taken] = await busy.take(10, block=0.05)
        for _ in range(4):
            await asyncio.sleep(0.15)
            await busy.keep([taken])
            assert await other.take(10, block=0.01) == []
    finally:
        await client.aclose()


async def test_replicas_share_one_stream(replicas: list[SharedState]) -> None:
    first, second = (state.stream for state in replicas)
    assert first is not None and second is not None
    for n in range(6):
        await first.add(f"telegram:{n}", "{}")
    got = await first.take(3, block=0.05) + await second.take(10, block=0.05)
    assert sorted(e.key for e in got) == [f"telegram:{n}" for n in range(6)]
    assert not await second.add("telegram:0", "{}")  # a redelivery, whichever replica it reaches
