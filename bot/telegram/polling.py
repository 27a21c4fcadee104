"""Long polling with the durable inbox: a poll's updates are stored before the getUpdates that confirms them.

aiogram's `Dispatcher.start_polling` moves the offset past an update as soon as its generator yields it, so a
process killed right after that loses the update for good (Telegram forgets what an offset confirmed). This
loop does what it does — getUpdates, feed each update to the dispatcher as a task, back off on errors — with
one step between fetching and the next getUpdates: the whole poll goes into the inbox in one transaction.
It asks for no more updates than it has free handler slots, so every stored update starts at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Sequence
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.methods import GetUpdates
from aiogram.types import ReplyParameters, Update
from aiogram.utils.backoff import Backoff, BackoffConfig

from bot.chat.i18n import pick_language, t
from bot.chat.inbox import Deliveries
from bot.telegram.session import RawUpdatesSession
from services.errors import StoreError
from services.store.inbox import InboxEntry

log = logging.getLogger("tiktok_bot.telegram")

# Updates handled at once; more wait at Telegram until one finishes. A held update costs ~180 objects
# (aiogram's middleware chain): a burst of 1,000 held at once made full garbage collections stall the event
# loop for ~100 ms, while LinkFlow serves only LIMITS__CONCURRENCY of them at a time anyway.
IN_FLIGHT_UPDATES = 100
# In-flight replies get this long to finish when the process is asked to stop.
SHUTDOWN_GRACE = 10.0
BACKOFF = BackoffConfig(min_delay=1.0, max_delay=5.0, factor=1.3, jitter=0.1)
MAX_UPDATES_PER_POLL = 100  # the Bot API's own bound on getUpdates' limit
# While busy, the next poll waits until this many handler slots are free, for up to POLL_GATHER seconds:
# asking as soon as one slot frees polled a burst a few updates at a time (150 getUpdates and inbox
# commits for 1,000 messages instead of ~40), each poll a request, a parse and a commit of its own.
POLL_BATCH = IN_FLIGHT_UPDATES // 4
POLL_GATHER = 0.05


def update_entry(update: Update, payload: str | None = None) -> InboxEntry:
    """The inbox entry of a Telegram update (its JSON as received when the caller has it)."""
    return InboxEntry(
        platform="telegram",
        key=str(update.update_id),
        kind=update.event_type,
        payload=payload if payload is not None else _as_json(update),
        received_at=time.time(),
    )


def _as_json(update: Update) -> str:
    """The update as JSON again (aiogram keeps no raw copy); `Default` markers only matter when sending."""
    return update.model_dump_json(exclude_none=True, fallback=lambda value: None)


class Handlers:
    """Update handlers as tasks, at most `limit` at once; kept so shutdown can drain them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.tasks: set[asyncio.Task[Any]] = set()
        self._slots = asyncio.Semaphore(limit)
        self._enough = asyncio.Event()
        self._wanted = 1

    @property
    def free(self) -> int:
        """Handlers that could start now."""
        return self.limit - len(self.tasks)

    async def wait_free(self, at_least: int = 1, gather: float = 0.0) -> None:
        """Wait until a slot is free, then up to `gather` seconds more until `at_least` are."""
        async with self._slots:
            pass
        wanted = min(at_least, self.limit)
        if self.free >= wanted or gather <= 0:
            return
        self._wanted = wanted
        self._enough.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(gather):
                await self._enough.wait()

    async def spawn(self, job: Awaitable[None]) -> None:
        """Start `job` as a task once a slot is free."""
        await self._slots.acquire()
        task = asyncio.ensure_future(job)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        self._slots.release()
        if self.free >= self._wanted:
            self._enough.set()

    async def drain(self, grace: float) -> None:
        """Let handlers finish for up to `grace` seconds, then cancel the rest (they answer "restarting")."""
        tasks = set(self.tasks)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class InboxFeeder:
    """Runs Telegram updates through the dispatcher as inbox entries: new ones and, at start-up, old ones."""

    def __init__(self, dp: Dispatcher, bot: Bot, deliveries: Deliveries, handlers: Handlers) -> None:
        self.dp = dp
        self.bot = bot
        self.deliveries = deliveries
        self.handlers = handlers
        self.workflow: dict[str, Any] = {"dispatcher": dp, "bots": (bot,), **dp.workflow_data}

    async def take(self, updates: list[Update], payloads: Sequence[str | None] | None = None) -> list[bool]:
        """Store the updates (one transaction), then start a handler for each new one; True for those.

        `payloads`: each update's JSON as received, where the caller has it (else it is serialised again).
        """
        entries = [
            update_entry(u, payloads[i] if payloads is not None else None) for i, u in enumerate(updates)
        ]
        fresh = await self.deliveries.accept(entries)
        for update, entry, new in zip(updates, entries, fresh, strict=True):
            if new:
                await self.handlers.spawn(self.deliveries.run(entry, self._feeder(update)))
        return fresh

    def _feeder(self, update: Update) -> Any:
        return lambda: self.dp.feed_update(self.bot, update, **self.workflow)

    async def replay(self) -> None:
        """Handle again what the previous process stored and did not answer, oldest first."""
        await self.deliveries.replay("telegram", self._handle_old, spawn=self.handlers.spawn)

    async def _handle_old(self, entry: InboxEntry, late: bool) -> None:
        update = Update.model_validate_json(entry.payload, context={"bot": self.bot})
        if late:
            await self._say_late(update)
        await self.dp.feed_update(self.bot, update, **self.workflow)

    async def _say_late(self, update: Update) -> None:
        """Tell the chat the answer comes late because the bot was restarting."""
        message = update.message or update.channel_post
        if message is None:
            return
        user = message.from_user
        lang = pick_language(user.language_code if user is not None else None)
        self.deliveries.note_sending()
        try:
            await self.bot.send_message(
                message.chat.id,
                t(lang, "inbox.late"),
                message_thread_id=message.message_thread_id if message.is_topic_message else None,
                reply_parameters=ReplyParameters(
                    message_id=message.message_id, allow_sending_without_reply=True
                ),
            )
        except Exception:
            log.warning("could not send the late notice", extra={"platform": "telegram"})


