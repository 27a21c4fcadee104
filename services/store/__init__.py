"""SQLite store: usage log, sent-media cache, chat settings and operator stats, behind one `Store`."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from services.store.cache import MediaCache
from services.store.chats import ChatPrefs, ChatSettings
from services.store.db import SCHEMA_VERSION, Database
from services.store.inbox import Inbox, InboxEntry, InboxStats, SqliteInbox
from services.store.stats import StatsReport, compute_stats, render_stats_table
from services.store.usage import UsageEvent, UsageLog, UsageRow

__all__ = [
    "SCHEMA_VERSION",
    "ChatPrefs",
    "ChatSettings",
    "Database",
    "Inbox",
    "InboxEntry",
    "InboxStats",
    "MediaCache",
    "SqliteInbox",
    "StatsReport",
    "Store",
    "UsageEvent",
    "UsageLog",
    "UsageRow",
    "compute_stats",
    "render_stats_table",
]


class Store:
    """The process's database and everything kept in it; open once at start-up, close on shutdown."""

    def __init__(self, db: Database, usage: UsageLog, inbox: Inbox | None = None) -> None:
        self.db = db
        self.usage = usage
        self.inbox: Inbox = inbox if inbox is not None else SqliteInbox(db, usage)
        self.media = MediaCache(db)
        self.chats = ChatSettings(db)

    @classmethod
    async def open(
        cls,
        path: Path | str,
        *,
        flush_rows: int = 200,
        flush_ms: float = 500,
        hash_user_ids: bool = False,
        salt: str = "",
        retention_days: float = 0,
    ) -> Store:
        """Open the database (migrating it) and start the usage log's writer."""
        db = await Database.open(path)
        try:
            usage = UsageLog(
                db,
                flush_rows=flush_rows,
                flush_ms=flush_ms,
                hash_user_ids=hash_user_ids,
                salt=salt,
                retention_days=retention_days,
            )
        except BaseException:
            await db.close()
            raise
        usage.start()
        inbox = SqliteInbox(db, usage)
        inbox.start()
        return cls(db, usage, inbox)

    async def stats(self, days: float) -> StatsReport:
        """Operator stats for the last `days`, including events still queued."""
        await self.usage.flush()
        return await compute_stats(self.db, days=days)

    async def aclose(self) -> None:
        """Write every queued event, then close the database."""
        try:
            await self.inbox.aclose()
            await self.usage.aclose()
        finally:
            await self.db.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
