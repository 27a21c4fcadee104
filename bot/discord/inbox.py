"""The durable inbox on Discord: link messages and slash commands are stored as their gateway events arrive.

discord.py turns each gateway event into objects in a parser (`ConnectionState.parsers`); this wraps the
MESSAGE_CREATE and INTERACTION_CREATE parsers so that an event worth answering is stored first — all events
of one loop tick in one transaction — and parsed (and so dispatched to the cogs) once it is on disk. Handlers
find their entry with `take(id)` and serve it through `Deliveries.serving`, which completes it with its usage
rows. At start-up `replay` rebuilds the messages and interactions the previous process left unanswered.

A slash command can be answered again only through its token's follow-ups: when it was deferred (Discord
shows "thinking…") and for 15 minutes; otherwise the entry is closed with an `expired` usage row.

With replicas (a shared inbox, REDIS__URL) the stored events are not parsed here: each goes into its shard's
partition of the shared stream (`discord:<shard>`), which the processes running that shard read — they hold
its guilds in their cache (channels, permissions, upload limits) — and every process claims from every shard's
partition what a dead one left unanswered. Replies go through REST, so any process can answer any channel or
interaction token; one without the guild in its cache answers with what the event itself carries.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from bot.chat.i18n import pick_language, t
from bot.chat.inbox import Deliveries
from services.store.inbox import DEFERRED, SENDING, InboxEntry

if TYPE_CHECKING:
    from bot.discord.client import TikTokBot
    from bot.discord.resume import SessionKeeper

log = logging.getLogger("tiktok_bot.discord")

PLATFORM = "discord"
APPLICATION_COMMAND = 2  # interaction type: a slash command
# Discord keeps an interaction token for 15 minutes; a minute of margin for the follow-ups themselves.
TOKEN_LIFETIME = 15 * 60 - 60
Parser = Callable[[Any], Any]


def message_entry(data: dict[str, Any], received_at: float | None = None) -> InboxEntry:
    """The inbox entry of a MESSAGE_CREATE payload."""
    at = time.time() if received_at is None else received_at
    return InboxEntry(PLATFORM, f"message:{data['id']}", "message", json.dumps(data), at)


def interaction_entry(data: dict[str, Any], received_at: float | None = None) -> InboxEntry:
    """The inbox entry of an INTERACTION_CREATE payload (its token included: follow-ups need it)."""
    at = time.time() if received_at is None else received_at
    return InboxEntry(PLATFORM, f"interaction:{data['id']}", "interaction", json.dumps(data), at)


def entry_of(event: str, data: dict[str, Any], received_at: float | None = None) -> InboxEntry | None:
    """The inbox entry of a gateway event worth answering (a link message, a slash command), else None."""
    if event == "MESSAGE_CREATE" and worth_storing(data):
        return message_entry(data, received_at)
    if event == "INTERACTION_CREATE" and data.get("type") == APPLICATION_COMMAND:
        return interaction_entry(data, received_at)
    return None


def shard_of(data: dict[str, Any], shard_count: int) -> int:
    """The shard Discord sends an event on: `(guild_id >> 22) % shard_count`; DMs go to shard 0."""
    guild_id = data.get("guild_id")
    return (int(guild_id) >> 22) % shard_count if guild_id else 0


def partition(shard: int) -> str:
    """The shared stream's partition of a shard."""
    return f"{PLATFORM}:{shard}"


def worth_storing(data: dict[str, Any]) -> bool:
    """A message the links cog may answer: from a person, with text that may hold a TikTok link."""
    author = data.get("author") or {}
    if author.get("bot") or data.get("type", 0) not in (0, 19):
        return False
    content = str(data.get("content") or "")
    return "tiktok" in content.lower()


def can_answer(entry: InboxEntry, now: float | None = None) -> bool:
    """Whether Discord takes an answer still: to a message always, to a deferred command for 15 minutes."""
    if entry.kind != "interaction":
        return True
    return entry.state in (DEFERRED, SENDING) and entry.age(now) < TOKEN_LIFETIME


