"""The inbox on a shared update stream (replicas): entries in the stream, completions in the database.

Every process sharing the stream puts what it takes from its platform (`put_many`); any of them `take`s
entries to answer — those a dead process left unanswered first (claimed once idle past the stream's claim
timeout), then new ones of the partitions it serves. Progress notes (`deferred`, `sending`) live with the
stream, so the claimer knows whether a reply may already have gone out and whether a Discord interaction
was deferred.

Completion is as atomic as two engines allow. The database transaction writes the entry's usage rows together
with a done tombstone (`inbox` row keyed by platform and key), and writes nothing if the tombstone is already
there; the stream entry is acknowledged (XACK + XDEL, one MULTI) only after that commit. So:
- usage rows are written exactly once per answered update, whichever process completes it, even if two did;
- a process killed between the commit and the acknowledgement leaves the entry pending: its claimer finds the
  tombstone and acknowledges it without answering again;
- a reply is sent twice only when a process died after sending it and before the commit (as with the database
  inbox); entries noted `sending` are counted as possible duplicates when claimed.
These hold when the replicas share one database (DATABASE__URL on PostgreSQL). With a SQLite file per replica
each file has one set of rows per update it completed, but a claimer cannot see another replica's tombstone:
an update whose completion was committed just before its process died is answered again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from services.shared import StreamEntry, UpdateStream
from services.store.inbox import EXPIRED, DatabaseInbox, InboxEntry, InboxStats
from services.store.usage import UsageEvent

log = logging.getLogger(__name__)

# How long a progress note waits for others to share its round trip. Notes only tell a claimer what the dead
# replica was doing (a reply possibly sent, a command deferred): one this late misses few kills.
NOTE_LINGER = 0.02


def stream_key(platform: str, key: str) -> str:
    """The stream key of an entry: unique across platforms."""
    return f"{platform}:{key}"


class StreamInbox:
    """`Inbox` on an `UpdateStream` (shared by replicas), with completions and usage rows in the database."""

    shared = True

    def __init__(self, stream: UpdateStream, database: DatabaseInbox, *, keep_every: float = 10.0) -> None:
        self.stream = stream
        self.database = database
        self._keep_every = keep_every
        self._held: dict[tuple[str, str], StreamEntry] = {}
        self._notes: set[asyncio.Task[None]] = set()
        self._queued_notes: dict[str, str] = {}
        self._writing: dict[str, asyncio.Task[None]] = {}  # stream key -> the task writing its note
        self._keeper: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()

    async def put_many(self, entries: Sequence[InboxEntry]) -> list[bool]:
        """Append entries to their partitions of the stream; for each, True if new (not a redelivery)."""
        items = [(stream_key(e.platform, e.key), e.payload, e.kind, e.partition) for e in entries]
        return await self.stream.add_many(items)

    async def take(
        self, partitions: Sequence[str], claim: Sequence[str], count: int, block: float
    ) -> list[InboxEntry]:
        """Abandoned entries of the `claim` partitions first (minus those done already), else new ones."""
        self._start_keeper()
        taken = await self.stream.take(count, block, parts=partitions, claim=claim)
        entries = [_inbox_entry(item) for item in taken]
        claimed = [entry for entry, item in zip(entries, taken, strict=True) if item.deliveries > 1]
        finished: set[tuple[str, str]] = set()
        for platform in {entry.platform for entry in claimed}:
            keys = [e.key for e in claimed if e.platform == platform]
            finished |= {(platform, key) for key in await self.database.done_keys(platform, keys)}
        fresh: list[InboxEntry] = []
        for entry, item in zip(entries, taken, strict=True):
            if (entry.platform, entry.key) in finished:
                # Answered and recorded by a process that died before acknowledging it: acknowledge only.
                await self.stream.done(item)
                continue
            self._held[(entry.platform, entry.key)] = item
            fresh.append(entry)
        return fresh

    def note(self, platform: str, key: str, state: str) -> None:
        """Record an open entry's progress in the stream without waiting for it (batched: NOTE_LINGER)."""
        if self._closing.is_set():
            return
        self._queued_notes[stream_key(platform, key)] = state
        if len(self._queued_notes) == 1:
            task = asyncio.get_running_loop().create_task(self._write_notes())
            self._notes.add(task)
            task.add_done_callback(self._notes.discard)

    async def _write_notes(self) -> None:
        # Notes of the next few milliseconds join the batch: one round trip for several replies' notes.
        await asyncio.sleep(NOTE_LINGER)
        notes, self._queued_notes = list(self._queued_notes.items()), {}
        if not notes:
            return  # completed (and so dropped) while waiting
        task = asyncio.current_task()
        assert task is not None
        for key, _ in notes:
            self._writing[key] = task
        try:
            await self.stream.note(notes)
        except Exception as exc:
            log.warning("%d inbox progress notes lost: %s", len(notes), exc)
        finally:
            for key, _ in notes:
                if self._writing.get(key) is task:
                    del self._writing[key]

    async def complete(self, platform: str, key: str, events: Sequence[UsageEvent]) -> None:
        """Usage rows and the done tombstone in one transaction (unless done already), then the stream ack."""
        await self._finish(platform, key, events, None)

    async def expire(self, entry: InboxEntry, events: Sequence[UsageEvent]) -> None:
        """Close an entry that can no longer be answered, with its usage rows and an `expired` log event."""
        await self._finish(entry.platform, entry.key, events, EXPIRED)

    async def _finish(self, platform: str, key: str, events: Sequence[UsageEvent], event: str | None) -> None:
        item = self._held.get((platform, key))
        entry = _inbox_entry(item) if item is not None else InboxEntry(platform, key, "", "", time.time())
        try:
            first = await self.database.close_once(entry, events, event)
        except BaseException:
            # Not recorded: stop keeping it, so a replica (this one included) claims and answers it again.
            self._held.pop((platform, key), None)
            raise
        if not first:
            log.warning(
                "update %s:%s was completed by another replica too (claimed while still in progress)",
                platform,
                key,
                extra={"action": "stream.complete"},
            )
        if item is not None:
            # A note still queued is moot now; one being written must land before the ack deletes it.
            self._queued_notes.pop(item.key, None)
            writing = self._writing.get(item.key)
            if writing is not None:
                await asyncio.wait({writing})
            await self.stream.done(item)
            self._held.pop((platform, key), None)

    async def unfinished(self, platform: str) -> list[InboxEntry]:
        """None at start-up: what a dead process left is handed out by `take` after the claim timeout."""
        return []

    async def start_replay(self, entries: Sequence[InboxEntry]) -> None:
        """Count claimed entries as replayed (and as possible duplicates if a reply was being sent)."""
        await self.database.start_replay(entries)

    async def stats(self, since: float) -> InboxStats:
        """Entries waiting in the stream now; replay events since `since` from the database."""
        logged = await self.database.stats(since)
        depth, age = await self.stream.depth()
        return InboxStats(
            unfinished=depth,
            oldest_age_s=age if depth else None,
            replayed=logged.replayed,
            expired=logged.expired,
            duplicates=logged.duplicates,
        )

    async def depth(self) -> tuple[int, float]:
        """Entries not yet acknowledged, and the oldest one's age."""
        return await self.stream.depth()

    async def purge(self, done_before: float) -> int:
        """Forget done tombstones finished before `done_before`."""
        return await self.database.purge(done_before)

    async def aclose(self) -> None:
        """Stop keeping entries fresh, let progress notes land, then close the database side."""
        self._closing.set()
        if self._keeper is not None:
            # Told, not cancelled: a Redis command cancelled mid-flight can hang.
            with contextlib.suppress(Exception):
                await self._keeper
        if self._notes:
            await asyncio.wait(set(self._notes), timeout=2)
        await self.database.aclose()

    def _start_keeper(self) -> None:
        if self._keeper is None and not self._closing.is_set():
            self._keeper = asyncio.get_running_loop().create_task(self._keep(), name="inbox-keeper")

    async def _keep(self) -> None:
        """Reset the idle time of the entries in hand, so no other process claims them while they run."""
        while not self._closing.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._keep_every):
                    await self._closing.wait()
            if self._held and not self._closing.is_set():
                try:
                    await self.stream.keep(list(self._held.values()))
                except Exception as exc:
                    log.warning("could not refresh the updates in hand: %s", exc)


def _inbox_entry(item: StreamEntry) -> InboxEntry:
    platform, _, key = item.key.partition(":")
    try:
        received = int(item.id.split("-")[0]) / 1000  # a Redis stream id starts with its add time in ms
    except ValueError:
        received = time.time()
    return InboxEntry(
        platform=platform,
        key=key,
        kind=item.kind,
        payload=item.payload,
        received_at=received,
        state=item.state or "new",
        attempts=item.deliveries - 1,
        partition=item.part,
    )
