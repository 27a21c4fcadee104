"""The bot's update queue: getUpdates long polling with offsets, allowed_updates, and 409 conflicts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sandbox.telegram.errors import conflict

Json = dict[str, Any]

# Telegram's default when a bot never said: everything except these three.
DEFAULT_EXCLUDED = {"chat_member", "message_reaction", "message_reaction_count"}
TERMINATED = "terminated by other getUpdates request; make sure that only one bot instance is running"


@dataclass(slots=True)
class Dropped:
    """An update Telegram would never have queued, and why."""

    update_id: int
    kind: str
    reason: str
    update: Json


class UpdateQueue:
    """Pending updates, confirmed by offset, handed out by long polls or a webhook."""

    def __init__(self, on_change: Callable[[], None], first_id: int = 700_000_001) -> None:
        self.pending: list[Json] = []
        self.dropped: list[Dropped] = []
        self.allowed: set[str] | None = None  # None: Telegram's default set
        self._next_id = first_id
        self._poll: asyncio.Future[None] | None = None
        self._closed = False
        self._on_change = on_change

    @property
    def waiting(self) -> bool:
        """Whether a long poll is waiting for updates right now."""
        return self._poll is not None and not self._poll.done()

    def allows(self, kind: str) -> bool:
        """Whether updates of this kind would be queued now."""
        if self.allowed is None:
            return kind not in DEFAULT_EXCLUDED
        return kind in self.allowed

    def set_allowed(self, allowed: Any) -> None:
        """Remember `allowed_updates`; absent keeps the last list, an empty one restores the default."""
        if isinstance(allowed, list):
            self.allowed = {str(kind) for kind in allowed} or None

    def push(self, kind: str, payload: Json, *, drop_reason: str | None = None) -> tuple[int, Json]:
        """Queue an update (unless Telegram would not have); returns its id and the whole update."""
        update_id = self._next_id
        self._next_id += 1
        update: Json = {"update_id": update_id, kind: payload}
        reason = drop_reason or (None if self.allows(kind) else "not in allowed_updates")
        if reason:
            self.dropped.append(Dropped(update_id, kind, reason, update))
        else:
            self.pending.append(update)
            if self._poll is not None and not self._poll.done():
                self._poll.set_result(None)
        self._on_change()
        return update_id, update

    def confirm(self, offset: int) -> None:
        """Forget updates below `offset` (getUpdates' offset confirms everything before it)."""
        before = len(self.pending)
        self.pending = [u for u in self.pending if u["update_id"] >= offset]
        if len(self.pending) != before:
            self._on_change()

    def confirm_one(self, update_id: int) -> None:
        """Forget one update (a webhook accepted it)."""
        self.pending = [u for u in self.pending if u["update_id"] != update_id]
        self._on_change()

    def is_confirmed(self, update_id: int) -> bool:
        """Whether this queued update has been confirmed by the bot (or accepted by its webhook)."""
        return update_id < self._next_id and all(u["update_id"] != update_id for u in self.pending)

    def clear(self) -> None:
        """Drop every pending update (drop_pending_updates)."""
        self.pending = []
        self._on_change()

    def _batch(self, offset: int, limit: int) -> list[Json]:
        if offset < 0:
            # A negative offset keeps only the last |offset| updates.
            self.pending = self.pending[offset:]
        elif offset > 0:
            self.confirm(offset)
        return self.pending[:limit]

    async def poll(self, offset: int, limit: int, wait: float) -> list[Json]:
        """getUpdates: what is pending from `offset`, waiting up to `wait` s for something to arrive."""
        batch = self._batch(offset, limit)
        if batch or wait <= 0 or self._closed:
            return batch
        self.terminate(TERMINATED)
        poll = self._poll = asyncio.get_running_loop().create_future()
        self._on_change()
        try:
            await asyncio.wait_for(poll, wait)
        except TimeoutError:
            pass
        finally:
            if self._poll is poll:
                self._poll = None
        return self._batch(0, limit)

    def terminate(self, reason: str) -> None:
        """End a waiting long poll with 409 Conflict."""
        if self._poll is not None and not self._poll.done():
            self._poll.set_exception(conflict(reason))

    def reopen(self) -> None:
        """Accept long polls again after `close()`."""
        self._closed = False

    def close(self) -> None:
        """Release any waiting long poll with what is pending (the emulator is stopping)."""
        self._closed = True
        if self._poll is not None and not self._poll.done():
            self._poll.set_result(None)
