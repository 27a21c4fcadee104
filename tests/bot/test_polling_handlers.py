"""The poller's handler slots: a busy poller waits for several free slots (larger polls), not forever."""

from __future__ import annotations

import asyncio

from bot.telegram.polling import Handlers


async def _fill(handlers: Handlers, count: int) -> list[asyncio.Event]:
    gates = [asyncio.Event() for _ in range(count)]
    for gate in gates:
        await handlers.spawn(gate.wait())
    return gates


async def test_a_busy_poller_waits_until_enough_slots_are_free() -> None:
    handlers = Handlers(10)
    gates = await _fill(handlers, 10)
    waiter = asyncio.create_task(handlers.wait_free(at_least=4, gather=60))
    gates[0].set()
    await asyncio.sleep(0.01)
    assert not waiter.done() and handlers.free == 1
    for gate in gates[1:3]:
        gate.set()
    await asyncio.sleep(0.01)
    assert not waiter.done() and handlers.free == 3
    gates[3].set()
    await asyncio.wait_for(waiter, 10)
    assert handlers.free == 4
    for gate in gates:
        gate.set()
    await handlers.drain(10)


async def test_the_wait_for_more_slots_is_bounded() -> None:
    handlers = Handlers(10)
    gates = await _fill(handlers, 10)
    waiter = asyncio.create_task(handlers.wait_free(at_least=5, gather=0.05))
    gates[0].set()
    await asyncio.wait_for(waiter, 10)  # one slot free, the gathering time over: poll for one
    assert handlers.free == 1
    for gate in gates:
        gate.set()
    await handlers.drain(10)


async def test_an_idle_poller_does_not_wait() -> None:
    handlers = Handlers(10)
    await asyncio.wait_for(handlers.wait_free(at_least=4, gather=60), 1)
    gates = await _fill(handlers, 6)
    await asyncio.wait_for(handlers.wait_free(at_least=4, gather=60), 1)  # 4 free already
    for gate in gates:
        gate.set()
    await handlers.drain(10)
