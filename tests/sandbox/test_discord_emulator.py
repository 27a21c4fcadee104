"""The Discord emulator driven by real discord.py 2: gateway, messages, uploads, slash commands, buttons."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import discord
import pytest
import yarl
from discord import app_commands
from discord.ext import commands

from sandbox.discord import (
    BOT_PERMISSIONS,
    TIER_UPLOAD_LIMITS,
    DiscordEmulator,
    Intent,
    MessageFlag,
    Perm,
)
from sandbox.discord.world import MIB
from sandbox.runner import Sandbox

MEDIA = bytes(range(256)) * 64  # 16 KiB that survive any text mangling


@pytest.fixture
async def emu() -> AsyncIterator[DiscordEmulator]:
    emulator = DiscordEmulator(heartbeat_interval_ms=60_000)
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


@contextlib.contextmanager
def pointed_at(emu: DiscordEmulator) -> Iterator[None]:
    """Point discord.py's class-level REST base and gateway at the emulator, restoring them afterwards."""
    base, gateway = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = emu.api_url
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(emu.gateway_url)
    try:
        yield
    finally:
        discord.http.Route.BASE = base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = gateway


def make_bot(*, message_content: bool = True, members: bool = True) -> commands.Bot:
    intents = discord.Intents.default()
    intents.message_content = message_content
    intents.members = members
    return commands.Bot(command_prefix="!", intents=intents, guild_ready_timeout=0.05, help_command=None)


@contextlib.asynccontextmanager
async def running(emu: DiscordEmulator, bot: commands.Bot) -> AsyncIterator[commands.Bot]:
    """Log the bot in, connect it, wait for READY, and close it cleanly afterwards."""
    with pointed_at(emu):
        await bot.login(emu.token)
        task = asyncio.create_task(bot.connect(reconnect=True))
        try:
            await asyncio.wait_for(bot.wait_until_ready(), 5)
            yield bot
        finally:
            await bot.close()
            await asyncio.wait_for(task, 5)


async def until(condition: Callable[[], bool], limit: float = 5.0) -> None:
    """Poll a condition on the bot's side: discord.py's caches and handlers signal nothing we could await."""
    async with asyncio.timeout(limit):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def fetch(url: str) -> bytes:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200, url
        return await resp.read()


# --- gateway -----------------------------------------------------------------------------------------------


async def test_bot_connects_and_receives_ready_and_guild_create(emu: DiscordEmulator) -> None:
    demo = emu.demo
    assert demo is not None
    async with running(emu, make_bot()) as bot:
        assert bot.user is not None and bot.user.id == emu.application_id
        assert bot.application_id == emu.application_id
        assert bot.application_flags.gateway_message_content_limited  # an unverified bot, switch on
        guild = bot.get_guild(demo.guild_id)
        assert guild is not None and guild.name == "Sandbox"
        assert guild.chunked and guild.member_count == 4
        assert guild.filesize_limit == 10 * MIB == TIER_UPLOAD_LIMITS[0]
        assert guild.default_role.id == guild.id
        assert [c.id for c in guild.text_channels] == [demo.channel_id]
        thread = guild.get_thread(demo.thread_id)
        assert thread is not None and thread.parent_id == demo.channel_id
        admin = guild.get_member(demo.admin_id)
        assert admin is not None and admin.guild_permissions.manage_guild
        member = guild.get_member(demo.member_id)
        assert member is not None and not member.guild_permissions.manage_guild
        me = guild.me
        assert me.guild_permissions.attach_files and not me.guild_permissions.manage_messages
        session = await emu.wait_for_session()
        assert session.has(Intent.MESSAGE_CONTENT) and session.has(Intent.GUILD_MEMBERS)
        assert "token" not in session.identify and session.identify["properties"]["browser"] == "discord.py"
        assert session.heartbeats >= 1  # discord.py beats once right after HELLO; the ACK came back
        routes = [c.route for c in emu.transcript]
        assert routes[:2] == ["GET /users/@me", "GET /oauth2/applications/@me"]
    # bot.close() ends the socket (discord.py's poll loop sends 4000, so the session stays resumable)
    await emu.transcript.wait_until(lambda: not emu.gateway.connections)
    assert not any(s.connected for s in emu.sessions)


async def test_discord_py_asks_for_zlib_stream_and_gets_it(emu: DiscordEmulator) -> None:
    async with running(emu, make_bot()):
        pass
    hits = [r for r in emu.requests if r.path == "/gateway"]
    assert hits and "compress=zlib-stream" in hits[0].query and "encoding=json" in hits[0].query


