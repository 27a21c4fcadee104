"""State replicas share: one Protocol per concern, an in-process engine (`memory`) and a Redis one (`redis`).

Like aiogram's `BaseStorage` / `MemoryStorage` / `RedisStorage`: the services are written against these
Protocols, and only `bot/wiring.py` picks the engine (`REDIS__URL` unset: everything stays in this process).

- `FlightLocks`: the per-post single-flight lock; in Redis a lease, renewed while held, so a dead holder's
  lock lapses and a waiter on another replica goes on to find the result in the shared cache.
- `RateWindows`: sliding windows of hits per key (per-user, per-chat limits).
- `TTLCache`: string values with a time to live (short links, metadata answers).
- `PostRefs`: the hot layer of the sent-media cache (every variant of a post in one entry).
- `Counters`: counters that expire (the Research API's daily quota).
- `UpdateStream`: updates taken from a platform, worked by any replica, acknowledged once answered; in Redis
  a Stream with a consumer group, where a dead replica's unacknowledged entries are claimed by a live one.
- `Leases`: a named lease one replica holds at a time (the Telegram poller).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol


class FlightLocks(Protocol):
    """One holder per key at a time, across every process sharing the engine."""

    def hold(self, key: str) -> AbstractAsyncContextManager[None]:
        """Wait for the key, hold it for the body, then let the next waiter in."""
        ...


class RateWindows(Protocol):
    """Sliding windows of hits, one per key, each with its own limit."""

    async def take(self, limits: Sequence[tuple[str, int]], window: float, hit: str | None = None) -> float:
        """Count one hit on every key if each is under its limit and return 0; else count none and return
        the seconds until all would be. A `hit` id already counted in the window (the same update run again
        after a replica died) is not counted twice: it returns 0."""
        ...


class TTLCache(Protocol):
    """Strings by key, each forgotten after its time to live."""

    async def get(self, key: str) -> str | None:
        """The live value for `key`, or None."""
        ...

    async def put(self, key: str, value: str, ttl: float) -> None:
        """Remember `value` for `ttl` seconds (nothing when ttl <= 0)."""
        ...


class PostRefs(Protocol):
    """The sent-media cache's hot layer: a post's variants (variant -> reference) under one key.

    `load` returns the entry (None: not held) and a generation; `fill` stores what the database said only if
    no write came in between, so an overlapping write is never overwritten by an older read.
    """

    async def load(self, key: str) -> tuple[dict[str, str] | None, int]:
        """The variants held for `key` (None if not held), and the generation to pass to `fill`."""
        ...

    async def fill(self, key: str, variants: Mapping[str, str], generation: int) -> None:
        """Hold `variants` (possibly none) for `key`, unless a write came in since `load`."""
        ...

    async def set(self, key: str, variant: str, ref: str) -> None:
        """Record one variant written to the database."""
        ...

    async def drop(self, key: str, variant: str | None = None) -> None:
        """Forget one variant (or the whole entry) deleted from the database."""
        ...


class Counters(Protocol):
    """Counters that expire, with a ceiling checked and raised in one step."""

    async def value(self, key: str) -> int:
        """The current count (0 if none)."""
        ...

    async def take(self, key: str, limit: int, ttl: float) -> bool:
        """Add one if the count is under `limit` and return True; else return False. Expires `ttl` s after
        its first hit."""
        ...


@dataclass(frozen=True, slots=True)
class StreamEntry:
    """One update in the stream: its id there, its key, its JSON, how often it was handed out, its kind, the
    part of the stream it is in, and the progress last noted for it (handed to a claimer)."""

    id: str
    key: str
    payload: str
    deliveries: int = 1
    kind: str = ""
    part: str = ""
    state: str = ""


class UpdateStream(Protocol):
    """Updates waiting to be answered, shared by every replica, in named parts (a platform, a Discord shard).

    Each part is read by the replicas that serve it (`take`'s `parts`); entries a dead replica left unanswered
    in any part listed in `claim` are handed to a live one after the claim timeout.
    """

    async def add(self, key: str, payload: str, *, kind: str = "", part: str = "") -> bool:
        """Append an update unless its key was added before (a redelivery); True if appended."""
        ...

    async def add_many(self, items: Sequence[tuple[str, str, str, str]]) -> list[bool]:
        """`add` for each (key, payload, kind, part) in one round trip."""
        ...

    async def take(
        self,
        count: int,
        block: float,
        *,
        parts: Sequence[str] = ("",),
        claim: Sequence[str] | None = None,
    ) -> list[StreamEntry]:
        """Up to `count` entries for this consumer: abandoned ones of the `claim` parts (default: `parts`)
        first, then new ones of `parts` (waiting up to `block` seconds for some)."""
        ...

    async def note(self, notes: Sequence[tuple[str, str]]) -> None:
        """Remember entries' progress, (key, state) each, handed with them to whoever claims them."""
        ...

    async def keep(self, entries: Sequence[StreamEntry]) -> None:
        """Say these entries are still being worked on, so nobody claims them."""
        ...

    async def done(self, entry: StreamEntry) -> None:
        """Acknowledge an entry: answered, never handed out again."""
        ...

    async def depth(self) -> tuple[int, float]:
        """Entries not yet acknowledged, and the age in seconds of the oldest (0 when none)."""
        ...


class Leases(Protocol):
    """Named leases: at most one holder each, lapsing unless renewed."""

    async def acquire(self, name: str, holder: str, ttl: float) -> bool:
        """Take the lease (or renew it, if `holder` has it); True if `holder` holds it now."""
        ...

    async def release(self, name: str, holder: str) -> None:
        """Give the lease up if `holder` has it."""
        ...


class Engine(Protocol):
    """Something to close on shutdown."""

    async def aclose(self) -> None:
        """Release connections and background tasks."""
        ...


@dataclass(frozen=True, slots=True)
class SharedState:
    """Every shared concern, from one engine."""

    engine: str
    locks: FlightLocks
    windows: RateWindows
    short_links: TTLCache
    metadata: TTLCache
    media: PostRefs
    counters: Counters
    leases: Leases
    closer: Engine
    # The update stream replicas share; None in one process, where updates go straight to the dispatcher.
    stream: UpdateStream | None = None

    async def aclose(self) -> None:
        """Close the engine's connections."""
        await self.closer.aclose()
