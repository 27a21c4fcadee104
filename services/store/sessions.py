"""Discord gateway sessions kept across restarts, so that a new process can RESUME what a dead one left.

Discord keeps a session whose socket died (without close code 1000/1001) for a few minutes and replays its
dispatches after a given sequence to whoever RESUMEs it. The bot saves, per shard, the session id, its resume
URL and the last sequence whose answerable events are all in the inbox; the next process resumes from there
(events already stored are recognised by their inbox key) and forgets the row.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from services.store.db import Database

_DELETE = "DELETE FROM discord_sessions WHERE session_id = ?"


@dataclass(frozen=True, slots=True)
class GatewaySession:
    """One shard's gateway session: where and from which sequence to resume it."""

    shard: int
    session_id: str
    seq: int
    resume_url: str
    saved_at: float = 0.0


class GatewaySessions:
    """The `discord_sessions` table: save (upsert by session id), load per shard, forget."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def save(self, sessions: Sequence[GatewaySession], *, ended: Collection[str] = ()) -> None:
        """Store these sessions' positions and drop `ended` ones (replaced by newer sessions), atomically."""
        now = time.time()
        async with self._db.transaction() as tx:
            if ended:
                await tx.executemany(_DELETE, [(i,) for i in ended])
            await tx.executemany(
                "INSERT INTO discord_sessions (session_id, shard, seq, resume_url, saved_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (session_id) DO UPDATE SET seq = excluded.seq,"
                " resume_url = excluded.resume_url, saved_at = excluded.saved_at",
                [(s.session_id, s.shard, s.seq, s.resume_url, now) for s in sessions],
            )

    async def load(self, shards: Collection[int] | None = None) -> list[GatewaySession]:
        """Saved sessions of these shards (all when None), oldest save first."""
        rows = await self._db.fetchall(
            "SELECT shard, session_id, seq, resume_url, saved_at FROM discord_sessions ORDER BY saved_at"
        )
        found = [GatewaySession(int(r[0]), str(r[1]), int(r[2]), str(r[3]), float(r[4])) for r in rows]
        return [s for s in found if shards is None or s.shard in shards]

    async def forget(self, session_ids: Collection[str]) -> None:
        """Drop these sessions (resumed and closed, expired, or ended by a clean shutdown)."""
        if not session_ids:
            return
        async with self._db.transaction() as tx:
            await tx.executemany(_DELETE, [(i,) for i in session_ids])
