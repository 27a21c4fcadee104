"""Request limits: per-user and per-chat sliding windows, and a concurrency gate with a queue notice.

Written here rather than taken from a library: a request passes only if the user's and the chat's windows
both have room, counted in both or in neither, and the answer is how long to wait — in one process or in
Redis (one Lua script over sorted sets, `services.shared`). `aiolimiter` is a leaky bucket for one process
with no keys; `limits` keeps keyed moving windows in Redis but checks and hits one limit at a time, so two
replicas could each pass a user whose chat is full. Neither has a gate that tells the user they are queued.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager

from services.errors import RateLimited
from services.shared import RateWindows
from services.shared.memory import MemoryRateWindows

Clock = Callable[[], float]


class RateLimits:
    """The per-user and per-chat limits a request must pass, in windows shared by every replica."""

    def __init__(
        self,
        *,
        user_per_minute: int,
        chat_per_minute: int,
        windows: RateWindows | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.user_per_minute = user_per_minute
        self.chat_per_minute = chat_per_minute
        self.windows: RateWindows = windows if windows is not None else MemoryRateWindows(clock=clock)

    async def check(self, user: Hashable | None, chat: Hashable | None, hit: str | None = None) -> None:
        """Count a request, or raise RateLimited without counting it; a `hit` id is counted once (a request
        run again after a replica died is not a second request)."""
        limits: list[tuple[str, int]] = []
        if user is not None:
            limits.append((_key("user", user), self.user_per_minute))
        if chat is not None:
            limits.append((_key("chat", chat), self.chat_per_minute))
        wait = await self.windows.take(limits, 60.0, hit)
        if wait > 0:
            raise RateLimited(wait)


def _key(kind: str, who: Hashable) -> str:
    parts = who if isinstance(who, tuple) else (who,)
    return ":".join((kind, *map(str, parts)))


class ConcurrencyGate:
    """At most `limit` requests served at once; a waiter is told once if its wait grows long."""

    def __init__(self, limit: int, *, notice_after: float = 3.0) -> None:
        self._sem = asyncio.Semaphore(limit)
        self.notice_after = notice_after
        self.waiting = 0

    @asynccontextmanager
    async def slot(self, on_queued: Callable[[], Awaitable[object]] | None = None) -> AsyncIterator[None]:
        """Hold one slot for the body; call `on_queued` once if the wait exceeds `notice_after`."""
        if not self._sem.locked():
            async with self._sem:
                yield
            return
        self.waiting += 1
        acquire = asyncio.ensure_future(self._sem.acquire())
        try:
            done, _ = await asyncio.wait({acquire}, timeout=self.notice_after)
            if not done and on_queued is not None:
                await on_queued()
            await acquire
        except BaseException:
            if acquire.done() and not acquire.cancelled():
                self._sem.release()
            acquire.cancel()
            raise
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            self._sem.release()
