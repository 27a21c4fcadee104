"""The durable inbox: every update the bot takes is stored before the platform hears it was received.

Life of an entry: `put_many` stores it (state `new`) before the frontend confirms it to the platform (the next
`getUpdates` offset, the webhook's HTTP 200); progress notes (`deferred`, `sending`) follow without waiting;
`complete` marks it done *together with its usage rows* in one transaction right after the reply went out.
Entries still open at start-up were taken by a process that died: the frontend replays them (oldest first),
or `expire`s those the platform no longer lets it answer. Done entries stay a while as tombstones, so an
update the platform redelivers (a webhook that never got its 200) is recognised and not answered twice.

Writes are group-committed: every operation queued while the previous transaction ran goes into the next
one, so a poll of 100 updates, or 100 replies finishing together, cost one commit.

`Inbox` is the interface; `DatabaseInbox` implements it on either store engine (SQLite or PostgreSQL) through
`Database`, in SQL both run (ON CONFLICT … DO NOTHING RETURNING). With replicas, `StreamInbox`
(services/store/stream_inbox.py) implements it on a shared stream: there an entry put by one process is
handed out by `take` to any (`shared`), and entries a dead process left are claimed by the live ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from services.errors import StoreError
from services.store.db import Batch, Database, Transaction, run_batch_in
from services.store.usage import USAGE_COLUMNS, UsageEvent, UsageLog

log = logging.getLogger(__name__)

# States of an open entry. `sending`: a reply was about to go out (a replay may duplicate it);
# `deferred`: the platform was told an answer will follow (a Discord interaction that can still be answered).
NEW, DEFERRED, SENDING = "new", "deferred", "sending"
# Events of the inbox log, counted by the stats.
REPLAYED, EXPIRED, DUPLICATE = "replayed", "expired", "duplicate"

# How long a `sending` note may wait for another write to ride with before it is written alone.
NOTE_DELAY = 0.02
_ENTRY_COLUMNS = ("platform", "key", "kind", "payload", "received_at")
_MAX_ROWS_PER_INSERT = 500  # well under SQLite's bound-variable limit for every table here
_SELECT_OPEN = (
    "SELECT platform, key, kind, payload, received_at, state, attempts FROM inbox"
    " WHERE platform = ? AND done_at IS NULL ORDER BY received_at, key"
)


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """One update as taken from a platform: its unique key there, what kind it is and its JSON."""

    platform: str
    key: str
    kind: str
    payload: str
    received_at: float
    state: str = NEW
    attempts: int = 0
    # The part of a shared stream it goes into (a platform, a Discord shard); unused by the database engine.
    partition: str = ""

    def age(self, now: float | None = None) -> float:
        """Seconds since the bot took it."""
        return (time.time() if now is None else now) - self.received_at


@dataclass(frozen=True, slots=True)
class InboxStats:
    """Inbox figures: open entries now, and replay events in the period."""

    unfinished: int
    oldest_age_s: float | None
    replayed: int
    expired: int
    duplicates: int

    @classmethod
    def empty(cls) -> InboxStats:
        """Nothing open, nothing replayed."""
        return cls(unfinished=0, oldest_age_s=None, replayed=0, expired=0, duplicates=0)

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON."""
        return {
            "unfinished": self.unfinished,
            "oldest_unfinished_age_s": self.oldest_age_s,
            "replayed": self.replayed,
            "expired": self.expired,
            "duplicates": self.duplicates,
        }