async def poll(feeder: InboxFeeder, stop: asyncio.Event, *, wait_s: int = 25) -> None:
    """Long-poll until `stop` is set: store each poll's updates, then confirm them by the next getUpdates."""
    bot, handlers = feeder.bot, feeder.handlers
    allowed = feeder.dp.resolve_used_update_types()
    backoff = Backoff(BACKOFF)
    offset: int | None = None
    request_timeout = int((bot.session.timeout or 60) + wait_s)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        while not stop.is_set():
            await handlers.wait_free(POLL_BATCH, POLL_GATHER)
            limit = max(1, min(MAX_UPDATES_PER_POLL, handlers.free))
            request = GetUpdates(offset=offset, timeout=wait_s, limit=limit, allowed_updates=allowed)
            fetch = asyncio.ensure_future(bot(request, request_timeout=request_timeout))
            await asyncio.wait({fetch, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not fetch.done():
                # Stopping: updates of a poll cut short were not confirmed, Telegram keeps them.
                fetch.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await fetch
                return
            try:
                updates = fetch.result()
            except Exception as exc:
                log.error("getUpdates failed: %s; retrying in %.1fs", exc, backoff.next_delay)
                await backoff.asleep()
                continue
            backoff.reset()
            if not updates:
                continue
            raw = bot.session.raw_updates if isinstance(bot.session, RawUpdatesSession) else {}
            try:
                await feeder.take(updates, [raw.get(u.update_id) for u in updates])
            except StoreError as exc:
                # Not stored, so not confirmed: the same offset asks Telegram for them again.
                log.error("could not store updates: %s; polling them again", exc)
                await backoff.asleep()
                continue
            offset = updates[-1].update_id + 1
    finally:
        stopped.cancel()
        if offset is not None:
            # Confirm the last poll now rather than have Telegram send it again to the next process
            # (which would recognise it, but why make it look); what this call returns stays unconfirmed.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await bot(GetUpdates(offset=offset, timeout=0, limit=1, allowed_updates=allowed))
