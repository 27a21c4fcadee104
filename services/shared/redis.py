"""The Redis engine of the shared-state Protocols (redis-py asyncio): state every replica sees.

Each multi-step change is one Lua script, so replicas never interleave inside it. Keys live under one
prefix (`tiktok-bot:` by default), so several bots can share a Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import redis.asyncio as aioredis

from services.shared import SharedState, StreamEntry
from services.shared.memory import MemoryFlightLocks

log = logging.getLogger("services.shared.redis")

Clock = Callable[[], float]
HELD = "\x00"  # the field marking a post entry as held (a post with no variant is still an answer)

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_TAKE_WINDOWS = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local member = ARGV[3] == '' and ('r:' .. ARGV[4 + #KEYS]) or ('h:' .. ARGV[3])
local wait = 0
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  -- The same hit id counted in this window already (the update run again after a replica died): passes.
  if ARGV[3] ~= '' and redis.call('ZSCORE', key, member) then return '0' end
  if redis.call('ZCARD', key) >= tonumber(ARGV[3 + i]) then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    if oldest[2] then wait = math.max(wait, tonumber(oldest[2]) + window - now) end
  end
end
if wait > 0 then return tostring(wait) end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, member)
  redis.call('PEXPIRE', key, math.ceil(window * 1000))
end
return '0'
"""
_FILL = """
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
_SET = """
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[2], '', ARGV[3], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""
_DROP = """
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
if ARGV[2] == '' then return redis.call('DEL', KEYS[1]) end
return redis.call('HDEL', KEYS[1], ARGV[2])
"""
_TAKE_COUNT = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n >= tonumber(ARGV[1]) then return 0 end
redis.call('INCR', KEYS[1])
if n == 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""


_ADD_ONCE = """
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*',
    'key', ARGV[3], 'payload', ARGV[4], 'kind', ARGV[5])
  return 1
end
return 0
"""
_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class RedisFlightLocks:
    """A lease per key (SET NX PX), renewed while held, released only by its holder.

    Waiters in this process queue on a local lock first, so one of them at a time polls Redis. A holder that
    dies stops renewing; its lease lapses after `lease` seconds and the next waiter goes on.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        *,
        lease: float = 30.0,
        poll: tuple[float, float] = (0.01, 0.1),
    ) -> None:
        self._redis = client
        self._prefix = prefix + "lock:"
        self.lease = lease
        self._poll = poll
        self._local = MemoryFlightLocks()
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Wait for the lease on `key`, keep it renewed through the body, then release it."""
        async with self._local.hold(key):
            name = self._prefix + key
            token = secrets.token_hex(16)
            delay = self._poll[0]
            while not await self._redis.set(name, token, nx=True, px=_ms(self.lease)):
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, self._poll[1])
            done = asyncio.Event()
            keeper = asyncio.create_task(self._keep(name, token, done))
            try:
                yield
            finally:
                # Told, not cancelled: redis-py can hang on a command cancelled mid-flight, and the holder
                # would wait for its keeper forever (seen under load).
                done.set()
                with contextlib.suppress(Exception):
                    await asyncio.shield(keeper)
                # Shielded: a cancelled holder still lets the next waiter in now rather than after the lease.
                await asyncio.shield(self._let_go(name, token))

    async def _keep(self, name: str, token: str, done: asyncio.Event) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.lease / 3):
                    await done.wait()
            if done.is_set():
                return
            try:
                renewed = await self._renew(keys=[name], args=[token, _ms(self.lease)])
            except aioredis.RedisError as exc:
                log.warning("could not renew lease %s: %s", name, exc)
                continue
            if not renewed:
                log.warning("lease %s lapsed while held: another replica may run the same work", name)
                return

    async def _let_go(self, name: str, token: str) -> None:
        try:
            await self._release(keys=[name], args=[token])
        except aioredis.RedisError as exc:
            log.warning("could not release lease %s (it lapses on its own): %s", name, exc)


