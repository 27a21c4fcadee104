"""Durable delivery for both frontends: take updates into the inbox, run them, complete them, replay the rest.

A frontend stores what it takes (`accept`) before telling the platform it was received, runs each new entry
through its normal handlers inside `run` (which collects the usage rows and completes the entry with them once
the handler returned — also when shutdown cancelled it, since the flow then answered "restarting"), and at
start-up hands `replay` a function that handles one old entry again.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from bot.logs import log_context
from services.store.inbox import SENDING, Inbox, InboxEntry
from services.store.usage import UsageEvent, collect_usage

log = logging.getLogger("tiktok_bot.inbox")

Release = Callable[[], Awaitable[object]]


class _Serving:
    """The entry a handler serves, and what to let go of once its completion is on disk."""

    __slots__ = ("entry", "hits", "releases")

    def __init__(self, entry: InboxEntry) -> None:
        self.entry = entry
        self.releases: list[Release] = []
        self.hits = 0


_CURRENT: contextvars.ContextVar[_Serving | None] = contextvars.ContextVar("inbox_entry", default=None)


def current_entry() -> InboxEntry | None:
    """The inbox entry the running handler serves, if any."""
    serving = _CURRENT.get()
    return serving.entry if serving is not None else None


def next_hit_id() -> str | None:
    """An id for the next rate-limit hit of the served entry, the same when the entry is run again (after a
    replica died) so the hit is not counted twice; None when no entry is served."""
    serving = _CURRENT.get()
    if serving is None:
        return None
    serving.hits += 1
    return f"{serving.entry.platform}:{serving.entry.key}:{serving.hits}"


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What a start-up replay found and did."""

    replayed: int
    late: int
    expired: int
    possible_duplicates: int


