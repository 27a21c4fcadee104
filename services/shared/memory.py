"""The in-process engine of the shared-state Protocols: the default, for one process."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager

from cachetools import LRUCache, TLRUCache

from services.shared import SharedState, StreamEntry

Clock = Callable[[], float]


class _Slot:
    """A lock shared by everyone waiting on one key, forgotten when the last of them is done."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class MemoryFlightLocks:
    """One asyncio.Lock per key in use."""

    def __init__(self) -> None:
        self._slots: dict[str, _Slot] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Wait for the key, hold it for the body."""
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = _Slot()
        slot.users += 1
        try:
            async with slot.lock:
                yield
        finally:
            slot.users -= 1
            if slot.users == 0:
                del self._slots[key]

    def __len__(self) -> int:
        return len(self._slots)


class MemoryRateWindows:
    """Hit times per key in deques; a key with no hit left in its window is forgotten."""

    def __init__(self, *, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._counted: dict[str, float] = {}  # hit id -> when it was counted
        self._next_sweep = 0.0

    def _sweep(self, now: float, window: float) -> None:
        """Forget every key with no hit in the last window (once a window: memory tracks active keys)."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + window
        for key in [k for k, hits in self._hits.items() if hits[-1] <= now - window]:
            del self._hits[key]
        for hit in [h for h, at in self._counted.items() if at <= now - window]:
            del self._counted[hit]

    def _wait(self, key: str, limit: int, window: float, now: float) -> float:
        hits = self._hits.get(key)
        if hits is None:
            return 0.0
        while hits and hits[0] <= now - window:
            hits.popleft()
        if not hits:
            del self._hits[key]  # memory stays bounded by the keys active in the last window
            return 0.0
        return max(0.0, hits[0] + window - now) if len(hits) >= limit else 0.0

    async def take(self, limits: Sequence[tuple[str, int]], window: float, hit: str | None = None) -> float:
        """Count one hit on every key if all are under their limits; else the seconds to wait. A `hit` id
        counted in the window already passes without counting again."""
        now = self._clock()
        self._sweep(now, window)
        if hit is not None:
            counted = self._counted.get(hit)
            if counted is not None and counted > now - window:
                return 0.0
        wait = max((self._wait(key, limit, window, now) for key, limit in limits), default=0.0)
        if wait > 0:
            return wait
        for key, _ in limits:
            self._hits.setdefault(key, deque()).append(now)
        if hit is not None and limits:
            self._counted[hit] = now
        return 0.0

    def __len__(self) -> int:
        return len(self._hits)


def _expires(key: str, item: tuple[float, str], now: float) -> float:
    """When a (ttl, value) item put at `now` expires."""
    return now + item[0]


class MemoryTTLCache:
    """Values with an expiry each, at most `max_entries` (cachetools' TLRUCache on the injected clock)."""

    def __init__(self, *, clock: Clock = time.monotonic, max_entries: int = 10_000) -> None:
        # Each value keeps the ttl it was put with: callers choose it per put, as with Redis's SET PX.
        self._items: TLRUCache[str, tuple[float, str]] = TLRUCache(max_entries, ttu=_expires, timer=clock)

    async def get(self, key: str) -> str | None:
        """The live value for `key`, or None."""
        item = self._items.get(key)
        return None if item is None else item[1]

    async def put(self, key: str, value: str, ttl: float) -> None:
        """Remember `value` for `ttl` seconds (when full, expired values go first, then the least used)."""
        if ttl <= 0:
            return
        self._items[key] = (ttl, value)

    def __len__(self) -> int:
        return len(self._items)


class MemoryPostRefs:
    """An LRU of posts (cachetools); one generation counter for all (bumped by every write) guards `fill`."""

    def __init__(self, *, max_posts: int = 4096) -> None:
        self._posts: LRUCache[str, dict[str, str]] = LRUCache(max_posts)
        self._generation = 0

    async def load(self, key: str) -> tuple[dict[str, str] | None, int]:
        """The held variants (a copy) and the generation."""
        held = self._posts.get(key)
        if held is None:
            return None, self._generation
        return dict(held), self._generation

    async def fill(self, key: str, variants: Mapping[str, str], generation: int) -> None:
        """Hold what the database said, unless something was written since `load`."""
        if generation != self._generation:
            return
        self._posts[key] = dict(variants)

    async def set(self, key: str, variant: str, ref: str) -> None:
        """Update a held entry (an entry not held is loaded from the database when next asked)."""
        self._generation += 1
        held = self._posts.get(key)
        if held is not None:
            held[variant] = ref

    async def drop(self, key: str, variant: str | None = None) -> None:
        """Forget one variant or the whole entry."""
        self._generation += 1
        if variant is None:
            self._posts.pop(key, None)
        else:
            held = self._posts.get(key)
            if held is not None:
                held.pop(variant, None)

    def __len__(self) -> int:
        return len(self._posts)


