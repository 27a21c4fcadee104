"""The store: usage log, sent-media cache, chat settings and operator stats, behind one `Store`.

It runs on any `Database` engine (SQLite or PostgreSQL); the caller opens the engine and hands it over.
"""

from __future__ import annotations

from types import TracebackType

from services.shared import PostRefs
from services.store.cache import MediaCache
from services.store.chats import ChatPrefs, ChatSettings
from services.store.db import SCHEMA_VERSION, Database, Transaction
from services.store.inbox import DatabaseInbox, Inbox, InboxEntry, InboxStats, SqliteInbox
from services.store.sessions import GatewaySession, GatewaySessions
from services.store.stats import StatsReport, compute_stats, render_stats_table
from services.store.usage import UsageEvent, UsageLog, UsageRow

__all__ = [
    "SCHEMA_VERSION",
    "ChatPrefs",
    "ChatSettings",
    "Database",
    "DatabaseInbox",
    "GatewaySession",
    "GatewaySessions",
    "Inbox",
    "InboxEntry",
    "InboxStats",
    "MediaCache",
    "SqliteInbox",
    "StatsReport",
    "Store",
    "Transaction",
    "UsageEvent",
    "UsageLog",
    "UsageRow",
    "compute_stats",
    "render_stats_table",
]


class Store:
    """The process's database and everything kept in it; open once at start-up, close on shutdown."""

    def __init__(
        self, db: Database, usage: UsageLog, inbox: Inbox | None = None, *, media_hot: PostRefs | None = None
    ) -> None:
        self.db = db
        self.usage = usage
        self.inbox: Inbox = inbox if inbox is not None else DatabaseInbox(db, usage)
        self.media = MediaCache(db, hot=media_hot)
        self.chats = ChatSettings(db)
        self.gateway_sessions = GatewaySessions(db)

    @classmethod
    async def open(
        cls,
        db: Database,
        *,
        flush_rows: int = 200,
        flush_ms: float = 500,
        hash_user_ids: bool = False,
        salt: str = "",
        retention_days: float = 0,
        media_hot: PostRefs | None = None,
    ) -> Store:
        """Take over an open (migrated) database and start the usage log's writer; closes `db` on failure."""
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
        inbox = DatabaseInbox(db, usage)
        inbox.start()
        return cls(db, usage, inbox, media_hot=media_hot)

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
