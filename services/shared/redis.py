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
local wait = 0
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  if redis.call('ZCARD', key) >= tonumber(ARGV[3 + i]) then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    if oldest[2] then wait = math.max(wait, tonumber(oldest[2]) + window - now) end
  end
end
if wait > 0 then return tostring(wait) end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, ARGV[3])
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
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'key', ARGV[3], 'payload', ARGV[4])
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

    async def take(self, limits: Sequence[tuple[str, int]], window: float) -> float:
        """Count one hit on every key if all are under their limits; else the seconds to wait."""
        if not limits:
            return 0.0
        keys = [self._prefix + key for key, _ in limits]
        args: list[Any] = [repr(self._clock()), repr(window), secrets.token_hex(8)]
        args += [limit for _, limit in limits]
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
    """A Redis Stream with one consumer group: each replica a consumer, entries acknowledged (XACK, then
    XDEL) once answered; those idle over `claim_after` seconds in a dead consumer's pending list are claimed
    (XAUTOCLAIM) by the next live consumer that asks. A live consumer keeps its entries fresh (XCLAIM to
    itself).
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
        self._key = prefix + "updates"
        self._seen = prefix + "seen:"
        self.consumer = consumer
        self.claim_after = claim_after
        self._group = group
        self._maxlen = maxlen
        self._remember = _ms(remember)
        self._add = client.register_script(_ADD_ONCE)
        self._ready = False

    async def _ensure_group(self) -> None:
        if self._ready:
            return
        try:
            # From the start of the stream: entries added before any replica created the group still count.
            await self._redis.xgroup_create(self._key, self._group, id="0", mkstream=True)
        except aioredis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._ready = True

    async def add(self, key: str, payload: str) -> bool:
        """Append unless the key was added in the last `remember` seconds (a platform's redelivery)."""
        await self._ensure_group()
        added = await self._add(
            keys=[self._key, self._seen + key], args=[self._remember, self._maxlen, key, payload]
        )
        return bool(added)

    async def take(self, count: int, block: float) -> list[StreamEntry]:
        """Abandoned entries first (XAUTOCLAIM), else new ones (XREADGROUP, blocking up to `block` s)."""
        await self._ensure_group()
        claimed: Any = await self._redis.xautoclaim(
            self._key, self._group, self.consumer, _ms(self.claim_after), start_id="0-0", count=count
        )
        entries = [_entry(entry_id, fields, 2) for entry_id, fields in claimed[1] if fields]
        if entries:
            log.warning(
                "claimed %d updates abandoned by a replica", len(entries), extra={"action": "stream.claim"}
            )
            return entries
        got: Any = await self._redis.xreadgroup(
            self._group, self.consumer, {self._key: ">"}, count=count, block=max(1, _ms(block))
        )
        return [_entry(entry_id, fields, 1) for _, rows in got or [] for entry_id, fields in rows]

    async def keep(self, ids: Sequence[str]) -> None:
        """Reset the entries' idle time (XCLAIM to this consumer, JUSTID)."""
        if ids:
            await self._redis.xclaim(self._key, self._group, self.consumer, 0, list(ids), justid=True)

    async def done(self, entry_id: str) -> None:
        """XACK and XDEL: the entry is answered."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(self._key, self._group, entry_id)
            pipe.xdel(self._key, entry_id)
            await pipe.execute()

    async def depth(self) -> tuple[int, float]:
        """Entries not acknowledged (the stream's length: acknowledged ones are deleted), oldest's age."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xlen(self._key)
            pipe.xrange(self._key, count=1)
            pipe.time()
            length, first, (seconds, micros) = await pipe.execute()
        if not length or not first:
            return 0, 0.0
        added_ms = int(str(first[0][0]).split("-")[0])
        return int(length), max(0.0, seconds + micros / 1e6 - added_ms / 1000)


def _entry(entry_id: str, fields: Mapping[str, str], deliveries: int) -> StreamEntry:
    return StreamEntry(str(entry_id), str(fields.get("key", "")), str(fields.get("payload", "")), deliveries)


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