class RedisRateWindows:
    """A sorted set of hit times per key; both the check and the hits are one script."""

    def __init__(self, client: aioredis.Redis, prefix: str, *, clock: Clock = time.time) -> None:
        # Wall-clock time from this host: replicas must keep their clocks in sync (NTP) for shared windows.
        self._prefix = prefix + "window:"
        self._clock = clock
        self._script = client.register_script(_TAKE_WINDOWS)

    async def take(self, limits: Sequence[tuple[str, int]], window: float, hit: str | None = None) -> float:
        """Count one hit on every key if all are under their limits; else the seconds to wait. The hit's id
        is the sorted sets' member, so the same `hit` is counted once."""
        if not limits:
            return 0.0
        keys = [self._prefix + key for key, _ in limits]
        args: list[Any] = [repr(self._clock()), repr(window), hit or ""]
        args += [limit for _, limit in limits]
        args.append(secrets.token_hex(8))  # the member of an anonymous hit
        return float(await self._script(keys=keys, args=args))


class RedisTTLCache:
    """GET and SET PX under a prefix."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._redis = client
        self._prefix = prefix

    async def get(self, key: str) -> str | None:
        """The live value, or None."""
        value = await self._redis.get(self._prefix + key)
        return None if value is None else str(value)

    async def put(self, key: str, value: str, ttl: float) -> None:
        """Remember `value` for `ttl` seconds."""
        if ttl > 0:
            await self._redis.set(self._prefix + key, value, px=_ms(ttl))


class RedisPostRefs:
    """A hash per post (variant -> reference) and a generation counter per post guarding `fill`.

    Unlike the in-process layer, a write creates the entry when absent: with a database per replica the
    hash is how the others learn of it. An entry missing some variant the database has only costs that
    variant a fresh download.
    """

    def __init__(self, client: aioredis.Redis, prefix: str, *, ttl: float = 7 * 86400) -> None:
        self._redis = client
        self._prefix = prefix + "media:"
        self._ttl = _ms(ttl)
        self._fill = client.register_script(_FILL)
        self._set = client.register_script(_SET)
        self._drop = client.register_script(_DROP)

    def _keys(self, key: str) -> list[str]:
        return [self._prefix + key, self._prefix + "gen:" + key]

    async def load(self, key: str) -> tuple[dict[str, str] | None, int]:
        """The held variants and the generation."""
        entry, gen = self._keys(key)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(entry)
            pipe.get(gen)
            held, generation = await pipe.execute()
        if not held:
            return None, int(generation or 0)
        return {k: v for k, v in held.items() if k != HELD}, int(generation or 0)

    async def fill(self, key: str, variants: Mapping[str, str], generation: int) -> None:
        """Hold what the database said, unless something was written since `load`."""
        pairs: list[str] = [HELD, ""]
        for variant, ref in variants.items():
            pairs += [variant, ref]
        await self._fill(keys=self._keys(key), args=[str(generation), self._ttl, *pairs])

    async def set(self, key: str, variant: str, ref: str) -> None:
        """Record one variant (creating the entry if absent)."""
        await self._set(keys=self._keys(key), args=[self._ttl, HELD, variant, ref])

    async def drop(self, key: str, variant: str | None = None) -> None:
        """Forget one variant or the whole entry."""
        await self._drop(keys=self._keys(key), args=[self._ttl, variant or ""])


class RedisCounters:
    """A string counter per key, expiring `ttl` after its first hit."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._redis = client
        self._prefix = prefix + "count:"
        self._take = client.register_script(_TAKE_COUNT)

    async def value(self, key: str) -> int:
        """The current count."""
        return int(await self._redis.get(self._prefix + key) or 0)

    async def take(self, key: str, limit: int, ttl: float) -> bool:
        """Add one if under `limit`."""
        return bool(await self._take(keys=[self._prefix + key], args=[limit, _ms(ttl)]))