class Deliveries:
    """The inbox seen from a frontend."""

    def __init__(self, inbox: Inbox, *, replay_max_age: float = 900.0, keep_done: float = 3600.0) -> None:
        self.inbox = inbox
        self.replay_max_age = replay_max_age
        self.keep_done = keep_done

    @property
    def shared(self) -> bool:
        """Whether the inbox is a stream shared by replicas (accepted entries run wherever taken)."""
        return self.inbox.shared

    async def accept(self, entries: Sequence[InboxEntry]) -> list[bool]:
        """Store entries durably; True for each that is new (False: already taken, answered or not)."""
        return await self.inbox.put_many(entries)

    def note(self, state: str) -> None:
        """Record the current entry's progress (`sending`, `deferred`), if the handler serves one."""
        serving = _CURRENT.get()
        if serving is not None:
            self.inbox.note(serving.entry.platform, serving.entry.key, state)

    def note_sending(self) -> None:
        """A reply is about to go out: a replay after a kill from here on may send it twice."""
        self.note(SENDING)

    def holds_slot(self) -> bool:
        """Whether the current entry already holds a slot it keeps until its completion is written."""
        serving = _CURRENT.get()
        return serving is not None and bool(serving.releases)

    def release_on_completion(self, release: Release) -> bool:
        """Keep a slot until the current entry's completion is on disk; False when no entry is served.

        A reply whose completion is not yet written is sent again by a replay after a kill; holding the
        concurrency slot until then keeps those to one per slot.
        """
        serving = _CURRENT.get()
        if serving is None:
            return False
        serving.releases.append(release)
        return True

    @contextlib.asynccontextmanager
    async def serving(self, entry: InboxEntry) -> AsyncIterator[None]:
        """In the block the handler serves `entry`: usage rows are held and written with its completion."""
        state = _Serving(entry)
        token = _CURRENT.set(state)
        try:
            with collect_usage() as collector:
                try:
                    yield
                finally:
                    await self._complete(entry, collector.events)
        finally:
            _CURRENT.reset(token)
            for release in state.releases:
                await release()

    async def run(self, entry: InboxEntry, handle: Callable[[], Awaitable[object]]) -> None:
        """Run `handle` serving `entry`; an unexpected error is logged (the handler answered it)."""
        # What the handler binds (chat, user) is undone after: replayed entries run one after another.
        with log_context(platform=entry.platform, update=entry.key, chat=None, user=None):
            try:
                async with self.serving(entry):
                    await handle()
            except Exception:
                log.exception("handler failed")

    async def _complete(self, entry: InboxEntry, events: list[UsageEvent]) -> None:
        try:
            # A handler cancelled by shutdown answered "restarting"; its entry is done too. A queued write (a
            # future) goes on whoever stops waiting for it; anything else is shielded into a task of its own.
            done = self.inbox.complete(entry.platform, entry.key, events)
            await (done if isinstance(done, asyncio.Future) else asyncio.shield(done))
        except Exception:
            # Left open, the entry is replayed after the next start: a possible duplicate, never a lost reply.
            log.exception("could not complete an inbox entry")

    async def replay(
        self,
        platform: str,
        handle: Callable[[InboxEntry, bool], Awaitable[object]],
        *,
        entries: Sequence[InboxEntry] | None = None,
        can_answer: Callable[[InboxEntry], bool] = lambda entry: True,
        expired_action: Callable[[InboxEntry], str] = lambda entry: entry.kind,
        spawn: Callable[[Awaitable[None]], Awaitable[object]] | None = None,
    ) -> ReplayReport:
        """Handle every open entry of `platform` again, oldest first (`late` when older than the max age).

        `entries`: the open entries to handle, listed by the caller before it took new updates itself (a
        frontend that takes updates while it replays must not replay those); by default the inbox's open ones.

        Entries the platform no longer lets us answer are closed with an `expired` usage row. `spawn` starts
        one handling (as the frontend starts handlers: under its in-flight limit); by default they run one
        after another.
        """
        with contextlib.suppress(Exception):
            await self.inbox.purge(time.time() - self.keep_done)
        if entries is None:
            entries = await self.inbox.unfinished(platform)
        entries = sorted(entries, key=lambda e: (e.received_at, e.key))
        if not entries:
            return ReplayReport(0, 0, 0, 0)
        jobs = await self.triage(entries, can_answer=can_answer, expired_action=expired_action)
        for entry, is_late in jobs:
            job = self.run(entry, _bind(handle, entry, is_late))
            if spawn is None:
                await job
            else:
                await spawn(job)
        report = ReplayReport(
            replayed=len(jobs),
            late=sum(late for _, late in jobs),
            expired=len(entries) - len(jobs),
            possible_duplicates=sum(1 for e in entries if e.state == SENDING),
        )
        log.warning(
            "replayed %d updates left unanswered by the previous run (%d late, %d expired, %d possibly sent "
            "twice)",
            report.replayed,
            report.late,
            report.expired,
            report.possible_duplicates,
            extra={"platform": platform},
        )
        return report

    async def triage(
        self,
        entries: Sequence[InboxEntry],
        *,
        can_answer: Callable[[InboxEntry], bool] = lambda entry: True,
        expired_action: Callable[[InboxEntry], str] = lambda entry: entry.kind,
    ) -> list[tuple[InboxEntry, bool]]:
        """Count entries left by a dead process as replayed; close those the platform no longer lets us
        answer (an `expired` usage row); the rest to run again, each with whether it is late."""
        if not entries:
            return []
        await self.inbox.start_replay(entries)
        now = time.time()
        jobs: list[tuple[InboxEntry, bool]] = []
        for entry in entries:
            if not can_answer(entry):
                event = UsageEvent(platform=entry.platform, action=expired_action(entry), outcome="expired")
                await self.inbox.expire(entry, [event])
                continue
            jobs.append((entry, entry.age(now) > self.replay_max_age))
        return jobs


def _bind(
    handle: Callable[[InboxEntry, bool], Awaitable[object]], entry: InboxEntry, late: bool
) -> Callable[[], Awaitable[object]]:
    return lambda: handle(entry, late)
