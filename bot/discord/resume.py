"""Events a killed process never read: keep each shard's gateway session resumable, and RESUME it at start-up.

Discord keeps a session whose socket died for a few minutes and replays its dispatches after a sequence to
whoever sends RESUME with its id (Discord developer docs, Gateway → Resuming). So the bot saves, per shard,
the session id, its `resume_gateway_url` and the last sequence whose answerable events are all in the inbox
(`SessionKeeper`: at most once a second, never one write per event). The next process identifies a fresh
session as usual — discord.py needs READY for its caches — and, once that one is live, opens a short raw
connection to the old session's resume URL: RESUME, store every replayed MESSAGE_CREATE / INTERACTION_CREATE
worth answering in the inbox, and close with 1000 when RESUMED arrives, which ends the old session
(`recover_sessions`). Events both sessions saw are stored once: the inbox key decides. A session Discord no
longer has (op 9 INVALID_SESSION, or close 4007/4009) is logged and forgotten.

A clean stop (SIGTERM) hands its session over the same way: the position is saved as the bot stops taking
new events, and the socket is closed with 4000 instead of discord.py's 1000, so what arrives during the drain
and while the bot is down reaches the next process (`SessionKeeper.freeze`, `close_resumable`; one-connection
bots only — a sharded bot closes its shards with 1000 and forgets them).

One process per shard at a time: a second one started for the same shards while the first still runs would
resume (and so take over, then end) the first one's live session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import aiohttp
import discord
import yarl
from discord.ext import commands

from bot.discord.inbox import entry_of, partition, shard_of
from services.store.inbox import InboxEntry
from services.store.sessions import GatewaySession, GatewaySessions

if TYPE_CHECKING:
    from bot.discord.client import TikTokBot

log = logging.getLogger("tiktok_bot.discord")

# How often the keeper saves the positions (when they moved): a crash replays at most this much more.
SAVE_INTERVAL = 1.0
FIRST_SAVE_POLL = 0.05  # until the first session is saved: events sent to it before are not resumable
# A whole resume: connect, replay a few minutes of dispatches, RESUMED.
RESUME_TIMEOUT = 30.0
OP_DISPATCH, OP_HEARTBEAT, OP_RESUME, OP_RECONNECT, OP_INVALID_SESSION, OP_HELLO = 0, 1, 6, 7, 9, 10
WANTED = frozenset({"MESSAGE_CREATE", "INTERACTION_CREATE"})
StoreMissed = Callable[[list[tuple[str, dict[str, Any]]]], Awaitable[int]]


class SessionGone(Exception):
    """Discord no longer has the session (it timed out, or the sequence cannot be replayed)."""


def gateway_positions(bot: commands.Bot) -> tuple[GatewaySession, ...]:
    """Each connected shard's session id, last sequence received and resume URL (shard 0 when unsharded)."""
    if isinstance(bot, commands.AutoShardedBot):
        sockets = {shard: bot._get_websocket(shard_id=shard) for shard in bot.shards}
    else:
        sockets = {0: bot.ws}
    return tuple(
        GatewaySession(shard, ws.session_id, ws.sequence, str(ws.gateway))
        for shard, ws in sorted(sockets.items())
        if ws is not None and ws.session_id and ws.sequence is not None
    )


class SessionKeeper:
    """Saves the shards' sessions at a sequence whose answerable events are all stored in the inbox."""

    def __init__(self, bot: TikTokBot, sessions: GatewaySessions, *, interval: float = SAVE_INTERVAL) -> None:
        self.bot = bot
        self.sessions = sessions
        self.interval = interval
        self._stored: tuple[GatewaySession, ...] = ()
        self._saved: tuple[GatewaySession, ...] = ()
        self._frozen = False

    def mark(self) -> tuple[GatewaySession, ...]:
        """The positions now: taken when a batch of events closes, before it is stored."""
        return gateway_positions(self.bot)

    def stored(self, mark: tuple[GatewaySession, ...]) -> None:
        """The batch closed at `mark` is in the inbox: every answerable event up to it is."""
        self._stored = mark

    def safe_positions(self) -> tuple[GatewaySession, ...]:
        """Where to resume after a crash: now if no batch waits to be stored, else the last stored batch."""
        return self.mark() if self.bot.inbox.idle else self._stored

    async def save(self) -> None:
        """Write the safe positions if they moved; sessions this process had before are dropped."""
        positions = self.safe_positions()
        if self._frozen or not positions or positions == self._saved:
            return
        ended = {s.session_id for s in self._saved} - {s.session_id for s in positions}
        await self.sessions.save(positions, ended=ended)
        self._saved = positions

    async def run(self) -> None:
        """Save every `interval` seconds until cancelled (the first session as soon as READY is in)."""
        while True:
            try:
                await self.save()
            except Exception:
                log.exception("could not save the gateway session", extra={"platform": "discord"})
            await asyncio.sleep(self.interval if self._saved else FIRST_SAVE_POLL)

    async def freeze(self) -> bool:
        """Save where the next process resumes, as the bot stops storing events; True if it can hand over."""
        if isinstance(self.bot, commands.AutoShardedBot):
            return False
        try:
            await self.save()
        except Exception:
            log.exception("could not save the gateway session", extra={"platform": "discord"})
            return False
        self._frozen = True
        return bool(self._saved)

    async def forget(self) -> None:
        """The sessions ended cleanly (close code 1000): nothing to resume."""
        ended, self._saved = {s.session_id for s in self._saved}, ()
        with contextlib.suppress(Exception):
            await self.sessions.forget(ended)


