"""Request limits: per-user and per-chat sliding windows, and a concurrency gate with a queue notice."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from contextlib import asynccontextmanager

from services.errors import RateLimited

Clock = Callable[[], float]


class SlidingWindow:
    """At most `limit` hits per `window` seconds for each key."""

    def __init__(self, limit: int, window: float = 60.0, *, clock: Clock = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._hits: dict[Hashable, deque[float]] = {}

    def retry_after(self, key: Hashable) -> float:
        """Seconds until `key` may hit again (0 if it may now)."""
        now = self._clock()
        hits = self._hits.get(key)
        if hits is None:
            return 0.0
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if not hits:
            del self._hits[key]  # keep memory bounded by active keys only
            return 0.0
        return max(0.0, hits[0] + self.window - now) if len(hits) >= self.limit else 0.0

    def hit(self, key: Hashable) -> float:
        """Count one hit for `key` if allowed; return 0, or the seconds to wait (no hit counted)."""
        wait = self.retry_after(key)
        if wait > 0:
            return wait
        self._hits.setdefault(key, deque()).append(self._clock())
        return 0.0


class RateLimits:
    """The per-user and per-chat limits a request must pass."""

    def __init__(self, *, user_per_minute: int, chat_per_minute: int, clock: Clock = time.monotonic) -> None:
        self.users = SlidingWindow(user_per_minute, 60.0, clock=clock)
        self.chats = SlidingWindow(chat_per_minute, 60.0, clock=clock)

    def check(self, user: Hashable | None, chat: Hashable | None) -> None:
        """Count a request, or raise RateLimited without counting it."""
        wait = max(
            self.users.retry_after(user) if user is not None else 0.0,
            self.chats.retry_after(chat) if chat is not None else 0.0,
        )
        if wait > 0:
            raise RateLimited(wait)
        if user is not None:
            self.users.hit(user)
        if chat is not None:
            self.chats.hit(chat)


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
