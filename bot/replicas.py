"""Replicas on a shared update stream: every replica works the stream; one (the lease holder) polls.

With REDIS__URL set the inbox is a `StreamInbox`: the frontends put updates into it instead of handling
them on the spot (the webhook answers 200 once the update is in Redis, the polling leader confirms a poll
once it is, a Discord shard stores its gateway events). Every replica's `StreamWorker` takes entries and
runs each through `Deliveries.run` (usage rows held and written with the completion, which acknowledges
it); a replica that dies leaves its entries unacknowledged, and a live one claims them after REDIS__LEASE
seconds and runs them as a replay (counted, expired when the platform no longer takes an answer, with the
late notice when old).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from bot.chat.inbox import Deliveries
from bot.metrics import Metrics
from services.shared import Leases
from services.store.inbox import InboxEntry

log = logging.getLogger("tiktok_bot.replicas")

Handle = Callable[[InboxEntry, bool], Awaitable[object]]
Depth = Callable[[], Awaitable[tuple[int, float]]]


class StreamWorker:
    """Takes entries from the shared inbox, runs at most `concurrency` at once; each completes itself."""

    def __init__(
        self,
        deliveries: Deliveries,
        handle: Handle,
        *,
        partitions: Sequence[str],
        claim: Sequence[str] | None = None,
        can_answer: Callable[[InboxEntry], bool] = lambda entry: True,
        expired_action: Callable[[InboxEntry], str] = lambda entry: entry.kind,
        concurrency: int = 100,
        metrics: Metrics | None = None,
        depth: Depth | None = None,
        track: Callable[[asyncio.Task[None]], object] | None = None,
    ) -> None:
        self.deliveries = deliveries
        self._handle = handle
        self._partitions = list(partitions)
        self._claim = list(partitions if claim is None else claim)
        self._can_answer = can_answer
        self._expired_action = expired_action
        self._concurrency = concurrency
        self._metrics = metrics
        self._depth = depth
        self._track = track
        self._running: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event, *, grace: float = 10.0) -> None:
        """Work the inbox until `stop`; then let entries in hand finish for `grace` seconds, cancel the rest
        (they answer "restarting" and complete, as in one process)."""
        done = asyncio.Event()
        sampler = asyncio.create_task(self._sample(done), name="stream-depth")
        inbox = self.deliveries.inbox
        try:
            while not stop.is_set():
                free = self._concurrency - len(self._running)
                if free <= 0:
                    await asyncio.wait(set(self._running), return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    entries = await inbox.take(self._partitions, self._claim, free, 1.0)
                    claimed = [entry for entry in entries if entry.attempts]
                    jobs = [(entry, False) for entry in entries if not entry.attempts]
                    jobs += await self.deliveries.triage(
                        claimed, can_answer=self._can_answer, expired_action=self._expired_action
                    )
                except Exception:
                    log.exception("could not read the update stream", extra={"action": "stream.take"})
                    await _pause(stop, 1.0)
                    continue
                for entry, late in jobs:
                    job = self.deliveries.run(entry, _bind(self._handle, entry, late))
                    task = asyncio.create_task(job, name=f"update-{entry.platform}-{entry.key}")
                    self._running.add(task)
                    task.add_done_callback(self._running.discard)
                    if self._track is not None:
                        self._track(task)
        finally:
            await self._drain(grace)
            done.set()  # told, not cancelled: a Redis command cancelled mid-flight can hang
            with contextlib.suppress(Exception):
                await sampler

    async def _drain(self, grace: float) -> None:
        tasks = set(self._running)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)

    async def _sample(self, done: asyncio.Event) -> None:
        """Sample the stream's depth and lag for the metrics, every second."""
        if self._metrics is None or self._depth is None:
            return
        while not done.is_set():
            with contextlib.suppress(Exception):
                depth, lag = await self._depth()
                self._metrics.inbox_depth.set(depth)
                self._metrics.inbox_lag.set(lag)
            await _pause(done, 1.0)


def _bind(handle: Handle, entry: InboxEntry, late: bool) -> Callable[[], Awaitable[object]]:
    return lambda: handle(entry, late)


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