@dataclass(slots=True)
class _Heart:
    """Heartbeats of the resume connection, with the last sequence seen."""

    ws: aiohttp.ClientWebSocketResponse
    seq: int | None

    async def beat(self) -> None:
        await self.ws.send_json({"op": OP_HEARTBEAT, "d": self.seq})

    async def run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.beat()


async def resume_session(
    session: GatewaySession, token: str, store: StoreMissed, *, budget: float = RESUME_TIMEOUT
) -> int:
    """RESUME `session` on its own connection, `store` what it missed, end it (1000); dispatches replayed.

    Raises SessionGone when Discord cannot resume it, or aiohttp / OSError / TimeoutError when the connection
    fails.
    """
    url = yarl.URL(session.resume_url).with_query(v=10, encoding="json")
    missed: list[tuple[str, dict[str, Any]]] = []
    replayed = 0
    async with (
        asyncio.timeout(budget),
        aiohttp.ClientSession() as http,
        http.ws_connect(url, max_msg_size=0) as ws,
    ):
        hello = await ws.receive_json()
        if hello.get("op") != OP_HELLO:
            raise SessionGone(f"op {hello.get('op')} before HELLO")
        heart = _Heart(ws, session.seq)
        beating = asyncio.create_task(heart.run(float(hello["d"]["heartbeat_interval"]) / 1000))
        try:
            resume = {"token": token, "session_id": session.session_id, "seq": session.seq}
            await ws.send_json({"op": OP_RESUME, "d": resume})
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    break  # we asked for no compression: only text frames are payloads
                frame = json.loads(msg.data)
                op = frame.get("op")
                if op == OP_HEARTBEAT:
                    await heart.beat()
                elif op in (OP_INVALID_SESSION, OP_RECONNECT):
                    raise SessionGone(f"op {op}")
                elif op == OP_DISPATCH:
                    heart.seq = frame.get("s") or heart.seq
                    if frame.get("t") == "RESUMED":
                        await store(missed)  # stored before the session ends: a crash here resumes again
                        await ws.close(code=1000)
                        return replayed
                    replayed += 1
                    if frame.get("t") in WANTED and isinstance(frame.get("d"), dict):
                        missed.append((str(frame["t"]), frame["d"]))
            # Closed by Discord: 4007 Invalid seq, 4009 Session timed out, or the socket dropped.
            raise SessionGone(f"closed with {ws.close_code}")
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating


async def close_resumable(bot: commands.Bot, gateway: asyncio.Task[None]) -> None:
    """Stop the gateway task and close the socket with 4000, not 1000: Discord keeps the session a while."""
    gateway.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await gateway
    if bot.ws is not None and bot.ws.open:
        await bot.ws.close(code=4000)


def received_at(data: dict[str, Any]) -> float:
    """When Discord created the message or interaction (its snowflake id), as epoch seconds."""
    return discord.utils.snowflake_time(int(data["id"])).timestamp()


async def recover_sessions(bot: TikTokBot, old: Sequence[GatewaySession], token: str) -> list[InboxEntry]:
    """Resume each dead session and store its missed events; the entries that were new to the inbox."""
    recovered: list[InboxEntry] = []

    async def store(events: list[tuple[str, dict[str, Any]]]) -> int:
        entries: list[InboxEntry] = []
        for name, data in events:
            entry = entry_of(name, data, received_at(data))
            if entry is not None and bot.app.deliveries.shared:
                # On the shared stream an event goes to its shard's partition, as the live gateway's do.
                entry = replace(entry, partition=partition(shard_of(data, bot.shard_count or 1)))
            if entry is not None:
                entries.append(entry)
        fresh = await bot.app.deliveries.accept(entries)
        recovered.extend(e for e, new in zip(entries, fresh, strict=True) if new)
        return sum(fresh)

    for session in old:
        before = len(recovered)
        try:
            replayed = await resume_session(session, token, store)
        except SessionGone as exc:
            log.warning(
                "the previous gateway session of shard %d (saved at sequence %d, %.0f s ago) could not be "
                "resumed (%s: Discord keeps a dead session only a few minutes): messages sent to the bot "
                "while it was down are lost",
                session.shard,
                session.seq,
                max(0.0, time.time() - session.saved_at),
                exc,
                extra={"platform": "discord"},
            )
        except Exception as exc:  # the connection failed, timed out, or the inbox could not store
            log.warning(
                "could not resume the previous gateway session of shard %d: %s",
                session.shard,
                str(exc) or type(exc).__name__,
                extra={"platform": "discord"},
            )
        else:
            log.warning(
                "resumed the previous gateway session of shard %d: %d events replayed, %d new messages and "
                "commands stored for answering",
                session.shard,
                replayed,
                len(recovered) - before,
                extra={"platform": "discord"},
            )
        try:
            await bot.app.store.gateway_sessions.forget({session.session_id})
        except Exception:
            log.exception("could not forget a resumed gateway session", extra={"platform": "discord"})
    return recovered


def shards_of(shard_ids: Collection[int], shard_count: int | None) -> set[int]:
    """The shards this process runs: DISCORD__SHARD_IDS (all of DISCORD__SHARD_COUNT if empty), else 0."""
    if shard_count is None:
        return {0}
    return set(shard_ids) if shard_ids else set(range(shard_count))