class RedisLeases:
    """A key per lease holding its holder's name, with a PX expiry."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._prefix = prefix + "lease:"
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)

    async def acquire(self, name: str, holder: str, ttl: float) -> bool:
        """Take or renew the lease."""
        return bool(await self._acquire(keys=[self._prefix + name], args=[holder, _ms(ttl)]))

    async def release(self, name: str, holder: str) -> None:
        """Give it up if held by `holder`."""
        await self._release(keys=[self._prefix + name], args=[holder])


class RedisUpdateStream:
    """Redis Streams with one consumer group each (one stream per part): each replica a consumer, entries
    acknowledged (XACK, then XDEL) once answered; those idle over `claim_after` seconds in a dead consumer's
    pending list are claimed (XAUTOCLAIM) by the next live consumer that asks. A live consumer keeps its
    entries fresh (XCLAIM to itself). An entry's noted progress is a key of its own, read by its claimer.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        *,
        consumer: str,
        claim_after: float = 30.0,
        group: str = "workers",
        maxlen: int = 100_000,
        remember: float = 86400.0,
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._seen = prefix + "seen:"
        self._state = prefix + "state:"
        self.consumer = consumer
        self.claim_after = claim_after
        self._group = group
        self._maxlen = maxlen
        self._remember = _ms(remember)
        self._add = client.register_script(_ADD_ONCE)
        self._ready: set[str] = set()
        self._parts: set[str] = set()
        self._next_claim: dict[str, float] = {}

    def _key(self, part: str) -> str:
        return self._prefix + "updates" + (":" + part if part else "")

    async def _ensure_group(self, parts: Sequence[str]) -> None:
        for part in parts:
            self._parts.add(part)
            if part in self._ready:
                continue
            try:
                # From the start: entries added before any replica created the group still count.
                await self._redis.xgroup_create(self._key(part), self._group, id="0", mkstream=True)
            except aioredis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            self._ready.add(part)

    async def add(self, key: str, payload: str, *, kind: str = "", part: str = "") -> bool:
        """Append unless the key was added in the last `remember` seconds (a platform's redelivery)."""
        return (await self.add_many([(key, payload, kind, part)]))[0]

    async def add_many(self, items: Sequence[tuple[str, str, str, str]]) -> list[bool]:
        """`add` for each (key, payload, kind, part), pipelined."""
        if not items:
            return []
        await self._ensure_group(sorted({part for *_, part in items}))
        if len(items) == 1:
            # One update (a webhook's): EVALSHA alone; a pipeline would first ask SCRIPT EXISTS.
            key, payload, kind, part = items[0]
            keys = [self._key(part), self._seen + key]
            return [bool(await self._add(keys=keys, args=[self._remember, self._maxlen, key, payload, kind]))]
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, payload, kind, part in items:
                await self._add(
                    keys=[self._key(part), self._seen + key],
                    args=[self._remember, self._maxlen, key, payload, kind],
                    client=pipe,
                )
            added = await pipe.execute()
        return [bool(flag) for flag in added]

    async def take(
        self,
        count: int,
        block: float,
        *,
        parts: Sequence[str] = ("",),
        claim: Sequence[str] | None = None,
    ) -> list[StreamEntry]:
        """Abandoned entries first (XAUTOCLAIM on each `claim` part), else new ones of `parts` (XREADGROUP,
        blocking up to `block` s)."""
        claim = parts if claim is None else claim
        await self._ensure_group([*parts, *claim])
        entries: list[StreamEntry] = []
        # Entries become claimable only after `claim_after` idle: looking 4 times as often is soon enough.
        now = time.monotonic()
        claim = [part for part in claim if self._next_claim.get(part, 0.0) <= now]
        for part in claim:
            self._next_claim[part] = now + self.claim_after / 4
        for part in claim:
            if len(entries) >= count:
                break
            claimed: Any = await self._redis.xautoclaim(
                self._key(part),
                self._group,
                self.consumer,
                _ms(self.claim_after),
                start_id="0-0",
                count=count - len(entries),
            )
            entries += [_entry(entry_id, fields, 2, part) for entry_id, fields in claimed[1] if fields]
        if entries:
            states = await self._redis.mget([self._state + entry.key for entry in entries])
            entries = [
                replace(entry, state=str(state or "")) for entry, state in zip(entries, states, strict=True)
            ]
            log.warning(
                "claimed %d updates abandoned by a replica", len(entries), extra={"action": "stream.claim"}
            )
            return entries
        got: Any = await self._redis.xreadgroup(
            self._group,
            self.consumer,
            {self._key(part): ">" for part in parts},
            count=count,
            block=max(1, _ms(block)),
        )
        by_key = {self._key(part): part for part in parts}
        return [
            _entry(entry_id, fields, 1, by_key.get(str(stream), ""))
            for stream, rows in got or []
            for entry_id, fields in rows
        ]

    async def note(self, notes: Sequence[tuple[str, str]]) -> None:
        """Keep the entries' progress, pipelined (for a day at most: a finished entry deletes its own)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, state in notes:
                pipe.set(self._state + key, state, px=self._remember)
            await pipe.execute()

    async def keep(self, entries: Sequence[StreamEntry]) -> None:
        """Reset the entries' idle time (XCLAIM to this consumer, JUSTID)."""
        by_part: dict[str, list[str | int | bytes | memoryview[int]]] = {}
        for entry in entries:
            by_part.setdefault(entry.part, []).append(entry.id)
        for part, ids in by_part.items():
            await self._redis.xclaim(self._key(part), self._group, self.consumer, 0, ids, justid=True)

    async def done(self, entry: StreamEntry) -> None:
        """XACK and XDEL: the entry is answered; its noted progress goes too."""
        key = self._key(entry.part)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(key, self._group, entry.id)
            pipe.xdel(key, entry.id)
            pipe.delete(self._state + entry.key)
            await pipe.execute()

    async def depth(self) -> tuple[int, float]:
        """Entries not acknowledged in the parts this replica used (acknowledged ones are deleted), and the
        oldest one's age."""
        return await _backlog(self._redis, [self._key(part) for part in sorted(self._parts) or [""]])


