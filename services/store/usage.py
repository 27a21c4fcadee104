"""The usage log: one row per interaction, recorded without waiting and written in batches by one task.

`UsageLog.record` only turns the event into a row and appends it to a list (no I/O, no await); a writer
task writes the list in one transaction when it reaches `flush_rows` rows or `flush_ms` after its first row,
whichever comes first, and on `aclose()`. So a clean shutdown loses nothing and a crash loses at most the rows
recorded since the last flush.

Privacy: with `hash_user_ids` on, user ids *and chat ids* are stored as HMAC-SHA-256 of
`platform NUL id` keyed by the salt (hex). Chat ids are hashed too because a Telegram private chat's id is its
user's id; hashes still count unique users and chats, and `delete_user` / `rows_for_user` hash the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import hmac
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from services.errors import StoreError
from services.store.db import Database

log = logging.getLogger(__name__)

_HASHES_REMEMBERED = 50_000
_RETRY_MAX_S = 30.0
USAGE_COLUMNS = (
    "at",
    "platform",
    "chat_id",
    "chat_type",
    "user_id",
    "action",
    "target",
    "backend",
    "outcome",
    "bytes_sent",
    "latency_ms",
    "cache_hit",
    "units",
)
_SELECT_USER = (
    "SELECT at, platform, chat_id, chat_type, user_id, action, target, backend, outcome,"
    " bytes_sent, latency_ms, cache_hit, units FROM usage WHERE platform = ? AND user_id = ? ORDER BY at, id"
)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class UsageEvent:
    """One interaction: who asked what on which platform, and how it went.

    platform: telegram, discord, cli. chat_type: private, group, supergroup, channel, guild, dm.
    action: link, post, user, hashtag, audio, inline, settings, stats, privacy, …
    target: post id, username or tag. backend: the download backend or metadata provider that answered.
    outcome: `ok` or an error code (`services.errors.error_code`). units: upstream units spent.
    """

    platform: str
    action: str
    chat_id: int | str | None = None
    chat_type: str | None = None
    user_id: int | str | None = None
    target: str | None = None
    backend: str | None = None
    outcome: str = "ok"
    bytes_sent: int = 0
    latency_ms: float = 0.0
    cache_hit: bool = False
    units: int = 0
    at: datetime = field(default_factory=_utcnow)


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One stored row, as kept: ids are text, and hashes when hashing is on."""

    at: datetime
    platform: str
    chat_id: str | None
    chat_type: str | None
    user_id: str | None
    action: str
    target: str | None
    backend: str | None
    outcome: str
    bytes_sent: int
    latency_ms: float
    cache_hit: bool
    units: int


class UsageCollector:
    """Usage events of one inbox entry, held back so they are written with its completion."""

    __slots__ = ("events", "open")

    def __init__(self) -> None:
        self.events: list[UsageEvent] = []
        self.open = True


_COLLECTOR: contextvars.ContextVar[UsageCollector | None] = contextvars.ContextVar(
    "usage_collector", default=None
)


@contextlib.contextmanager
def collect_usage() -> Iterator[UsageCollector]:
    """Within this block (and tasks started in it), `UsageLog.record` hands events to the collector."""
    collector = UsageCollector()
    token = _COLLECTOR.set(collector)
    try:
        yield collector
    finally:
        # A task started inside that records later falls back to the normal queue rather than a dead list.
        collector.open = False
        _COLLECTOR.reset(token)


