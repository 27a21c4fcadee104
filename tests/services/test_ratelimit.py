"""Rate limits and the concurrency gate."""

from __future__ import annotations

import asyncio

import pytest

from services.errors import RateLimited
from services.ratelimit import ConcurrencyGate, RateLimits
from services.shared.memory import MemoryRateWindows


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_idle_keys_are_forgotten() -> None:
    clock = FakeClock()
    windows = MemoryRateWindows(clock=clock)
    for i in range(100):
        await windows.take([(str(i), 2)], 10)
    assert len(windows) == 100
    clock.now += 11
    await windows.take([("fresh", 2)], 10)
    assert len(windows) == 1  # keys never seen again are swept, not kept forever


async def test_rate_limits_user_and_chat() -> None:
    clock = FakeClock()
    limits = RateLimits(user_per_minute=2, chat_per_minute=3, clock=clock)
    await limits.check("a", "c")
    await limits.check("a", "c")
    with pytest.raises(RateLimited) as info:
        await limits.check("a", "c")
    assert info.value.retry_after == pytest.approx(60)
    await limits.check("b", "c")  # the chat's third request
    with pytest.raises(RateLimited):
        await limits.check("d", "c")  # chat full although d is fresh
    await limits.check("d", "other-chat")


async def test_gate_limits_concurrency_and_notifies_long_waits() -> None:
    gate = ConcurrencyGate(2, notice_after=0.05)
    running = 0
    peak = 0
    notices: list[int] = []
    release = asyncio.Event()

    async def job(i: int) -> None:
        nonlocal running, peak

        async def queued() -> None:
            notices.append(i)

        async with gate.slot(queued):
            running += 1
            peak = max(peak, running)
            await release.wait()
            running -= 1

    tasks = [asyncio.create_task(job(i)) for i in range(5)]
    await asyncio.sleep(0.15)
    assert peak == 2
    assert sorted(notices) == [2, 3, 4]
    release.set()
    await asyncio.gather(*tasks)
    assert gate.waiting == 0


async def test_gate_cancelled_waiter_frees_nothing_it_did_not_hold() -> None:
    gate = ConcurrencyGate(1, notice_after=10)
    hold = asyncio.Event()

    async def holder() -> None:
        async with gate.slot():
            await hold.wait()

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)

    async def waiter() -> None:
        async with gate.slot():
            pass

    second = asyncio.create_task(waiter())
    await asyncio.sleep(0.01)
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    hold.set()
    await first
    # The slot is free again: exactly one holder fits.
    async with gate.slot():
        assert gate._sem.locked()