async def stream_backlog(client: aioredis.Redis, prefix: str) -> tuple[int, float, int]:
    """Entries not acknowledged in every partition of the update stream under `prefix` (found by SCAN, so
    partitions no process of this one used count too), the oldest one's age, and the partitions found."""
    base = prefix + "updates"
    pattern = "".join("\\" + c if c in "*?[]\\" else c for c in base) + "*"
    keys = sorted(
        {
            str(key)
            async for key in client.scan_iter(match=pattern, count=1000, _type="stream")
            if str(key) == base or str(key).startswith(base + ":")
        }
    )
    if not keys:
        return 0, 0.0, 0
    length, age = await _backlog(client, keys)
    return length, age, len(keys)


async def _backlog(client: aioredis.Redis, keys: Sequence[str]) -> tuple[int, float]:
    """Entries in these streams (acknowledged ones are deleted) and the oldest one's age, by Redis's clock."""
    async with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.xlen(key)
            pipe.xrange(key, count=1)
        pipe.time()
        *rows, (seconds, micros) = await pipe.execute()
    length = sum(int(n or 0) for n in rows[0::2])
    firsts = [int(str(first[0][0]).split("-")[0]) for first in rows[1::2] if first]
    if not length or not firsts:
        return 0, 0.0
    return length, max(0.0, seconds + micros / 1e6 - min(firsts) / 1000)


def _entry(entry_id: str, fields: Mapping[str, str], deliveries: int, part: str) -> StreamEntry:
    return StreamEntry(
        str(entry_id),
        str(fields.get("key", "")),
        str(fields.get("payload", "")),
        deliveries,
        kind=str(fields.get("kind", "")),
        part=part,
    )


class _Connection:
    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client

    async def aclose(self) -> None:
        await self._client.aclose()


def connect(url: str, *, client_name: str | None = None) -> aioredis.Redis:
    """A pooled client for `url` (redis:// or rediss:// or unix://), answering str."""
    return aioredis.from_url(url, decode_responses=True, client_name=client_name)


async def redis_state(
    client: aioredis.Redis,
    *,
    prefix: str = "tiktok-bot:",
    lease: float = 30.0,
    clock: Clock = time.time,
    consumer: str | None = None,
) -> SharedState:
    """Every shared concern kept in Redis (checked with a PING first, so a wrong URL fails at start-up).

    `consumer` names this replica in the update stream (unique per process); entries it leaves unacknowledged
    for `lease` seconds are claimed by another.
    """
    await client.ping()
    consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
    return SharedState(
        engine="redis",
        locks=RedisFlightLocks(client, prefix, lease=lease),
        windows=RedisRateWindows(client, prefix, clock=clock),
        short_links=RedisTTLCache(client, prefix + "short:"),
        metadata=RedisTTLCache(client, prefix + "meta:"),
        media=RedisPostRefs(client, prefix),
        counters=RedisCounters(client, prefix),
        leases=RedisLeases(client, prefix),
        closer=_Connection(client),
        stream=RedisUpdateStream(client, prefix, consumer=consumer, claim_after=lease),
    )