class GatewayInbox:
    """Stores answerable gateway events before discord.py parses them; hands each handler its entry."""

    def __init__(self, bot: TikTokBot, deliveries: Deliveries) -> None:
        self.bot = bot
        self.deliveries = deliveries
        self._taken: dict[int, InboxEntry] = {}
        self._batch: list[tuple[InboxEntry, Parser, dict[str, Any]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        # Told which gateway positions each stored batch covers, so a restart can RESUME from there.
        self.keeper: SessionKeeper | None = None
        parsers = bot._connection.parsers  # discord.py's event parsers: the one place every event passes
        self._parse_message: Parser = parsers["MESSAGE_CREATE"]
        self._parse_interaction: Parser = parsers["INTERACTION_CREATE"]
        parsers["MESSAGE_CREATE"] = self._on_message_create
        parsers["INTERACTION_CREATE"] = self._on_interaction_create

    @property
    def idle(self) -> bool:
        """Whether every event worth answering that arrived so far is stored (no batch waiting)."""
        return not self._batch and not self._tasks

    def take(self, event_id: int) -> InboxEntry | None:
        """The stored entry of this message or interaction, handed to the one handler that serves it."""
        return self._taken.pop(event_id, None)

    def _on_message_create(self, data: dict[str, Any]) -> None:
        if self.bot.stopping or not worth_storing(data):
            self._parse_message(data)
            return
        self._queue(message_entry(data), self._parse_message, data)

    def _on_interaction_create(self, data: dict[str, Any]) -> None:
        if self.bot.stopping or data.get("type") != APPLICATION_COMMAND:
            self._parse_interaction(data)
            return
        self._queue(interaction_entry(data), self._parse_interaction, data)

    def _queue(self, entry: InboxEntry, parse: Parser, data: dict[str, Any]) -> None:
        if self.deliveries.shared:
            entry = replace(entry, partition=partition(shard_of(data, self.bot.shard_count or 1)))
        self._batch.append((entry, parse, data))
        if len(self._batch) == 1:
            task = asyncio.get_running_loop().create_task(self._store_batch())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _store_batch(self) -> None:
        """Store every event queued this tick in one transaction, then let discord.py parse them in order."""
        await asyncio.sleep(0)  # the rest of this tick's events join the batch
        batch, self._batch = self._batch, []
        mark = self.keeper.mark() if self.keeper is not None else None
        try:
            fresh = await self.deliveries.accept([entry for entry, _, _ in batch])
        except Exception:
            # Unstored, the events are still answered now; only a crash before the reply would lose them.
            log.exception("could not store gateway events", extra={"platform": PLATFORM})
            for _, parse, data in batch:
                parse(data)
            return
        if self.keeper is not None and mark is not None:
            self.keeper.stored(mark)
        if self.deliveries.shared:
            return  # in the shared stream: the workers of the shard's processes answer them
        for (entry, parse, data), new in zip(batch, fresh, strict=True):
            if not new:
                continue  # already taken (a gateway replay after a resume)
            self._taken[int(data["id"])] = entry
            try:
                parse(data)
            except Exception:
                self._taken.pop(int(data["id"]), None)
                log.exception("could not parse a gateway event", extra={"platform": PLATFORM})

    async def replay(self, entries: Sequence[InboxEntry] | None = None) -> None:
        """Answer what a previous process left unanswered (`entries`, else all open ones), oldest first."""
        await self.deliveries.replay(
            PLATFORM,
            self._handle_old,
            entries=entries,
            can_answer=can_answer,
            expired_action=expired_action,
        )

    async def _handle_old(self, entry: InboxEntry, late: bool) -> None:
        """Answer a stored event: one a dead process left, or (replicas) one taken from the shared stream."""
        data = json.loads(entry.payload)
        if entry.kind == "interaction":
            interaction: discord.Interaction[Any] = discord.Interaction(data=data, state=self.bot._connection)
            if entry.state in (DEFERRED, SENDING):
                # It was deferred: the answer goes out as follow-ups with its token.
                interaction.response._response_type = discord.InteractionResponseType.deferred_channel_message
            if late:
                self.deliveries.note_sending()
                await interaction.followup.send(t(pick_language(str(interaction.locale)), "inbox.late"))
            try:
                await self.bot.tree._call(interaction)
            except app_commands.AppCommandError as exc:
                await self.bot.tree.on_error(interaction, exc)  # as discord.py's own dispatch does
            return
        # The channel as discord.py's parser finds it: cached for this process's guilds, else partial.
        channel, _ = self.bot._connection._get_guild_channel(data)
        message = discord.Message(state=self.bot._connection, channel=channel, data=data)  # type: ignore[arg-type]
        if late:
            self.deliveries.note_sending()
            lang = pick_language(self.bot.user_locales.get(message.author.id))
            await message.channel.send(t(lang, "inbox.late"), reference=message, mention_author=False)
        cog = self.bot.get_cog("Links")
        if cog is not None:
            await cog.on_message(message)  # type: ignore[attr-defined]


def expired_action(entry: InboxEntry) -> str:
    """The usage row's action for an entry closed unanswered: `link`, or the command's name."""
    return "link" if entry.kind == "message" else _command_name(entry)


def _command_name(entry: InboxEntry) -> str:
    try:
        return str(json.loads(entry.payload)["data"]["name"])
    except (ValueError, KeyError, TypeError):
        return "command"
