"""Replicas on a shared update stream: every replica works the stream; one (the lease holder) polls.

With REDIS__URL set the frontends put updates into the stream instead of handling them on the spot: the
webhook answers 200 once the update is in Redis, the polling leader once it is (by asking for the next ones).
Every replica's `StreamWorker` takes entries, handles them, and acknowledges each when its reply is out; a
replica that dies leaves its entries unacknowledged, and a live one claims them after REDIS__LEASE seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from bot.metrics import Metrics
from services.shared import Leases, StreamEntry, UpdateStream

log = logging.getLogger("tiktok_bot.replicas")

Handle = Callable[[StreamEntry], Awaitable[object]]


class StreamWorker:
    """Takes entries from the stream, runs at most `concurrency` at once, acknowledges each when done."""

    def __init__(
        self,
        stream: UpdateStream,
        handle: Handle,
        *,
        concurrency: int = 100,
        keep_every: float = 10.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.stream = stream
        self._handle = handle
        self._concurrency = concurrency
        self._keep_every = keep_every
        self._metrics = metrics
        self._running: dict[asyncio.Task[None], StreamEntry] = {}

    async def run(self, stop: asyncio.Event, *, grace: float = 10.0) -> None:
        """Work the stream until `stop`; then let entries in hand finish for `grace` seconds, cancel the rest
        (left unacknowledged, another replica claims them)."""
        done = asyncio.Event()
        keeper = asyncio.create_task(self._keep_alive(done), name="stream-keeper")
        try:
            while not stop.is_set():
                free = self._concurrency - len(self._running)
                if free <= 0:
                    await asyncio.wait(set(self._running), return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    entries = await self.stream.take(free, block=1.0)
                except Exception:
                    log.exception("could not read the update stream", extra={"action": "stream.take"})
                    await _pause(stop, 1.0)
                    continue
                for entry in entries:
                    task = asyncio.create_task(self._work(entry), name=f"update-{entry.key}")
                    self._running[task] = entry
                    task.add_done_callback(self._running.pop)
        finally:
            await self._drain(grace)
            done.set()  # told, not cancelled: a Redis command cancelled mid-flight can hang
            with contextlib.suppress(Exception):
                await keeper

    async def _work(self, entry: StreamEntry) -> None:
        try:
            await self._handle(entry)
        except asyncio.CancelledError:
            raise  # not acknowledged: another replica answers it
        except Exception:
            # The handlers answer the user themselves; an update that crashes is not retried forever.
            log.exception("update %s failed", entry.key, extra={"action": "stream.work"})
        with contextlib.suppress(Exception):
            await asyncio.shield(self.stream.done(entry.id))

    async def _drain(self, grace: float) -> None:
        tasks = set(self._running)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)

    async def _keep_alive(self, done: asyncio.Event) -> None:
        """Refresh the entries in hand so nobody claims them, and sample the stream for the metrics."""
        while not done.is_set():
            with contextlib.suppress(Exception):
                await self.stream.keep([entry.id for entry in self._running.values()])
                if self._metrics is not None:
                    depth, lag = await self.stream.depth()
                    self._metrics.inbox_depth.set(depth)
                    self._metrics.inbox_lag.set(lag)
            every = min(self._keep_every, 1.0) if self._metrics is not None else self._keep_every
            await _pause(done, every)


class Leader:
    """Holds a named lease while it can; `run` calls `lead` while this replica holds it."""

    def __init__(self, leases: Leases, name: str, holder: str, ttl: float) -> None:
        self.leases = leases
        self.name = name
        self.holder = holder
        self.ttl = ttl
        self.leading = False

    async def renew(self) -> bool:
        """Take or keep the lease; whether this replica leads now."""
        try:
            self.leading = await self.leases.acquire(self.name, self.holder, self.ttl)
        except Exception:
            log.exception("could not renew the %s lease", self.name)
            self.leading = False
        return self.leading

    async def run(self, stop: asyncio.Event, lead: Callable[[], Awaitable[object]]) -> None:
        """Until `stop`: wait for the lease, then run `lead` (it returns soon after `renew` fails)."""
        try:
            while not stop.is_set():
                if await self.renew():
                    log.info("this replica holds the %s lease", self.name, extra={"action": "lease"})
                    await lead()
                    continue
                await _pause(stop, self.ttl / 3)
        finally:
            self.leading = False
            with contextlib.suppress(Exception):
                await asyncio.shield(self.leases.release(self.name, self.holder))


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
