"""One contract, every engine: the shared-state Protocols behave the same in process and in a real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from services.shared import SharedState, TTLCache, UpdateStream
from services.shared.memory import MemoryUpdateStream, memory_state
from services.shared.redis import redis_state
from tests.engines.redis import RedisServer


class Clock:
    """Wall time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["memory", "redis"])
async def state(
    request: pytest.FixtureRequest, clock: Clock, redis_prefix: str
) -> AsyncIterator[SharedState]:
    if request.param == "memory":
        made = memory_state(clock=clock)
    else:
        server: RedisServer = request.getfixturevalue("redis_server")  # started only when a test needs it
        client = aioredis.from_url(server.url, decode_responses=True)
        made = await redis_state(client, prefix=redis_prefix, clock=clock)
    yield made
    await made.aclose()


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    """Wait (polling) until `check` holds; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.02)


# --- single-flight locks ---


async def test_lock_admits_one_holder_per_key(state: SharedState) -> None:
    inside: list[str] = []
    peak: dict[str, int] = {}

    async def work(key: str) -> None:
        async with state.locks.hold(key):
            inside.append(key)
            peak[key] = max(peak.get(key, 0), inside.count(key))
            await asyncio.sleep(0.01)
            inside.remove(key)

    await asyncio.gather(*(work(k) for k in ["a"] * 5 + ["b"] * 5))
    assert peak == {"a": 1, "b": 1}


async def test_lock_lets_other_keys_run_while_held(state: SharedState) -> None:
    async with state.locks.hold("post-1"):
        async with asyncio.timeout(5):
            async with state.locks.hold("post-2"):
                pass


async def test_lock_is_released_when_the_holder_is_cancelled(state: SharedState) -> None:
    held = asyncio.Event()

    async def holder() -> None:
        async with state.locks.hold("k"):
            held.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(holder())
    await held.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with asyncio.timeout(5):
        async with state.locks.hold("k"):
            pass


async def test_lock_is_released_when_the_body_raises(state: SharedState) -> None:
    with pytest.raises(KeyError):
        async with state.locks.hold("k"):
            raise KeyError("boom")
    async with asyncio.timeout(5):
        async with state.locks.hold("k"):
            pass


# --- rate windows ---


async def test_window_allows_the_limit_then_says_how_long_to_wait(state: SharedState, clock: Clock) -> None:
    assert [await state.windows.take([("u", 3)], 60) for _ in range(3)] == [0, 0, 0]
    assert await state.windows.take([("u", 3)], 60) == pytest.approx(60, abs=0.5)
    clock.offset += 30
    assert await state.windows.take([("u", 3)], 60) == pytest.approx(30, abs=0.5)
    assert await state.windows.take([("other", 3)], 60) == 0
    clock.offset += 31
    assert await state.windows.take([("u", 3)], 60) == 0


async def test_refused_hits_are_not_counted(state: SharedState, clock: Clock) -> None:
    assert await state.windows.take([("u", 1)], 10) == 0
    for _ in range(5):
        clock.offset += 1
        assert await state.windows.take([("u", 1)], 10) > 0
    clock.offset += 5.5
    assert await state.windows.take([("u", 1)], 10) == 0


async def test_keys_taken_together_are_all_or_nothing(state: SharedState) -> None:
    assert await state.windows.take([("chat", 1)], 60) == 0
    # The chat is full: the user's hit must not be counted either.
    assert await state.windows.take([("user", 2), ("chat", 1)], 60) > 0
    assert await state.windows.take([("user", 2)], 60) == 0
    assert await state.windows.take([("user", 2)], 60) == 0
    assert await state.windows.take([("user", 2)], 60) > 0


async def test_a_hit_id_is_counted_once(state: SharedState, clock: Clock) -> None:
    limits = [("user", 2), ("chat", 5)]
    assert await state.windows.take(limits, 60, hit="telegram:7:1") == 0
    # The same update run again by another replica after the first died: passes, not counted again.
    assert await state.windows.take(limits, 60, hit="telegram:7:1") == 0
    assert await state.windows.take(limits, 60, hit="telegram:8:1") == 0
    assert await state.windows.take(limits, 60, hit="telegram:9:1") > 0  # the user's third: refused
    assert await state.windows.take(limits, 60, hit="telegram:9:1") > 0  # refused is not counted either
    assert await state.windows.take([("chat", 5)], 60) == 0  # the chat saw 2 hits plus this one
    assert await state.windows.take([("chat", 5)], 60) == 0
    assert await state.windows.take([("chat", 5)], 60) == 0
    assert await state.windows.take([("chat", 5)], 60) > 0
    clock.offset += 61
    # Past the window the id is forgotten: a hit that old is a new request.
    assert await state.windows.take([("user", 2)], 60, hit="telegram:7:1") == 0
    assert await state.windows.take([("user", 2)], 60, hit="telegram:7:2") == 0
    assert await state.windows.take([("user", 2)], 60, hit="telegram:7:1") == 0
    assert await state.windows.take([("user", 2)], 60, hit="telegram:7:3") > 0


async def test_concurrent_takes_never_exceed_the_limit(state: SharedState) -> None:
    waits = await asyncio.gather(*(state.windows.take([("burst", 7)], 60) for _ in range(40)))
    assert sum(1 for w in waits if w == 0) == 7


# --- TTL caches ---


async def test_ttl_cache_get_put_and_expiry(state: SharedState) -> None:
    for cache in (state.short_links, state.metadata):
        assert await cache.get("k") is None
        await cache.put("k", "v", 60)
        assert await cache.get("k") == "v"
        await cache.put("k", "w", 60)
        assert await cache.get("k") == "w"
        await cache.put("gone", "x", 0)
        assert await cache.get("gone") is None
        await cache.put("short", "y", 0.05)

        async def expired(cache: TTLCache = cache) -> bool:
            return await cache.get("short") is None

        await eventually(expired)


async def test_the_two_caches_do_not_share_keys(state: SharedState) -> None:
    await state.short_links.put("same", "link", 60)
    assert await state.metadata.get("same") is None


# --- the sent-media hot layer ---


async def test_post_refs_fill_load_set_drop(state: SharedState) -> None:
    refs = state.media
    held, gen = await refs.load("telegram:1")
    assert held is None
    await refs.fill("telegram:1", {"media:video": "FILE"}, gen)
    held, gen = await refs.load("telegram:1")
    assert held == {"media:video": "FILE"}
    await refs.set("telegram:1", "post", "{}")
    assert (await refs.load("telegram:1"))[0] == {"media:video": "FILE", "post": "{}"}
    await refs.drop("telegram:1", "post")
    assert (await refs.load("telegram:1"))[0] == {"media:video": "FILE"}
    await refs.drop("telegram:1")
    assert (await refs.load("telegram:1"))[0] is None


async def test_post_refs_remember_a_post_with_nothing_stored(state: SharedState) -> None:
    _, gen = await state.media.load("telegram:2")
    await state.media.fill("telegram:2", {}, gen)
    assert (await state.media.load("telegram:2"))[0] == {}


async def test_a_fill_that_overlapped_a_write_is_not_kept(state: SharedState) -> None:
    _, gen = await state.media.load("telegram:3")  # a reader loads the database (sees nothing yet)...
    await state.media.set("telegram:3", "media:video", "NEW")  # ...a writer writes meanwhile...
    await state.media.fill("telegram:3", {}, gen)  # ...the reader's older answer must not win
    held, _ = await state.media.load("telegram:3")
    assert held is None or held == {"media:video": "NEW"}


async def test_a_fill_that_overlapped_a_drop_is_not_kept(state: SharedState) -> None:
    _, gen = await state.media.load("telegram:4")
    await state.media.drop("telegram:4")
    await state.media.fill("telegram:4", {"media:video": "STALE"}, gen)
    assert (await state.media.load("telegram:4"))[0] is None


# --- counters ---


async def test_counter_takes_up_to_the_limit(state: SharedState) -> None:
    assert await state.counters.value("day") == 0
    assert [await state.counters.take("day", 3, 60) for _ in range(5)] == [True] * 3 + [False] * 2
    assert await state.counters.value("day") == 3
    assert await state.counters.value("other") == 0


async def test_concurrent_counter_takes_never_exceed_the_limit(state: SharedState) -> None:
    taken = await asyncio.gather(*(state.counters.take("burst", 5, 60) for _ in range(30)))
    assert taken.count(True) == 5


async def test_counter_expires(state: SharedState) -> None:
    assert await state.counters.take("brief", 1, 0.05)
    assert not await state.counters.take("brief", 1, 0.05)

    async def expired() -> bool:
        return await state.counters.value("brief") == 0

    await eventually(expired)
    assert await state.counters.take("brief", 1, 60)


# --- leases ---


async def test_a_lease_has_one_holder_until_released(state: SharedState) -> None:
    assert await state.leases.acquire("poller", "a", 60)
    assert not await state.leases.acquire("poller", "b", 60)
    assert await state.leases.acquire("poller", "a", 60)  # the holder renews
    await state.leases.release("poller", "b")  # not b's to give up
    assert not await state.leases.acquire("poller", "b", 60)
    await state.leases.release("poller", "a")
    assert await state.leases.acquire("poller", "b", 60)


async def test_a_lease_not_renewed_lapses(state: SharedState, clock: Clock) -> None:
    assert await state.leases.acquire("poller", "a", 0.1)
    clock.offset += 1  # the in-process engine reads the clock; Redis expires the key itself

    async def lapsed() -> bool:
        return await state.leases.acquire("poller", "b", 60)

    await eventually(lapsed)


# --- the update stream ---


@pytest.fixture
def stream(state: SharedState) -> UpdateStream:
    return state.stream if state.stream is not None else MemoryUpdateStream()


async def test_stream_hands_each_update_out_once(stream: UpdateStream) -> None:
    for n in range(5):
        assert await stream.add(f"telegram:{n}", f'{{"update_id": {n}}}')
    first = await stream.take(3, block=0.05)
    rest = await stream.take(10, block=0.05)
    assert [e.key for e in first + rest] == [f"telegram:{n}" for n in range(5)]
    assert [e.payload for e in first][:1] == ['{"update_id": 0}']
    assert await stream.take(10, block=0.05) == []
    assert (await stream.depth())[0] == 5  # handed out, not yet answered
    for entry in first + rest:
        await stream.done(entry)
    assert await stream.depth() == (0, 0.0)


async def test_stream_refuses_a_redelivered_update(stream: UpdateStream) -> None:
    assert await stream.add("telegram:7", "{}")
    assert not await stream.add("telegram:7", "{}")
    assert len(await stream.take(10, block=0.05)) == 1


async def test_stream_take_waits_for_an_update(stream: UpdateStream) -> None:
    waiting = asyncio.create_task(stream.take(1, block=5))
    await asyncio.sleep(0.05)
    await stream.add("telegram:8", "{}")
    async with asyncio.timeout(5):
        [entry] = await waiting
    assert entry.key == "telegram:8"


async def test_stream_depth_reports_the_oldest_age(stream: UpdateStream) -> None:
    await stream.add("telegram:9", "{}")
    await asyncio.sleep(0.2)
    count, age = await stream.depth()
    assert count == 1 and 0.15 <= age < 30