class Inbox(Protocol):
    """Where updates wait from the moment they are taken until they are answered."""

    # False: the process that puts an entry runs it (and replays the open ones at start-up).
    # True: entries are handed out by `take` to whichever process sharing the inbox asks.
    shared: bool

    async def take(
        self, partitions: Sequence[str], claim: Sequence[str], count: int, block: float
    ) -> list[InboxEntry]:
        """Entries for this process to answer (a shared inbox only): open ones a dead process left in the
        `claim` partitions first (attempts > 0), then new ones of `partitions`; [] after `block` s if none."""

    async def put_many(self, entries: Sequence[InboxEntry]) -> list[bool]:
        """Store entries durably; for each, True if new, False if already known (open or done)."""

    def note(self, platform: str, key: str, state: str) -> None:
        """Record an open entry's progress (`deferred`, `sending`) without waiting for the disk."""

    def complete(self, platform: str, key: str, events: Sequence[UsageEvent]) -> Awaitable[None]:
        """Mark the entry done and write its usage rows, in one transaction (awaitable: done when on disk).

        An asyncio.Future returned here must be queued already: cancelling it must not stop the write."""

    async def unfinished(self, platform: str) -> list[InboxEntry]:
        """Open entries of a platform, oldest first."""

    async def start_replay(self, entries: Sequence[InboxEntry]) -> None:
        """Count these open entries as replayed (and as possible duplicates if a reply was being sent)."""

    async def expire(self, entry: InboxEntry, events: Sequence[UsageEvent]) -> None:
        """Close an entry that can no longer be answered, with its usage rows and an `expired` log event."""

    async def stats(self, since: float) -> InboxStats:
        """Open entries now, replay events since `since` (epoch seconds)."""

    async def purge(self, done_before: float) -> int:
        """Forget done entries finished before `done_before`; return how many."""

    async def aclose(self) -> None:
        """Write everything queued and stop."""


@dataclass(slots=True)
class _Op:
    """One queued write; `future` is None for notes nobody waits for."""

    kind: str
    args: tuple[Any, ...]
    future: asyncio.Future[Any] | None