class RawGateway:
    """A bare websocket client speaking the gateway protocol, plain or zlib-stream."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, compressed: bool) -> None:
        self.ws = ws
        self.inflate = zlib.decompressobj() if compressed else None

    async def recv(self) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=5)
        if self.inflate is not None:
            assert msg.type is aiohttp.WSMsgType.BINARY and msg.data.endswith(b"\x00\x00\xff\xff")
            return json.loads(self.inflate.decompress(msg.data))
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        return json.loads(msg.data)

    async def send(self, op: int, d: Any) -> None:
        await self.ws.send_str(json.dumps({"op": op, "d": d}))


@pytest.mark.parametrize("compressed", [True, False])
async def test_gateway_protocol_hello_identify_ready_heartbeat(
    emu: DiscordEmulator, compressed: bool
) -> None:
    query = "?v=10&encoding=json" + ("&compress=zlib-stream" if compressed else "")
    async with aiohttp.ClientSession() as http, http.ws_connect(emu.gateway_url + query) as ws:
        gw = RawGateway(ws, compressed)
        hello = await gw.recv()
        assert hello == {"op": 10, "d": {"heartbeat_interval": 60_000}}
        await gw.send(1, None)
        assert (await gw.recv())["op"] == 11
        await gw.send(2, {"token": emu.token, "intents": 513, "properties": {}})
        ready, guild = await gw.recv(), await gw.recv()
        assert (ready["t"], ready["s"], guild["t"], guild["s"]) == ("READY", 1, "GUILD_CREATE", 2)
        assert ready["d"]["resume_gateway_url"] == emu.gateway_url
        assert ready["d"]["guilds"] == [{"id": str(emu.demo.guild_id), "unavailable": True}]  # type: ignore[union-attr]
        assert len(guild["d"]["members"]) == 1  # no GUILD_MEMBERS intent: only the bot itself
        assert guild["d"]["member_count"] == 4
        await gw.send(2, {"token": emu.token, "intents": 513, "properties": {}})
        assert (await ws.receive(timeout=5)).type is aiohttp.WSMsgType.CLOSE
    assert ws.close_code == 4005


async def test_gateway_refuses_a_wrong_token_and_an_unknown_resume(emu: DiscordEmulator) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(emu.gateway_url) as ws:
            gw = RawGateway(ws, compressed=False)
            await gw.recv()
            await gw.send(2, {"token": "nope", "intents": 1, "properties": {}})
            assert (await ws.receive(timeout=5)).type is aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 4004
        async with http.ws_connect(emu.gateway_url) as ws:
            gw = RawGateway(ws, compressed=False)
            await gw.recv()
            await gw.send(6, {"token": emu.token, "session_id": "gone", "seq": 3})
            assert await gw.recv() == {"op": 9, "d": False}
        async with http.get(emu.gateway_url.replace("ws://", "http://") + "?compress=zstd-stream") as resp:
            assert resp.status == 400


async def test_injected_guild_thread_and_dm_messages_reach_on_message(emu: DiscordEmulator) -> None:
    demo = emu.demo
    assert demo is not None
    received: list[discord.Message] = []
    bot = make_bot()

    @bot.event
    async def on_message(message: discord.Message) -> None:
        received.append(message)

    async with running(emu, bot):
        await emu.send_message(demo.channel_id, demo.member_id, "in the channel")
        await emu.send_message(demo.thread_id, demo.admin_id, "in the thread")
        await emu.send_message(demo.dm_channel_id, demo.member_id, "in a DM")
        await until(lambda: len(received) == 3)
    channel_msg, thread_msg, dm_msg = received
    assert channel_msg.content == "in the channel" and isinstance(channel_msg.channel, discord.TextChannel)
    assert isinstance(channel_msg.author, discord.Member) and channel_msg.author.id == demo.member_id
    assert isinstance(thread_msg.channel, discord.Thread) and thread_msg.channel.id == demo.thread_id
    assert isinstance(dm_msg.channel, discord.DMChannel) and dm_msg.guild is None
    assert dm_msg.content == "in a DM" and dm_msg.author.id == demo.member_id


async def test_without_message_content_intent_content_is_blank_unless_mentioned_or_dm(
    emu: DiscordEmulator,
) -> None:
    demo = emu.demo
    assert demo is not None
    received: list[discord.Message] = []
    bot = make_bot(message_content=False)

    @bot.event
    async def on_message(message: discord.Message) -> None:
        received.append(message)

    async with running(emu, bot):
        link = "https://www.tiktok.com/@someone/video/7300000000000000001"
        await emu.send_message(demo.channel_id, demo.member_id, f"watch {link}")
        await emu.send_message(demo.channel_id, demo.member_id, link, mention_bot=True)
        await emu.send_message(demo.dm_channel_id, demo.member_id, link)
        await until(lambda: len(received) == 3)
        plain, mention, dm = received
        assert plain.content == "" and plain.embeds == [] and plain.author.id == demo.member_id
        assert mention.content == f"<@{emu.application_id}> {link}" and bot.user in mention.mentions
        assert dm.content == link
        # The REST API blanks too, by the portal switch rather than IDENTIFY: here the portal allows it.
        fetched = await bot.get_partial_messageable(demo.channel_id).fetch_message(plain.id)
        assert fetched.content == f"watch {link}"


async def test_privileged_intent_disabled_in_portal_closes_with_4014(emu: DiscordEmulator) -> None:
    emu.set_privileged_intents(message_content=False)
    bot = make_bot(message_content=True)
    with pointed_at(emu):
        await bot.login(emu.token)
        try:
            with pytest.raises(discord.PrivilegedIntentsRequired):
                await asyncio.wait_for(bot.connect(reconnect=True), 5)
        finally:
            await bot.close()
    assert 4014 in emu.gateway.closes
    # Asking without the intent works, and the application's flags no longer claim it.
    async with running(emu, make_bot(message_content=False)) as bot2:
        assert not bot2.application_flags.gateway_message_content_limited
        assert bot2.application_flags.gateway_guild_members_limited


async def test_resume_after_a_dropped_connection_replays_missed_events(emu: DiscordEmulator) -> None:
    demo = emu.demo
    assert demo is not None
    received: list[str] = []
    resumed = asyncio.Event()
    bot = make_bot()

    @bot.event
    async def on_message(message: discord.Message) -> None:
        received.append(message.content)

    @bot.event
    async def on_resumed() -> None:
        resumed.set()

    async with running(emu, bot):
        session = await emu.wait_for_session()
        await emu.drop_gateway()
        await emu.send_message(demo.channel_id, demo.member_id, "sent while disconnected")
        await asyncio.wait_for(resumed.wait(), 5)
        await until(lambda: received == ["sent while disconnected"])
        assert [s.id for s in emu.sessions] == [session.id]
        await emu.reconnect_gateway()  # op 7: discord.py closes and resumes again
        await emu.send_message(demo.channel_id, demo.member_id, "after op 7")
        await until(lambda: received[-1:] == ["after op 7"])
    assert received == ["sent while disconnected", "after op 7"]


async def identified(http: aiohttp.ClientSession, emu: DiscordEmulator) -> tuple[str, int]:
    """A raw session (guild messages, message content), its socket then killed: (id, last seq)."""
    ws = await http.ws_connect(emu.gateway_url + "?v=10&encoding=json")
    gw = RawGateway(ws, compressed=False)
    await gw.recv()
    await gw.send(2, {"token": emu.token, "intents": 1 | 1 << 9 | 1 << 15, "properties": {}})
    ready, guild = await gw.recv(), await gw.recv()
    await ws.close(code=4000)  # not 1000/1001: the session stays resumable, as after a crash
    await emu.transcript.wait_until(lambda: not emu.gateway.connections)
    return ready["d"]["session_id"], guild["s"]


async def resume(http: aiohttp.ClientSession, emu: DiscordEmulator, session_id: str, seq: int) -> RawGateway:
    ws = await http.ws_connect(emu.gateway_url + "?v=10&encoding=json")
    gw = RawGateway(ws, compressed=False)
    assert (await gw.recv())["op"] == 10
    await gw.send(6, {"token": emu.token, "session_id": session_id, "seq": seq})
    return gw


async def test_a_dead_sessions_dispatches_are_kept_and_replayed_on_resume(emu: DiscordEmulator) -> None:
    demo = emu.demo
    assert demo is not None
    async with aiohttp.ClientSession() as http:
        session_id, seq = await identified(http, emu)
        for text in ("one", "two", "three"):
            await emu.send_message(demo.channel_id, demo.member_id, text)
        gw = await resume(http, emu, session_id, seq)
        frames = [await gw.recv() for _ in range(4)]
        assert [(f["t"], f["s"]) for f in frames] == [
            ("MESSAGE_CREATE", seq + 1),
            ("MESSAGE_CREATE", seq + 2),
            ("MESSAGE_CREATE", seq + 3),
            ("RESUMED", seq + 4),
        ]
        assert [f["d"]["content"] for f in frames[:3]] == ["one", "two", "three"]
        await emu.send_message(demo.channel_id, demo.member_id, "live")
        assert (await gw.recv())["d"]["content"] == "live"
        # Resuming from a later sequence replays only what came after it.
        await gw.ws.close(code=4000)
        await emu.transcript.wait_until(lambda: not emu.gateway.connections)
        gw = await resume(http, emu, session_id, seq + 2)
        assert [(await gw.recv())["d"].get("content") for _ in range(3)] == ["three", "live", None]
        await gw.ws.close(code=1000)  # 1000 ends the session: nothing to resume any more
        await emu.transcript.wait_until(lambda: session_id not in emu.gateway.sessions)
        gw = await resume(http, emu, session_id, seq)
        assert await gw.recv() == {"op": 9, "d": False}
        await gw.ws.close()


async def test_a_dead_session_expires_after_the_resume_timeout(emu: DiscordEmulator) -> None:
    demo = emu.demo
    assert demo is not None
    now = [0.0]
    emu.gateway.clock = lambda: now[0]
    async with aiohttp.ClientSession() as http:
        session_id, seq = await identified(http, emu)
        now[0] = emu.gateway.resume_timeout - 1
        await emu.send_message(demo.channel_id, demo.member_id, "kept")
        assert emu.gateway.sessions[session_id].seq == seq + 1  # still buffering
        now[0] = emu.gateway.resume_timeout + 1
        await emu.send_message(demo.channel_id, demo.member_id, "nobody gets this")
        assert session_id not in emu.gateway.sessions
        gw = await resume(http, emu, session_id, seq)
        assert await gw.recv() == {"op": 9, "d": False}
        await gw.ws.close()


async def test_resume_with_a_sequence_never_sent_or_no_longer_kept_is_refused(
    emu: DiscordEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    demo = emu.demo
    assert demo is not None
    async with aiohttp.ClientSession() as http:
        session_id, seq = await identified(http, emu)
        gw = await resume(http, emu, session_id, seq + 5)
        assert (await gw.ws.receive(timeout=5)).type is aiohttp.WSMsgType.CLOSE
        assert gw.ws.close_code == 4007  # Invalid seq
        session = emu.gateway.sessions[session_id]
        session.backlog = type(session.backlog)(session.backlog, maxlen=2)  # a small buffer
        for text in ("a", "b", "c"):
            await emu.send_message(demo.channel_id, demo.member_id, text)
        gw = await resume(http, emu, session_id, seq)  # "a" was pushed out: it cannot be replayed
        assert await gw.recv() == {"op": 9, "d": False}
        assert session_id not in emu.gateway.sessions
        await gw.ws.close()


# --- messages ----------------------------------------------------------------------------------------------


async def test_reply_with_embed_file_typing_and_suppressing_the_original_embed(emu: DiscordEmulator) -> None:
    demo = emu.demo
    assert demo is not None
    emu.set_bot_permissions(demo.guild_id, BOT_PERMISSIONS | Perm.MANAGE_MESSAGES)
    done = asyncio.Event()
    bot = make_bot()

    @bot.event
    async def on_message(message: discord.Message) -> None:
        if message.author.bot:
            return
        async with message.channel.typing():
            embed = discord.Embed(
                title="A post", description="by @someone", url="https://www.tiktok.com/@a/video/1"
            )
            embed.add_field(name="Views", value="1.2M")
            await message.reply("Here it is", embed=embed, file=discord.File(io.BytesIO(MEDIA), "video.mp4"))
        await message.edit(suppress=True)
        done.set()

    async with running(emu, bot):
        link = "https://www.tiktok.com/@someone/video/7300000000000000001"
        original = await emu.send_message(demo.channel_id, demo.member_id, f"look {link}")
        assert original.embeds and original.embeds[0]["url"] == link  # Discord's unfurl, to be suppressed
        await asyncio.wait_for(done.wait(), 5)

    typing = emu.calls("POST /channels/{channel_id}/typing", channel_id=demo.channel_id)
    created = emu.calls("POST /channels/{channel_id}/messages", channel_id=demo.channel_id, ok=True)
    assert typing and typing[0].status == 204 and typing[0].seq < created[0].seq
    (call,) = created
    assert call.payload["content"] == "Here it is"
    assert call.payload["message_reference"]["message_id"] == original.id
    assert call.payload["attachments"] == [{"id": 0, "filename": "video.mp4"}]
    (upload,) = call.files
    assert (upload.field, upload.filename, upload.size, upload.sha256) == (
        "files[0]",
        "video.mp4",
        len(MEDIA),
        sha(MEDIA),
    )
    assert Path(upload.path).read_bytes() == MEDIA  # noqa: ASYNC240 -- a 16 KiB test file
    reply = emu.message(int(call.response["id"]))
    assert (
        reply.type == 19 and reply.reference is not None and reply.reference["message_id"] == str(original.id)
    )
    assert reply.embeds[0]["title"] == "A post" and reply.embeds[0]["fields"][0]["value"] == "1.2M"
    attachment = call.response["attachments"][0]
    assert attachment["filename"] == "video.mp4" and attachment["size"] == len(MEDIA)
    assert attachment["content_type"] == "video/mp4"
    assert await fetch(attachment["url"]) == MEDIA
    assert await fetch(attachment["proxy_url"]) == MEDIA
    edit = emu.calls("PATCH /channels/{channel_id}/messages/{message_id}")[0]
    assert edit.ok and edit.message_id == original.id and edit.flags == MessageFlag.SUPPRESS_EMBEDS
    assert original.suppressed_embeds and original.content == f"look {link}"
    assert edit.response["embeds"] == []


async def test_suppressing_someone_elses_embed_needs_manage_messages(emu: DiscordEmulator) -> None:
    demo = emu.demo
    assert demo is not None
    errors: list[discord.HTTPException] = []
    done = asyncio.Event()
    bot = make_bot()

    @bot.event
    async def on_message(message: discord.Message) -> None:
        if message.author.bot:
            return
        try:
            await message.edit(suppress=True)
        except discord.HTTPException as exc:
            errors.append(exc)
        try:
            await message.edit(content="rewritten")
        except discord.HTTPException as exc:
            errors.append(exc)
        done.set()

    async with running(emu, bot):
        await emu.send_message(demo.channel_id, demo.member_id, "https://www.tiktok.com/t/ZAbCdEf/")
        await asyncio.wait_for(done.wait(), 5)
    forbidden, not_author = errors
    assert isinstance(forbidden, discord.Forbidden) and forbidden.code == 50013
    assert isinstance(not_author, discord.Forbidden) and not_author.code == 50005


async def test_bot_edits_and_deletes_its_own_message(emu: DiscordEmulator) -> None:
    demo = emu.demo
    assert demo is not None
    async with running(emu, make_bot()) as bot:
        channel = bot.get_channel(demo.channel_id)
        assert isinstance(channel, discord.TextChannel)
        sent = await channel.send("first", embed=discord.Embed(description="card"))
        edited = await sent.edit(content="second", suppress=True)
        assert edited.content == "second" and edited.flags.suppress_embeds and edited.edited_at is not None
        stored = emu.message(sent.id)
        assert stored.content == "second" and stored.suppressed_embeds and stored.embeds
        await edited.edit(suppress=False)
        assert not emu.message(sent.id).suppressed_embeds
        await sent.delete()
        assert emu.message(sent.id).deleted and emu.messages_in(demo.channel_id) == []
        with pytest.raises(discord.NotFound) as info:
            await channel.fetch_message(sent.id)
        assert info.value.code == 10008


async def test_dm_reply_lands_in_the_dm_channel(emu: DiscordEmulator) -> None:
    demo = emu.demo
    assert demo is not None
    bot = make_bot()

    @bot.event
    async def on_message(message: discord.Message) -> None:
        if not message.author.bot:
            await message.channel.send("DM answer", file=discord.File(io.BytesIO(MEDIA), "photo.jpg"))

    async with running(emu, bot):
        await emu.send_message(demo.dm_channel_id, demo.member_id, "https://vm.tiktok.com/ZMabc/")
        reply = await emu.wait_for_message(demo.dm_channel_id)
        # discord.py opens the DM itself for users it knows; the emulator hands back the same channel.
        member = bot.get_user(demo.member_id)
        assert member is not None
        dm = await member.create_dm()
        assert dm.id == demo.dm_channel_id
    assert reply.content == "DM answer" and reply.guild_id is None
    assert reply.attachments[0].sha256 == sha(MEDIA) and reply.attachments[0].content_type == "image/jpeg"


async def test_upload_over_the_guild_limit_is_refused_with_413_40005(emu: DiscordEmulator) -> None:
    demo = emu.demo
    assert demo is not None
    async with running(emu, make_bot()) as bot:
        channel = bot.get_channel(demo.channel_id)
        assert isinstance(channel, discord.TextChannel)
        limit = channel.guild.filesize_limit
        with pytest.raises(discord.HTTPException) as info:
            await channel.send(file=discord.File(io.BytesIO(b"\0" * (limit + 1)), "big.mp4"))
        assert info.value.status == 413 and info.value.code == 40005
        # The limit is on the whole request: two files each under it fail together.
        half = limit // 2 + 1
        with pytest.raises(discord.HTTPException) as info:
            await channel.send(
                files=[discord.File(io.BytesIO(b"\0" * half), f"part{i}.mp4") for i in range(2)],
            )
        assert info.value.status == 413
        exact = await channel.send(file=discord.File(io.BytesIO(b"\1" * limit), "fits.mp4"))
        assert exact.attachments[0].size == limit
        # A boost tier raises the limit, and discord.py learns of it through GUILD_UPDATE.
        emu.set_premium_tier(demo.guild_id, 2)
        await until(lambda: channel.guild.premium_tier == 2)
        assert channel.guild.filesize_limit == 50 * MIB
        bigger = await channel.send(file=discord.File(io.BytesIO(b"\2" * (limit + 1)), "tier2.mp4"))
        assert bigger.attachments[0].size == limit + 1
    refused = emu.calls("POST /channels/{channel_id}/messages", ok=False)
    assert [c.status for c in refused] == [413, 413] and all(c.files == () for c in refused)


async def test_files_need_attach_files_in_the_channel(emu: DiscordEmulator) -> None:
    demo = emu.demo
    assert demo is not None
    emu.set_overwrite(demo.channel_id, demo.guild_id, deny=Perm.ATTACH_FILES)
    async with running(emu, make_bot()) as bot:
        channel = bot.get_channel(demo.channel_id)
        assert isinstance(channel, discord.TextChannel)
        assert not channel.permissions_for(channel.guild.me).attach_files  # discord.py sees the overwrite too
        with pytest.raises(discord.Forbidden) as info:
            await channel.send(file=discord.File(io.BytesIO(MEDIA), "v.mp4"))
        assert info.value.code == 50013
        text_only = await channel.send("the link instead")
        thread = channel.guild.get_thread(demo.thread_id)
        assert thread is not None  # threads inherit their parent's overwrites
        with pytest.raises(discord.Forbidden):
            await thread.send(file=discord.File(io.BytesIO(MEDIA), "v.mp4"))
    assert emu.message(text_only.id).content == "the link instead"


async def test_world_changes_after_connect_reach_discord_py(emu: DiscordEmulator) -> None:
    demo = emu.demo
    assert demo is not None
    async with running(emu, make_bot()) as bot:
        guild = bot.get_guild(demo.guild_id)
        assert guild is not None
        news = emu.add_text_channel(demo.guild_id, "news")
        thread = emu.add_thread(news.id, "clips")
        carol = emu.add_user("carol")
        emu.add_member(demo.guild_id, carol.id, permissions=int(Perm.MANAGE_MESSAGES))
        other = emu.add_guild("Boosted", premium_tier=3)
        await until(lambda: bot.get_guild(other.id) is not None and guild.get_member(carol.id) is not None)
        assert guild.get_channel(news.id) is not None and guild.get_thread(thread.id) is not None
        member = guild.get_member(carol.id)
        assert member is not None and member.guild_permissions.manage_messages
        boosted = bot.get_guild(other.id)
        assert (
            boosted is not None
            and boosted.filesize_limit == 100 * MIB == emu.world.guilds[other.id].upload_limit
        )


async def test_rate_limited_call_is_retried_by_discord_py(emu: DiscordEmulator) -> None:
    demo = emu.demo
    assert demo is not None
    emu.fault_next("429", count=2, method="POST", path="/channels/{channel_id}/messages", retry_after=0.01)
    async with running(emu, make_bot()) as bot:
        channel = bot.get_channel(demo.channel_id)
        assert isinstance(channel, discord.TextChannel)
        sent = await channel.send("eventually", file=discord.File(io.BytesIO(MEDIA), "v.mp4"))
    calls = emu.calls("POST /channels/{channel_id}/messages")
    assert [c.status for c in calls] == [429, 429, 200]
    assert calls[0].response["retry_after"] == 0.01
    assert emu.message(sent.id).attachments[0].sha256 == sha(MEDIA)


# --- application commands and interactions -----------------------------------------------------------------


def slash_bot(emu: DiscordEmulator, log: list[str]) -> commands.Bot:
    """A bot with /download (defer → follow-ups with a file) and /page (a button that pages)."""
    bot = make_bot()

    @bot.tree.command(name="download", description="Download a TikTok post")
    @app_commands.describe(link="A TikTok link")
    async def download(interaction: discord.Interaction, link: str) -> None:
        log.append(f"{interaction.locale}:{link}:{interaction.filesize_limit}")
        await interaction.response.defer(thinking=True)
        await interaction.followup.send(f"Got {link}", file=discord.File(io.BytesIO(MEDIA), "post.mp4"))
        await interaction.followup.send("Only you can see this", ephemeral=True)

    @bot.tree.command(name="big", description="A file over the interaction's limit, then a fallback")
    async def big(interaction: discord.Interaction) -> None:
        payload = b"\0" * (interaction.filesize_limit + 1)
        try:
            await interaction.response.send_message(file=discord.File(io.BytesIO(payload), "big.mp4"))
        except discord.HTTPException as exc:
            log.append(f"{exc.status}:{exc.code}")
            await interaction.response.send_message("Too big, here is the link", ephemeral=True)

    @bot.tree.command(name="secret", description="Ephemeral failure right away")
    async def secret(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("Nope", ephemeral=True)

    class More(discord.ui.View):
        def __init__(self) -> None:
            super().__init__(timeout=30)
            self.page = 1

        @discord.ui.button(label="More", custom_id="more")
        async def more(self, interaction: discord.Interaction, button: discord.ui.Button[More]) -> None:
            self.page += 1
            await interaction.response.edit_message(content=f"page {self.page}", view=self)

    @bot.tree.command(name="page", description="Paged results")
    async def page(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("page 1", view=More())

    return bot


async def test_slash_command_synced_to_guild_then_defer_and_followups(emu: DiscordEmulator) -> None:
    demo = emu.demo
    assert demo is not None
    log: list[str] = []
    bot = slash_bot(emu, log)
    async with running(emu, bot):
        guild = discord.Object(demo.guild_id)
        bot.tree.copy_global_to(guild=guild)
        synced = await bot.tree.sync(guild=guild)
        assert sorted(c.name for c in synced) == ["big", "download", "page", "secret"]
        stored = {c["name"]: c for c in emu.commands(demo.guild_id)}
        assert (
            stored["download"]["options"][0]["name"] == "link"
            and stored["download"]["options"][0]["required"]
        )
        assert stored["download"]["guild_id"] == str(demo.guild_id)
        # A second sync keeps the ids, as Discord does for unchanged names.
        again = await bot.tree.sync(guild=guild)
        assert {c.name: c.id for c in again} == {c.name: c.id for c in synced}

        inter = await emu.invoke_command(
            "download",
            user_id=demo.member_id,
            channel_id=demo.channel_id,
            options={"link": "https://vm.tiktok.com/ZM1/"},
            locale="ru",
        )
        await emu.wait_for(lambda c: c.interaction_id == inter.id and c.flags == 64)
    assert log == [f"ru:https://vm.tiktok.com/ZM1/:{10 * MIB}"]
    callback, first, second = emu.interaction_responses(inter.id)
    assert callback.route == "POST /interactions/{interaction_id}/{token}/callback"
    assert callback.payload == {"type": 5} and callback.query == {"with_response": "1"}
    assert callback.response["resource"]["type"] == 5
    assert callback.response["interaction"]["response_message_loading"] is True
    assert first.route == "POST /webhooks/{application_id}/{token}" and first.query["wait"] == "1"
    assert first.files[0].sha256 == sha(MEDIA) and first.flags is None
    # The first follow-up resolves the deferred "thinking" message rather than posting a new one.
    original, ephemeral = emu.interaction_messages(inter.id)
    assert int(first.response["id"]) == original.id == int(callback.response["resource"]["message"]["id"])
    assert original.content == "Got https://vm.tiktok.com/ZM1/" and not original.ephemeral
    assert not original.flags & MessageFlag.LOADING and original.attachments[0].sha256 == sha(MEDIA)
    assert second.flags == 64 and ephemeral.ephemeral and ephemeral.content == "Only you can see this"
    assert [m.id for m in emu.messages_in(demo.channel_id)] == [original.id, ephemeral.id]


async def test_ephemeral_defer_keeps_the_first_followup_ephemeral(emu: DiscordEmulator) -> None:
    demo = emu.demo
    assert demo is not None
    bot = make_bot()

    @bot.tree.command(name="stats", description="Admin stats")
    async def stats(interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await interaction.followup.send("public?", ephemeral=False)
        await interaction.edit_original_response(content="edited original")

    async with running(emu, bot):
        await bot.tree.sync()
        assert [c["name"] for c in emu.commands()] == ["stats"]
        inter = await emu.invoke_command("stats", user_id=demo.member_id, channel_id=demo.dm_channel_id)
        await emu.wait_for(lambda c: c.interaction_id == inter.id and c.method == "PATCH")
    (original,) = emu.interaction_messages(inter.id)
    assert original.ephemeral and original.content == "edited original"


async def test_immediate_ephemeral_reply_and_late_callback(emu: DiscordEmulator) -> None:
    demo = emu.demo
    assert demo is not None
    bot = slash_bot(emu, [])
    async with running(emu, bot):
        await bot.tree.sync()
        inter = await emu.invoke_command("secret", user_id=demo.member_id, channel_id=demo.thread_id)
        call = await emu.wait_for(lambda c: c.interaction_id == inter.id)
        assert call.payload["type"] == 4 and call.flags == 64
        assert call.response["interaction"]["response_message_ephemeral"] is True
        (message,) = emu.interaction_messages(inter.id)
        assert message.ephemeral and message.channel_id == demo.thread_id and message.content == "Nope"

        emu.callback_deadline = 0.0  # every callback now arrives after Discord's 3 s window
        late = await emu.invoke_command("secret", user_id=demo.member_id, channel_id=demo.channel_id)
        refused = await emu.wait_for(lambda c: c.interaction_id == late.id)
        assert refused.status == 404 and refused.error_code == 10062


async def test_interaction_upload_over_its_attachment_size_limit(emu: DiscordEmulator) -> None:
    demo = emu.demo
    assert demo is not None
    emu.set_upload_limit(demo.guild_id, 4096)
    log: list[str] = []
    bot = slash_bot(emu, log)
    async with running(emu, bot):
        await bot.tree.sync()
        inter = await emu.invoke_command("big", user_id=demo.member_id, channel_id=demo.channel_id)
        assert inter.payload["attachment_size_limit"] == 4096
        await emu.wait_for(lambda c: c.interaction_id == inter.id and c.ok)
    assert log == ["413:40005"]
    refused, fallback = emu.interaction_responses(inter.id)
    assert refused.status == 413 and refused.files == ()
    assert fallback.payload["type"] == 4 and fallback.flags == 64


async def test_button_click_updates_the_message(emu: DiscordEmulator) -> None:
    demo = emu.demo
    assert demo is not None
    bot = slash_bot(emu, [])
    async with running(emu, bot):
        await bot.tree.sync()
        inter = await emu.invoke_command("page", user_id=demo.member_id, channel_id=demo.channel_id)
        await emu.wait_for(lambda c: c.interaction_id == inter.id)
        (message,) = emu.interaction_messages(inter.id)
        assert message.content == "page 1" and message.components[0]["components"][0]["custom_id"] == "more"
        for expected in ("page 2", "page 3"):
            click = await emu.click_component(message.id, "more", user_id=demo.admin_id)
            call = await emu.wait_for(lambda c, i=click.id: c.interaction_id == i)  # type: ignore[misc]
            assert call.payload["type"] == 7 and call.payload["data"]["content"] == expected
            assert emu.message(message.id).content == expected
        with pytest.raises(LookupError):
            await emu.click_component(message.id, "nope", user_id=demo.admin_id)


async def test_unsynced_or_hidden_commands_cannot_be_invoked(emu: DiscordEmulator) -> None:
    demo = emu.demo
    assert demo is not None
    bot = make_bot()

    @bot.tree.command(name="settings", description="Chat settings")
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.guild_only()
    async def settings(interaction: discord.Interaction) -> None:
        assert interaction.permissions.manage_guild
        await interaction.response.send_message("settings", ephemeral=True)

    async with running(emu, bot):
        with pytest.raises(LookupError):
            await emu.invoke_command("settings", user_id=demo.admin_id, channel_id=demo.channel_id)
        await bot.tree.sync()
        with pytest.raises(PermissionError):
            await emu.invoke_command("settings", user_id=demo.member_id, channel_id=demo.channel_id)
        with pytest.raises(PermissionError):
            await emu.invoke_command("settings", user_id=demo.member_id, channel_id=demo.dm_channel_id)
        inter = await emu.invoke_command("settings", user_id=demo.admin_id, channel_id=demo.channel_id)
        call = await emu.wait_for(lambda c: c.interaction_id == inter.id)
        assert call.ok and call.flags == 64


# --- raw REST: auth, validation, control API ---------------------------------------------------------------


async def raw(
    emu: DiscordEmulator, method: str, path: str, *, auth: bool = True, **kwargs: Any
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bot {emu.token}"} if auth else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, emu.api_url + path, headers=headers, **kwargs) as resp,
    ):
        body = await resp.json() if resp.content_type == "application/json" else None
        if body is not None:
            assert resp.headers["Content-Type"] == "application/json"  # exactly, or discord.py reads text
        return resp.status, body


async def test_rest_checks_auth_and_validates_like_discord(emu: DiscordEmulator) -> None:
    demo = emu.demo
    assert demo is not None
    assert (await raw(emu, "GET", "/users/@me", auth=False))[0] == 401
    status, body = await raw(
        emu, "POST", f"/channels/{demo.channel_id}/messages", json={"content": "x" * 2001}
    )
    assert status == 400 and body["code"] == 50035 and "content" in body["errors"]
    status, body = await raw(emu, "POST", f"/channels/{demo.channel_id}/messages", json={"content": ""})
    assert (status, body["code"]) == (400, 50006)
    status, body = await raw(emu, "POST", "/channels/1/messages", json={"content": "hi"})
    assert (status, body["code"]) == (404, 10003)
    form = aiohttp.FormData(quote_fields=False)
    form.add_field("payload_json", '{"content": "many"}')
    for i in range(11):
        form.add_field(f"files[{i}]", b"x", filename=f"{i}.txt", content_type="application/octet-stream")
    status, body = await raw(emu, "POST", f"/channels/{demo.channel_id}/messages", data=form)
    assert status == 400 and body["code"] == 50035 and "attachments" in body["errors"]
    bad_embed = {"embeds": [{"title": "t" * 257}]}
    status, body = await raw(emu, "POST", f"/channels/{demo.channel_id}/messages", json=bad_embed)
    assert status == 400 and "title" in body["errors"]["embeds"]["0"]
    bad_command = [{"name": "Bad Name", "description": "x", "type": 1}]
    status, body = await raw(emu, "PUT", f"/applications/{emu.application_id}/commands", json=bad_command)
    assert status == 400 and "name" in body["errors"]["0"]
    # @everyone may send, so the bot role alone does not decide; a channel overwrite does.
    emu.set_overwrite(demo.channel_id, demo.guild_id, deny=Perm.SEND_MESSAGES)
    status, body = await raw(emu, "POST", f"/channels/{demo.channel_id}/messages", json={"content": "hi"})
    assert (status, body["code"]) == (403, 50013)
    status, body = await raw(emu, "GET", "/gateway/bot")
    assert status == 200 and body["url"] == emu.gateway_url
    status, body = await raw(emu, "GET", f"/channels/{demo.channel_id}/messages", params={"limit": "many"})
    assert (status, body["code"]) == (400, 50035)
    assert [c.status for c in emu.transcript] == [401, 400, 400, 404, 400, 400, 400, 403, 200, 400]


async def test_http_control_api_drives_a_connected_bot(emu: DiscordEmulator) -> None:
    demo = emu.demo
    assert demo is not None
    bot = make_bot()

    @bot.event
    async def on_message(message: discord.Message) -> None:
        if not message.author.bot:
            await message.channel.send(f"echo {message.content}")

    async with running(emu, bot), aiohttp.ClientSession() as http:
        base = f"{emu.base_url}/_control"
        async with http.get(f"{base}/state") as resp:
            state = await resp.json()
        assert state["demo"]["guild_id"] == str(demo.guild_id) and state["sessions"][0]["connected"]
        async with http.post(f"{base}/users", json={"username": "carol"}) as resp:
            carol = await resp.json()
        async with http.post(f"{base}/guilds/{demo.guild_id}/members", json={"user_id": carol["id"]}) as resp:
            assert resp.status == 200
        await until(lambda: bot.get_guild(demo.guild_id).get_member(int(carol["id"])) is not None)  # type: ignore[union-attr]
        body = {"channel_id": str(demo.channel_id), "author_id": carol["id"], "content": "hello"}
        async with http.post(f"{base}/messages", json=body) as resp:
            assert resp.status == 200
        await emu.wait_for_message(demo.channel_id)
        async with http.get(f"{base}/channels/{demo.channel_id}/messages") as resp:
            messages = await resp.json()
        assert [m["content"] for m in messages] == ["hello", "echo hello"]
        async with http.get(f"{base}/transcript", params={"since": "2"}) as resp:
            calls = await resp.json()
        assert calls[-1]["route"] == "POST /channels/{channel_id}/messages" and calls[-1]["status"] == 200
        async with http.post(f"{base}/messages", json={"channel_id": "1", "author_id": carol["id"]}) as resp:
            assert resp.status == 404


async def test_sandbox_runs_the_discord_emulator() -> None:
    async with Sandbox() as sandbox:
        emu = sandbox.get(DiscordEmulator)
        env = sandbox.env()
        assert env["DISCORD__API_URL"] == emu.api_url and env["DISCORD__GATEWAY_URL"] == emu.gateway_url
        status, body = await raw(emu, "GET", "/users/@me")
        assert status == 200 and body["bot"] is True


def test_env_points_the_bot_at_the_emulator() -> None:
    emu = DiscordEmulator()
    emu.port = 4321
    env = emu.env()
    assert env["DISCORD__API_URL"] == "http://127.0.0.1:4321/api/v10"
    assert env["DISCORD__GATEWAY_URL"] == "ws://127.0.0.1:4321/gateway"
    assert env["DISCORD__TOKEN"] == emu.token
    assert emu.demo is not None and env["DISCORD__GUILD_IDS"] == str(emu.demo.guild_id)


def guilds_on_both_shards(emu: DiscordEmulator) -> dict[int, int]:
    """Shard (of 2) -> a guild of it, adding guilds until both shards have one (ids carry the time in ms)."""
    found = {(g >> 22) % 2: g for g in emu.world.guilds}
    while len(found) < 2:
        guild = emu.add_guild(f"Guild {len(emu.world.guilds)}")
        found.setdefault((guild.id >> 22) % 2, guild.id)
    return found


async def frames_until(gw: RawGateway, event: str) -> list[dict[str, Any]]:
    """Dispatches received up to and including the first `event` (fails after 5 s of silence)."""
    seen = []
    while True:
        frame = await gw.recv()
        if frame.get("op") == 0:
            seen.append(frame)
            if frame["t"] == event:
                return seen


async def test_gateway_routes_guild_events_by_shard_and_dms_to_shard_zero(emu: DiscordEmulator) -> None:
    demo = emu.demo
    assert demo is not None
    guilds = guilds_on_both_shards(emu)
    channels = {shard: emu.add_text_channel(guild, "general").id for shard, guild in guilds.items()}
    user = demo.member_id
    for guild in guilds.values():
        if user not in emu.world.guilds[guild].members:
            emu.add_member(guild, user)
    async with aiohttp.ClientSession() as http:
        shards: list[RawGateway] = []
        for shard in (0, 1):
            ws = await http.ws_connect(emu.gateway_url)
            gw = RawGateway(ws, compressed=False)
            await gw.recv()
            await gw.send(2, {"token": emu.token, "intents": 513 | 4096 | 32768, "shard": [shard, 2]})
            ready = (await frames_until(gw, "READY"))[-1]["d"]
            assert ready["shard"] == [shard, 2]
            assert {int(g["id"]) for g in ready["guilds"]} == {
                g for g in emu.world.guilds if (g >> 22) % 2 == shard
            }
            shards.append(gw)
        for shard in (1, 0):
            await emu.send_message(channels[shard], user, f"for shard {shard}")
        await emu.send_message(demo.dm_channel_id, user, "a DM")
        got = {n: await frames_until(shards[n], "MESSAGE_CREATE") for n in (0, 1)}
        assert [f["d"]["content"] for f in got[1] if f["t"] == "MESSAGE_CREATE"] == ["for shard 1"]
        # Shard 0 gets its guild's message and the DM (frames come in order: the DM is the next one).
        assert [f["d"]["content"] for f in got[0] if f["t"] == "MESSAGE_CREATE"] == ["for shard 0"]
        assert (await frames_until(shards[0], "MESSAGE_CREATE"))[-1]["d"]["content"] == "a DM"
        await emu.send_message(channels[1], user, "after the DM")
        # Shard 1 never saw the DM: its next message is the one sent after it.
        assert (await frames_until(shards[1], "MESSAGE_CREATE"))[-1]["d"]["content"] == "after the DM"
        for gw in shards:
            await gw.ws.close()
        async with http.ws_connect(emu.gateway_url) as ws:
            gw = RawGateway(ws, compressed=False)
            await gw.recv()
            await gw.send(2, {"token": emu.token, "intents": 513, "shard": [2, 2]})
            assert (await ws.receive(timeout=5)).type is aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 4010