def to_epoch(moment: datetime) -> float:
    """Seconds since the epoch; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class UsageLog:
    """Records usage events off the handlers' path and answers privacy requests."""

    def __init__(
        self,
        db: Database,
        *,
        flush_rows: int = 200,
        flush_ms: float = 500,
        hash_user_ids: bool = False,
        salt: str = "",
        retention_days: float = 0,
        max_pending: int = 100_000,
        max_batch: int = 1000,
        purge_every_s: float = 3600.0,
    ) -> None:
        if flush_rows < 1 or flush_ms <= 0 or max_batch < 1:
            raise StoreError("flush_rows and max_batch must be at least 1, and flush_ms above 0")
        if hash_user_ids and not salt:
            # An unsalted hash of a numeric id is reversed by trying every id; the salt is the secret.
            raise StoreError("hashing user ids needs a salt")
        if retention_days < 0:
            raise StoreError("retention_days must be 0 (keep everything) or more")
        self._db = db
        self._flush_rows = flush_rows
        self._flush_s = flush_ms / 1000
        self._hasher = hmac.new(salt.encode(), digestmod=hashlib.sha256) if hash_user_ids else None
        # The same users and chats recur; remembering their hashes keeps record() cheap.
        self._hashes: dict[tuple[str, str], str] = {}
        self._retention_days = retention_days
        self._max_pending = max_pending
        self._max_batch = max_batch
        self._purge_every_s = purge_every_s
        # Rows, not events: tuples of plain values drop out of the garbage collector's lists, so a backlog
        # does not make full collections (and so event-loop pauses) longer.
        self._pending: list[tuple[Any, ...]] = []
        self._wake = asyncio.Event()  # rows are waiting, or we are stopping
        self._full = asyncio.Event()  # a batch is full, or we are stopping
        self._write_lock = asyncio.Lock()
        self._writer: asyncio.Task[None] | None = None
        self._purger: asyncio.Task[None] | None = None
        self._stopping = False
        self._closed = False
        self._written = 0
        self._dropped = 0

    @property
    def pending(self) -> int:
        """Events recorded but not yet written."""
        return len(self._pending)

    @property
    def written(self) -> int:
        """Events committed to the database since this log was created."""
        return self._written

    @property
    def dropped(self) -> int:
        """Events refused because the log was closed or `max_pending` events were already waiting."""
        return self._dropped

    def start(self) -> None:
        """Start the writer task (and the retention purge, when retention is set) on the running loop."""
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_loop(), name="usage-log-writer")
        if self._retention_days and self._purger is None:
            self._purger = asyncio.create_task(self._purge_loop(), name="usage-log-purge")

    def record(self, event: UsageEvent) -> None:
        """Queue one event for the writer as a row; never waits and never raises.

        Inside `collect_usage()` the event goes to the collector instead: the inbox writes it together with
        the entry's completion, so an answered update has its row exactly once.
        """
        collector = _COLLECTOR.get()
        if collector is not None and collector.open:
            collector.events.append(event)
            return
        pending = self._pending
        if self._closed or len(pending) >= self._max_pending:
            # A stuck disk must not grow memory without bound or stall a handler: count the loss instead.
            self._dropped += 1
            return
        try:
            row = self.as_row(event)
        except Exception as exc:
            # A malformed event is a bug in its caller; losing that one row beats failing the user's request.
            self._dropped += 1
            log.error(
                "usage event dropped: %s", exc, extra={"platform": event.platform, "action": event.action}
            )
            return
        pending.append(row)
        if len(pending) == 1:
            self._wake.set()
        if len(pending) >= self._flush_rows:
            self._full.set()

    async def flush(self) -> None:
        """Write every event recorded before this call."""
        await self._write_pending()

    async def aclose(self) -> None:
        """Stop the tasks and write everything still queued; later events are dropped."""
        if self._closed:
            return
        self._closed = True
        self._stopping = True
        self._wake.set()
        self._full.set()
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
        if self._writer is not None:
            try:
                await self._writer
            except Exception:
                log.exception("usage log writer failed; writing what is left")
        await self._write_pending()

    def stored_id(self, platform: str, value: int | str | None) -> str | None:
        """How a user or chat id is kept: as text, or its keyed hash when hashing is on."""
        if value is None:
            return None
        text = str(value)
        if self._hasher is None:
            return text
        known = self._hashes.get((platform, text))
        if known is None:
            hasher = self._hasher.copy()
            hasher.update(f"{platform}\x00{text}".encode())
            known = hasher.hexdigest()
            if len(self._hashes) >= _HASHES_REMEMBERED:
                self._hashes.clear()
            self._hashes[(platform, text)] = known
        return known

    async def delete_user(self, platform: str, user_id: int | str) -> int:
        """Delete every row of one user (queued ones included); return how many were deleted."""
        await self.flush()
        return await self._db.execute(
            "DELETE FROM usage WHERE platform = ? AND user_id = ?",
            (platform, self.stored_id(platform, user_id)),
        )

    async def rows_for_user(self, platform: str, user_id: int | str) -> list[UsageRow]:
        """Every row kept about one user, oldest first: what /privacy shows."""
        await self.flush()
        rows = await self._db.fetchall(
            _SELECT_USER,
            (platform, self.stored_id(platform, user_id)),
        )
        return [_row(values) for values in rows]

    async def purge(self, now: datetime | None = None) -> int:
        """Delete rows older than the retention period; return how many (0 when retention is off)."""
        if not self._retention_days:
            return 0
        cutoff = (now or _utcnow()) - timedelta(days=self._retention_days)
        return await self._db.execute("DELETE FROM usage WHERE at < ?", (to_epoch(cutoff),))

    def as_row(self, event: UsageEvent) -> tuple[Any, ...]:
        """The event as stored: values in `USAGE_COLUMNS` order, ids hashed when hashing is on."""
        return (
            to_epoch(event.at),
            event.platform,
            self.stored_id(event.platform, event.chat_id),
            event.chat_type,
            self.stored_id(event.platform, event.user_id),
            event.action,
            event.target,
            event.backend,
            event.outcome,
            int(event.bytes_sent),
            float(event.latency_ms),
            1 if event.cache_hit else 0,
            int(event.units),
        )

    async def _write_pending(self) -> None:
        """Write the queued events, `max_batch` per transaction; on failure requeue the rest and raise."""
        async with self._write_lock:
            # Taken under the lock, so a flush() that waited for the writer also writes what came after.
            batch = self._pending
            if not batch:
                return
            self._pending = []
            self._wake.clear()
            self._full.clear()
            done = 0
            try:
                while done < len(batch):
                    # Bounded transactions: binding a slice holds the GIL in the database thread.
                    chunk = batch[done : done + self._max_batch]
                    await self._db.insert_rows("usage", USAGE_COLUMNS, chunk)
                    done += len(chunk)
                    self._written += len(chunk)
            except BaseException:
                self._pending[:0] = batch[done:]
                self._wake.set()
                raise

    async def _write_loop(self) -> None:
        """Flush every `flush_rows` rows or `flush_ms` after the first queued row, until stopped."""
        retry_s = self._flush_s
        while True:
            await self._wake.wait()
            if not self._stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self._flush_s)
            try:
                await self._write_pending()
            except StoreError as exc:
                log.error(
                    "usage log write failed; retrying in %.1fs: %s",
                    retry_s,
                    exc,
                    extra={"pending": self.pending},
                )
                if self._stopping:
                    return  # aclose() makes the last attempt and reports its error
                await asyncio.sleep(retry_s)
                # A full or read-only disk stays so for a while: back off rather than log twice a second.
                retry_s = min(retry_s * 2, _RETRY_MAX_S)
                continue
            retry_s = self._flush_s
            if self._stopping and not self._pending:
                return

    async def _purge_loop(self) -> None:
        """Apply the retention period now and every `purge_every_s` seconds."""
        while True:
            try:
                deleted = await self.purge()
            except StoreError as exc:
                log.error("usage log purge failed: %s", exc)
            else:
                if deleted:
                    log.info("usage log purge deleted %d rows", deleted)
            await asyncio.sleep(self._purge_every_s)


def _row(values: tuple[Any, ...]) -> UsageRow:
    (at, platform, chat_id, chat_type, user_id, action, target, backend, outcome) = values[:9]
    bytes_sent, latency_ms, cache_hit, units = values[9:]
    return UsageRow(
        at=datetime.fromtimestamp(at, UTC),
        platform=platform,
        chat_id=chat_id,
        chat_type=chat_type,
        user_id=user_id,
        action=action,
        target=target,
        backend=backend,
        outcome=outcome,
        bytes_sent=int(bytes_sent),
        latency_ms=float(latency_ms),
        cache_hit=bool(cache_hit),
        units=int(units),
    )