class DatabaseInbox:
    """The inbox in the bot's database (SQLite or PostgreSQL), written by one group-committing task."""

    shared = False

    def __init__(self, db: Database, usage: UsageLog) -> None:
        self._db = db
        self._usage = usage
        self._ops: list[_Op] = []
        self._wake = asyncio.Event()
        self._note_due: asyncio.TimerHandle | None = None
        self._writer: asyncio.Task[None] | None = None
        self._closed = False

    def start(self) -> None:
        """Start the writer task on the running loop."""
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_loop(), name="inbox-writer")

    async def put_many(self, entries: Sequence[InboxEntry]) -> list[bool]:
        """Store entries durably; for each, True if new, False if already known (open or done)."""
        if not entries:
            return []
        return list(await self._submit("put", tuple(entries)))

    def note(self, platform: str, key: str, state: str) -> None:
        """Record an open entry's progress (`deferred`, `sending`) without waiting for the disk."""
        if self._closed:
            return
        op = _Op("note", (state, platform, key), None)
        if state != SENDING or self._writer is None:
            self._queue(op)
            return
        # `sending` rides with the next write (usually the same entry's completion, milliseconds later)
        # rather than costing a commit of its own; alone, it is written NOTE_DELAY later.
        self._ops.append(op)
        if self._note_due is None:
            self._note_due = asyncio.get_running_loop().call_later(NOTE_DELAY, self._wake.set)

    def complete(self, platform: str, key: str, events: Sequence[UsageEvent]) -> Awaitable[None]:
        """Mark the entry done and write its usage rows, in one transaction; queued now, the awaitable is
        done when it is on disk."""
        # A future rather than a coroutine: the caller shields it from its own cancellation, and shielding a
        # coroutine cost a task (two more turns of the event loop while the request holds its slot).
        rows = [self._usage.as_row(event) for event in events]
        return self._enqueue("done", (platform, key, rows, None))

    async def take(
        self, partitions: Sequence[str], claim: Sequence[str], count: int, block: float
    ) -> list[InboxEntry]:
        """Nothing to hand out: the process that puts an entry runs it."""
        await asyncio.sleep(block)
        return []

    async def close_once(
        self, entry: InboxEntry, events: Sequence[UsageEvent], event: str | None = None
    ) -> bool:
        """Record `entry` as done with its usage rows in one transaction, unless it is recorded done already
        (then nothing is written); True if this call recorded it. For entries not stored here before."""
        rows = [self._usage.as_row(e) for e in events]
        return bool(await self._submit("close", (entry, rows, event)))

    async def done_keys(self, platform: str, keys: Sequence[str]) -> set[str]:
        """Which of these keys are recorded done."""
        if not keys:
            return set()
        marks = ", ".join("?" * len(keys))
        rows = await self._db.fetchall(
            f"SELECT key FROM inbox WHERE platform = ? AND done_at IS NOT NULL AND key IN ({marks})",  # noqa: S608
            (platform, *keys),
        )
        return {str(row[0]) for row in rows}

    async def unfinished(self, platform: str) -> list[InboxEntry]:
        """Open entries of a platform, oldest first."""
        rows = await self._db.fetchall(_SELECT_OPEN, (platform,))
        return [InboxEntry(*row) for row in rows]

    async def start_replay(self, entries: Sequence[InboxEntry]) -> None:
        """Count these open entries as replayed (and as possible duplicates if a reply was being sent)."""
        if not entries:
            return
        now = time.time()
        log_rows = [(now, e.platform, REPLAYED, e.key) for e in entries]
        log_rows += [(now, e.platform, DUPLICATE, e.key) for e in entries if e.state == SENDING]
        async with self._db.transaction() as tx:
            await tx.executemany(
                "UPDATE inbox SET attempts = attempts + 1 WHERE platform = ? AND key = ?",
                [(e.platform, e.key) for e in entries],
            )
            await tx.insert_rows("inbox_log", ("at", "platform", "event", "key"), log_rows)

    async def expire(self, entry: InboxEntry, events: Sequence[UsageEvent]) -> None:
        """Close an entry that can no longer be answered, with its usage rows and an `expired` log event."""
        rows = [self._usage.as_row(event) for event in events]
        await self._submit("done", (entry.platform, entry.key, rows, EXPIRED))

    async def stats(self, since: float) -> InboxStats:
        """Open entries now, replay events since `since` (epoch seconds)."""
        return await inbox_stats(self._db, since)

    async def purge(self, done_before: float) -> int:
        """Forget done entries finished before `done_before`; return how many."""
        return await self._db.execute("DELETE FROM inbox WHERE done_at < ?", (done_before,))

    async def aclose(self) -> None:
        """Write everything queued and stop."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await self._writer
        await self._write_queued()

    async def _submit(self, kind: str, args: tuple[Any, ...]) -> Any:
        return await self._enqueue(kind, args)

    def _enqueue(self, kind: str, args: tuple[Any, ...]) -> Awaitable[Any]:
        """Queue one write; what it returns is done with the write's result once it is committed."""
        if self._closed:
            raise StoreError("the inbox is closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue(_Op(kind, args, future))
        if self._writer is None:  # not started (a tool, a test): write at once
            return self._write_now(future)
        return future

    async def _write_now(self, future: asyncio.Future[Any]) -> Any:
        await self._write_queued()
        return await future

    def _queue(self, op: _Op) -> None:
        self._ops.append(op)
        self._wake.set()

    async def _write_loop(self) -> None:
        while not self._closed:
            await self._wake.wait()
            await self._write_queued()

    async def _write_queued(self) -> None:
        """Write every queued operation in one transaction and settle their futures."""
        ops, self._ops = self._ops, []
        self._wake.clear()
        if self._note_due is not None:
            self._note_due.cancel()
            self._note_due = None
        if not ops:
            return
        try:
            results = await self._write(ops)
        except BaseException as exc:
            error = exc if isinstance(exc, StoreError) else StoreError(f"inbox write failed: {exc}")
            for op in ops:
                if op.future is not None and not op.future.done():
                    op.future.set_exception(error)
            if any(op.future is None for op in ops):
                log.error("inbox progress notes lost: %s", exc)
            if not isinstance(exc, Exception):
                raise
            return
        for op, result in zip(ops, results, strict=True):
            if op.future is not None and not op.future.done():
                op.future.set_result(result)

    async def _write(self, ops: list[_Op]) -> list[Any]:
        """One transaction: new entries, progress notes, completions with their usage rows, log events."""
        entries = [entry for op in ops if op.kind == "put" for entry in op.args]
        notes = [op.args for op in ops if op.kind == "note"]
        done = [op.args for op in ops if op.kind == "done"]
        closes = [op.args for op in ops if op.kind == "close"]
        closed: list[bool] = []
        batch = Batch()
        inserts: list[int] = []
        for start in range(0, len(entries), _MAX_ROWS_PER_INSERT):
            chunk = entries[start : start + _MAX_ROWS_PER_INSERT]
            marks = ", ".join(["(?, ?, ?, ?, ?)"] * len(chunk))
            inserts.append(
                batch.fetchall(
                    "INSERT INTO inbox (platform, key, kind, payload, received_at) VALUES "  # noqa: S608
                    + marks
                    + " ON CONFLICT (platform, key) DO NOTHING RETURNING platform, key",
                    [v for e in chunk for v in (e.platform, e.key, e.kind, e.payload, e.received_at)],
                )
            )
        batch.executemany(
            "UPDATE inbox SET state = ? WHERE platform = ? AND key = ? AND done_at IS NULL", notes
        )
        if done:
            batch.insert_rows("usage", USAGE_COLUMNS, [row for d in done for row in d[2]])
            now = time.time()
            batch.executemany(
                "UPDATE inbox SET done_at = ?, payload = '' WHERE platform = ? AND key = ?",
                [(now, platform, key) for platform, key, _, _ in done],
            )
            events = [(now, platform, event, key) for platform, key, _, event in done if event]
            batch.insert_rows("inbox_log", ("at", "platform", "event", "key"), events)
        if closes:
            # A tombstone's rows depend on whether its INSERT won: statement by statement, one transaction.
            async with self._db.transaction() as tx:
                answers = await run_batch_in(tx, batch)
                closed = await self._write_closes(tx, closes)
        else:
            answers = await self._db.run_batch(batch)
        fresh_keys = {(str(p), str(k)) for index in inserts for p, k in answers[index]}
        results: list[Any] = []
        for op in ops:
            if op.kind == "put":
                flags = []
                for entry in op.args:
                    pair = (entry.platform, entry.key)
                    # The same key twice in one batch (a redelivery racing the original): the first is new.
                    flags.append(pair in fresh_keys)
                    fresh_keys.discard(pair)
                results.append(flags)
            elif op.kind == "close":
                results.append(closed.pop(0))
            else:
                results.append(None)
        return results

    async def _write_closes(self, tx: Transaction, closes: list[tuple[Any, ...]]) -> list[bool]:
        """Done tombstones for entries stored elsewhere (a shared stream); rows only with a new tombstone."""
        now = time.time()
        # The same key twice in one batch (two replicas' completions cannot be, one process's may): the first.
        firsts: dict[tuple[str, str], int] = {}
        for n, (entry, _, _) in enumerate(closes):
            firsts.setdefault((entry.platform, entry.key), n)
        fresh: set[tuple[str, str]] = set()
        keys = list(firsts)
        for start in range(0, len(keys), _MAX_ROWS_PER_INSERT):
            chunk = [closes[firsts[k]][0] for k in keys[start : start + _MAX_ROWS_PER_INSERT]]
            marks = ", ".join(["(?, ?, ?, '', ?, ?)"] * len(chunk))
            returned = await tx.fetchall(
                "INSERT INTO inbox (platform, key, kind, payload, received_at, done_at) VALUES "  # noqa: S608
                + marks
                + " ON CONFLICT (platform, key) DO NOTHING RETURNING platform, key",
                [v for e in chunk for v in (e.platform, e.key, e.kind, e.received_at, now)],
            )
            fresh.update((str(p), str(k)) for p, k in returned)
        won = [
            (e.platform, e.key) in fresh and firsts[(e.platform, e.key)] == n
            for n, (e, _, _) in enumerate(closes)
        ]
        first = [close for close, new in zip(closes, won, strict=True) if new]
        await tx.insert_rows("usage", USAGE_COLUMNS, [row for _, rows, _ in first for row in rows])
        events = [(now, e.platform, event, e.key) for e, _, event in first if event]
        await tx.insert_rows("inbox_log", ("at", "platform", "event", "key"), events)
        return won


# The first version's name, when the inbox ran on SQLite only.
SqliteInbox = DatabaseInbox


async def inbox_stats(db: Database, since: float, now: float | None = None) -> InboxStats:
    """Open entries now and replay events since `since`, read from any database with the inbox tables."""
    now = time.time() if now is None else now
    row = await db.fetchone("SELECT count(*), min(received_at) FROM inbox WHERE done_at IS NULL")
    unfinished, oldest = (int(row[0]), row[1]) if row else (0, None)
    counts = dict(
        await db.fetchall(
            "SELECT event, count(*) FROM inbox_log WHERE at >= ? GROUP BY event",
            (since,),
        )
    )
    return InboxStats(
        unfinished=unfinished,
        oldest_age_s=None if oldest is None else max(0.0, now - float(oldest)),
        replayed=int(counts.get(REPLAYED, 0)),
        expired=int(counts.get(EXPIRED, 0)),
        duplicates=int(counts.get(DUPLICATE, 0)),
    )
