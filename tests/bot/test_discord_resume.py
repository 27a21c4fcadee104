"""Resuming a dead gateway session (against the emulator) and the keeper that saves where to resume from."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
import yarl

from bot.discord.resume import SessionGone, SessionKeeper, resume_session
from sandbox.discord import DiscordEmulator
from services.store import Store
from services.store.sessions import GatewaySession
from services.store.sqlite import SqliteDatabase


@pytest.fixture
async def emu() -> AsyncIterator[DiscordEmulator]:
    emulator = DiscordEmulator(heartbeat_interval_ms=60_000)
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


async def dead_session(emu: DiscordEmulator) -> GatewaySession:
    """A session identified on a raw socket that then died (close 4000: resumable)."""
    async with aiohttp.ClientSession() as http, http.ws_connect(emu.gateway_url) as ws:
        await ws.receive_json()  # HELLO
        intents = 1 | 1 << 9 | 1 << 15  # guilds, guild messages, message content
        await ws.send_json({"op": 2, "d": {"token": emu.token, "intents": intents, "properties": {}}})
        ready, guild = await ws.receive_json(), await ws.receive_json()
        await ws.close(code=4000)
    await emu.transcript.wait_until(lambda: not emu.gateway.connections)
    return GatewaySession(0, ready["d"]["session_id"], guild["s"], ready["d"]["resume_gateway_url"])


async def test_missed_events_are_stored_before_the_session_is_ended(emu: DiscordEmulator) -> None:
    demo = emu.demo
    assert demo is not None
    session = await dead_session(emu)
    link = await emu.send_message(demo.channel_id, demo.member_id, "https://www.tiktok.com/@a/video/1")
    await emu.send_message(demo.channel_id, demo.member_id, "hello")
    emu.add_text_channel(demo.guild_id, "later")  # not a message: replayed, not handed over
    stored: list[tuple[str, dict[str, Any]]] = []

    async def store(events: list[tuple[str, dict[str, Any]]]) -> int:
        assert session.session_id in emu.gateway.sessions  # still resumable while storing
        stored.extend(events)
        return len(events)

    assert await resume_session(session, emu.token, store) == 3
    assert [(name, data["id"]) for name, data in stored][:1] == [("MESSAGE_CREATE", str(link.id))]
    assert [name for name, _ in stored] == ["MESSAGE_CREATE", "MESSAGE_CREATE"]
    await emu.transcript.wait_until(lambda: session.session_id not in emu.gateway.sessions)
    assert emu.gateway.closes[-1] == 1000
    # Ended: a second resume is refused with op 9.
    with pytest.raises(SessionGone, match="op 9"):
        await resume_session(session, emu.token, store)


async def test_an_unknown_session_or_a_sequence_never_sent_is_refused(emu: DiscordEmulator) -> None:
    session = await dead_session(emu)

    async def store(events: list[tuple[str, dict[str, Any]]]) -> int:
        raise AssertionError("nothing to store")

    ahead = GatewaySession(0, session.session_id, session.seq + 10, session.resume_url)
    with pytest.raises(SessionGone, match="4007"):
        await resume_session(ahead, emu.token, store)
    unknown = GatewaySession(0, "nope", 1, session.resume_url)
    with pytest.raises(SessionGone, match="op 9"):
        await resume_session(unknown, emu.token, store)


class _Socket:
    def __init__(self, session_id: str, sequence: int) -> None:
        self.session_id: str | None = session_id
        self.sequence: int | None = sequence
        self.gateway = yarl.URL("wss://resume.example/")


class _Inbox:
    idle = True


class _Bot:
    """What the keeper reads of the bot: its socket (one shard) and whether the inbox has a batch waiting."""

    def __init__(self) -> None:
        self.ws = _Socket("s1", 5)
        self.inbox = _Inbox()


async def test_the_keeper_saves_only_positions_whose_events_are_stored(tmp_path: Path) -> None:
    store = await Store.open(await SqliteDatabase.open(tmp_path / "bot.sqlite3"))
    try:
        bot = _Bot()
        keeper = SessionKeeper(cast(Any, bot), store.gateway_sessions)

        async def saved() -> list[tuple[str, int]]:
            return [(s.session_id, s.seq) for s in await store.gateway_sessions.load()]

        await keeper.save()  # nothing waits to be stored: where the socket is now
        assert await saved() == [("s1", 5)]
        mark = keeper.mark()
        bot.ws.sequence = 9
        bot.inbox.idle = False  # a batch closed at 9 is still being written
        keeper.stored(mark)
        await keeper.save()
        assert await saved() == [("s1", 5)]
        bot.ws.sequence = 12
        keeper.stored(keeper.mark())
        await keeper.save()  # the batch closed at 12 is on disk; 9 never was the safe point
        assert await saved() == [("s1", 12)]
        bot.ws = _Socket("s2", 1)  # discord.py identified again: the old session is over
        bot.inbox.idle = True
        await keeper.save()
        assert await saved() == [("s2", 1)]
        await keeper.forget()  # a clean close (1000)
        assert await saved() == []
    finally:
        await store.aclose()