class MemoryCounters:
    """Counters with an expiry, in a dict; expired ones are swept as others are taken."""

    def __init__(self, *, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._counts: dict[str, tuple[float, int]] = {}

    async def value(self, key: str) -> int:
        """The current count (0 if none or expired)."""
        item = self._counts.get(key)
        if item is None or item[0] <= self._clock():
            return 0
        return item[1]

    async def take(self, key: str, limit: int, ttl: float) -> bool:
        """Add one if under `limit`."""
        now = self._clock()
        for stale in [k for k, (expires, _) in self._counts.items() if expires <= now]:
            del self._counts[stale]
        expires, count = self._counts.get(key, (now + ttl, 0))
        if count >= limit:
            return False
        self._counts[key] = (expires, count + 1)
        return True


class MemoryLeases:
    """Leases in a dict: holder and expiry."""

    def __init__(self, *, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._held: dict[str, tuple[str, float]] = {}

    async def acquire(self, name: str, holder: str, ttl: float) -> bool:
        """Take or renew the lease."""
        now = self._clock()
        current = self._held.get(name)
        if current is not None and current[0] != holder and current[1] > now:
            return False
        self._held[name] = (holder, now + ttl)
        return True

    async def release(self, name: str, holder: str) -> None:
        """Give it up if held by `holder`."""
        current = self._held.get(name)
        if current is not None and current[0] == holder:
            del self._held[name]


class MemoryUpdateStream:
    """Updates in a deque per part; taken ones wait in `pending` until done (nobody else is there to claim
    them)."""

    def __init__(self, *, clock: Clock = time.time, remember: int = 100_000) -> None:
        self._clock = clock
        self._queues: dict[str, deque[tuple[float, StreamEntry]]] = {}
        self._pending: dict[str, tuple[float, StreamEntry]] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._states: dict[str, str] = {}
        self._remember = remember
        self._next = 0
        self._arrived = asyncio.Event()

    async def add(self, key: str, payload: str, *, kind: str = "", part: str = "") -> bool:
        """Append unless the key was seen."""
        if key in self._seen:
            return False
        self._seen[key] = None
        while len(self._seen) > self._remember:
            self._seen.popitem(last=False)
        self._next += 1
        entry = StreamEntry(f"{self._next}", key, payload, kind=kind, part=part)
        self._queues.setdefault(part, deque()).append((self._clock(), entry))
        self._arrived.set()
        return True

    async def add_many(self, items: Sequence[tuple[str, str, str, str]]) -> list[bool]:
        """`add` for each (key, payload, kind, part)."""
        return [await self.add(key, payload, kind=kind, part=part) for key, payload, kind, part in items]

    async def take(
        self,
        count: int,
        block: float,
        *,
        parts: Sequence[str] = ("",),
        claim: Sequence[str] | None = None,
    ) -> list[StreamEntry]:
        """Up to `count` queued entries of `parts`, waiting up to `block` seconds for the first."""
        if not any(self._queues.get(part) for part in parts) and block > 0:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(block):
                    await self._arrived.wait()
        taken: list[StreamEntry] = []
        for part in parts:
            queue = self._queues.get(part)
            while queue and len(taken) < count:
                arrived, entry = queue.popleft()
                self._pending[entry.id] = (arrived, entry)
                taken.append(entry)
        return taken

    async def note(self, notes: Sequence[tuple[str, str]]) -> None:
        """Remember the entries' progress."""
        self._states.update(notes)

    async def keep(self, entries: Sequence[StreamEntry]) -> None:
        """Nothing to do: no other consumer could claim them."""

    async def done(self, entry: StreamEntry) -> None:
        """Forget the entry."""
        self._pending.pop(entry.id, None)
        self._states.pop(entry.key, None)

    async def depth(self) -> tuple[int, float]:
        """Entries queued or in progress, and the oldest one's age."""
        arrivals = [arrived for arrived, _ in self._pending.values()]
        arrivals += [queue[0][0] for queue in self._queues.values() if queue]
        count = len(self._pending) + sum(len(queue) for queue in self._queues.values())
        if not count:
            return 0, 0.0
        return count, max(0.0, self._clock() - min(arrivals))


class _NothingToClose:
    async def aclose(self) -> None:
        """Nothing: the state dies with the process."""


def memory_state(*, clock: Clock = time.monotonic) -> SharedState:
    """Every shared concern kept in this process (the default)."""
    return SharedState(
        engine="memory",
        locks=MemoryFlightLocks(),
        windows=MemoryRateWindows(clock=clock),
        short_links=MemoryTTLCache(clock=clock),
        metadata=MemoryTTLCache(clock=clock, max_entries=2048),
        media=MemoryPostRefs(),
        counters=MemoryCounters(clock=clock),
        leases=MemoryLeases(clock=clock),
        closer=_NothingToClose(),
    )
