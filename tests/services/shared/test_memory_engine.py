"""The in-process engine's bounded caches (cachetools): expiry on an injected clock, what goes when full."""

from __future__ import annotations

from services.shared.memory import MemoryPostRefs, MemoryTTLCache, MemoryUpdateStream


class SteppedClock:
    """A clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


async def test_ttl_cache_expires_on_the_injected_clock_each_value_on_its_own_ttl() -> None:
    clock = SteppedClock()
    cache = MemoryTTLCache(clock=clock)
    await cache.put("short", "a", 10)
    await cache.put("long", "b", 60)
    clock.now += 9.999
    assert (await cache.get("short"), await cache.get("long")) == ("a", "b")
    clock.now += 0.001  # exactly 10 s after the put: gone, as Redis's PX 10000 would be
    assert (await cache.get("short"), await cache.get("long")) == (None, "b")
    clock.now += 50
    assert await cache.get("long") is None


async def test_ttl_cache_put_again_restarts_the_ttl() -> None:
    clock = SteppedClock()
    cache = MemoryTTLCache(clock=clock)
    await cache.put("k", "old", 10)
    clock.now += 8
    await cache.put("k", "new", 10)
    clock.now += 8
    assert await cache.get("k") == "new"


async def test_a_full_ttl_cache_drops_expired_values_first_then_the_least_recently_used() -> None:
    clock = SteppedClock()
    cache = MemoryTTLCache(clock=clock, max_entries=3)
    await cache.put("brief", "1", 1)
    await cache.put("a", "2", 60)
    await cache.put("b", "3", 60)
    clock.now += 2
    await cache.put("c", "4", 60)  # full: the expired one goes, not `a`
    assert [await cache.get(k) for k in ("a", "b", "c")] == ["2", "3", "4"]
    assert await cache.get("a") == "2"  # `a` used last: `b` is now the least recently used
    await cache.put("d", "5", 60)
    assert [await cache.get(k) for k in ("a", "b", "c", "d")] == ["2", None, "4", "5"]
    assert len(cache) == 3


async def test_post_refs_keep_the_most_recently_used_posts() -> None:
    refs = MemoryPostRefs(max_posts=2)
    for key in ("p1", "p2"):
        _, gen = await refs.load(key)
        await refs.fill(key, {"media:video": key.upper()}, gen)
    await refs.load("p1")  # p1 read again: p2 is the one to go
    _, gen = await refs.load("p3")
    await refs.fill("p3", {"media:video": "P3"}, gen)
    assert [(await refs.load(k))[0] for k in ("p1", "p2", "p3")] == [
        {"media:video": "P1"},
        None,
        {"media:video": "P3"},
    ]
    assert len(refs) == 2


async def test_update_stream_remembers_the_last_keys_added() -> None:
    stream = MemoryUpdateStream(clock=SteppedClock(), remember=2)
    assert [await stream.add(k, "{}") for k in ("u1", "u2", "u1", "u3")] == [True, True, False, True]
    # u1 was added before u2 and u3 (seeing it again does not refresh it): forgotten, so taken once more.
    assert [await stream.add(k, "{}") for k in ("u3", "u2", "u1")] == [False, False, True]
