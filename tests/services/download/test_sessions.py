"""services.download.sessions: leasing warm sessions, retiring them, benching proxies by an injected clock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from services.download.sessions import NoEgress, SessionPool


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def pool(clock: Clock) -> AsyncIterator[SessionPool]:
    made = SessionPool.build(
        lambda proxy: httpx.AsyncClient(),
        ["http://a:1", "http://user:pw@b:2", "socks5://c:3"],
        size=3,
        max_age=60,
        max_failures=2,
        bench_seconds=30,
        clock=clock,
    )
    yield made
    await made.aclose()


def test_sequential_downloads_reuse_one_warm_session(pool: SessionPool) -> None:
    first = pool.acquire()
    first.cookies.set("tt_chain_token", "t1")
    pool.release(first, ok=True)
    again = pool.acquire()
    assert again is first and again.cookies.get("tt_chain_token") == "t1" and again.uses == 2
    pool.release(again, ok=True)


def test_concurrent_downloads_spread_over_the_proxies(pool: SessionPool) -> None:
    leased = [pool.acquire() for _ in range(3)]
    assert len({id(s) for s in leased}) == 3
    assert {s.egress.label for s in leased} == {"http://a:1", "http://***@b:2", "socks5://c:3"}
    fourth = pool.acquire()  # the pool is full: share the least busy one
    assert fourth in leased and pool.stats().sessions == 3


def test_a_session_is_retired_by_age_and_by_failures(pool: SessionPool, clock: Clock) -> None:
    old = pool.acquire()
    pool.release(old, ok=True)
    clock.now += 61
    fresh = pool.acquire()
    assert fresh is not old and old.retired
    pool.release(fresh, ok=False)
    assert pool.acquire() is fresh
    pool.release(fresh, ok=False)  # two failures in a row
    assert fresh.retired and pool.stats().retired == 2


def test_a_blocked_proxy_rests_until_the_clock_says(pool: SessionPool, clock: Clock) -> None:
    session = pool.acquire()
    pool.blocked(session, "10204")
    pool.release(session, ok=False)
    assert session.retired and pool.stats().benched == (session.egress.label,)
    others = {pool.acquire(avoid=[]).egress.label for _ in range(4)}
    assert session.egress.label not in others
    for egress in pool.egresses:
        egress.benched_until = clock.now + 30
    with pytest.raises(NoEgress):
        pool.acquire()
    clock.now += 31
    assert len(pool.usable()) == 3


async def test_the_direct_egress_is_never_benched(clock: Clock) -> None:
    async with httpx.AsyncClient() as client:
        direct = SessionPool.direct(client)
        session = direct.acquire()
        direct.blocked(session, "HTTP 403")
        direct.release(session, ok=False)
        assert direct.stats().benched == () and direct.acquire() is not session  # a fresh jar instead
        assert list(client.cookies.jar) == []
