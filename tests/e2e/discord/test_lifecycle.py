"""The Discord bot's life: command sync, the refused message-content intent, graceful shutdown, crashes."""

from __future__ import annotations

import asyncio
import logging

import discord
import pytest

from bot.chat.i18n import t
from bot.discord.app import run_discord
from bot.discord.client import INTENT_WARNING, TikTokBot
from bot.wiring import App
from sandbox.discord import DiscordEmulator, Intent
from sandbox.runner import Sandbox
from sandbox.ttsave import TTSaveEmulator
from tests.e2e.discord.conftest import (
    CLIP,
    DiscordRun,
    UsageTable,
    sha,
    start_discord,
    url,
)

COMMANDS = {"audio", "download", "hashtag", "post", "settings", "stats", "user"}


async def test_commands_sync_to_the_configured_guild_with_russian_descriptions(
    discord_bot: DiscordRun,
) -> None:
    run = discord_bot
    synced = {c["name"]: c for c in run.emu.commands(run.demo.guild_id)}
    assert set(synced) == COMMANDS and run.emu.commands() == []
    post = synced["post"]
    assert post["description"] == "Stats of a TikTok post"
    assert post["description_localizations"]["ru"] == "Статистика публикации TikTok"
    assert post["options"][0]["name"] == "link" and post["options"][0]["required"]
    assert post["options"][0]["description_localizations"]["ru"].startswith("Ссылка на публикацию")
    assert synced["settings"]["default_member_permissions"] == str(
        discord.Permissions(manage_guild=True).value
    )


async def test_without_guild_ids_commands_sync_globally(discord_global: DiscordRun) -> None:
    run = discord_global
    assert {c["name"] for c in run.emu.commands()} == COMMANDS
    assert run.emu.commands(run.demo.guild_id) == []


async def test_the_endpoints_point_at_the_settings_only_while_running(app: App, sandbox: Sandbox) -> None:
    before = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    run = await start_discord(app, sandbox)
    assert app.settings.discord.api_url == discord.http.Route.BASE
    assert str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY) == app.settings.discord.gateway_url
    session = await run.emu.wait_for_session()
    assert session.has(Intent.MESSAGE_CONTENT) and not session.has(Intent.GUILD_MEMBERS)
    await run.shutdown()
    assert before == (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    assert not any(s.connected for s in run.emu.sessions)


async def test_a_wrong_token_stops_the_frontend_with_an_error(app: App) -> None:
    from pydantic import SecretStr

    app.settings.discord.token = SecretStr("MTI.wrong.token")
    before = discord.http.Route.BASE
    with pytest.raises(discord.LoginFailure):
        await asyncio.wait_for(run_discord(app, asyncio.Event(), guild_ready_timeout=0.01), 10)
    assert before == discord.http.Route.BASE


async def test_a_refused_message_content_intent_warns_once_and_commands_still_work(
    app: App, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox.get(DiscordEmulator).set_privileged_intents(message_content=False)
    with caplog.at_level(logging.WARNING, logger="tiktok_bot"):
        run = await start_discord(app, sandbox)
    try:
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert [r.getMessage() for r in warnings] == [INTENT_WARNING]
        assert "Developer Portal" in INTENT_WARNING and "MESSAGE CONTENT INTENT" in INTENT_WARNING
        assert run.bot.intent_refused and not run.bot.intents.message_content
        assert 4014 in run.emu.gateway.closes
        session = await run.emu.wait_for_session()
        assert not session.has(Intent.MESSAGE_CONTENT)

        inter = await run.command("post", link=url(CLIP), locale="en-US")
        (card,) = await run.answered(inter)
        assert card.embeds[0]["url"] == url(CLIP)

        unseen = await run.paste(url(CLIP))  # the bot gets this message with its content blanked
        in_dm = await run.paste(url(CLIP), channel_id=run.demo.dm_channel_id)
        assert [a.sha256 for a in (await run.reply_to(in_dm)).attachments] == [sha("clip.mp4")]
        mentioned = await run.emu.send_message(
            run.demo.channel_id, run.demo.member_id, url(CLIP), mention_bot=True
        )
        resent = await run.reply_to(mentioned)  # the DM's upload is re-sent by its link
        assert resent.embeds[0]["url"] == url(CLIP) and "/attachments/" in resent.content
        replies = [m for m in run.emu.messages_in(run.demo.channel_id) if m.reference]
        assert all(m.reference and m.reference["message_id"] != str(unseen.id) for m in replies)
    finally:
        await run.shutdown()


async def test_shutdown_lets_a_reply_in_flight_finish(app: App, sandbox: Sandbox, usage: UsageTable) -> None:
    run = await start_discord(app, sandbox, grace=5.0)
    run.ttsave.fault_next("slow", delay=0.3)
    pasted = await run.paste(url(CLIP))
    # The link's download has begun (a job counted before that may be the start-up replay alone, and a
    # shutdown then would close the bot before the stored message is dispatched).
    async with asyncio.timeout(10):
        while not run.bot.jobs or not run.ttsave.served:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
    await run.shutdown()
    reply = await run.reply_to(pasted)
    assert [a.sha256 for a in reply.attachments] == [sha("clip.mp4")]
    assert [r["outcome"] for r in await usage.rows(action="link")] == ["ok"]


async def test_shutdown_cancels_what_takes_too_long_and_says_so(
    app: App, sandbox: Sandbox, usage: UsageTable
) -> None:
    run = await start_discord(app, sandbox, grace=0.1)
    run.ttsave.fault_next("slow", delay=5)
    pasted = await run.paste(url(CLIP))
    inter = await run.command("download", link=url(CLIP), locale="en-US")
    async with asyncio.timeout(5):
        while run.bot.jobs < 2 or not sandbox.get(TTSaveEmulator).served:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
    await run.shutdown()
    reply = await run.reply_to(pasted)
    assert reply.content == "⚠️ The bot is restarting — send the link again in a minute."
    (message,) = [m for m in run.emu.interaction_messages(inter.id) if not m.deleted]
    assert message.ephemeral and message.content == "The bot is restarting — send the link again in a minute."
    assert sorted(r["outcome"] for r in await usage.rows()) == ["cancelled", "cancelled"]


async def test_new_commands_during_shutdown_are_turned_away(discord_bot: DiscordRun) -> None:
    run = discord_bot
    run.bot.stopping = True
    inter = await run.command("post", link=url(CLIP), locale="en-US")
    (message,) = await run.answered(inter)
    assert message.ephemeral and message.content.startswith("The bot is restarting")


async def test_an_unexpected_error_is_logged_and_apologised_for_ephemerally(
    discord_bot: DiscordRun, usage: UsageTable, caplog: pytest.LogCaptureFixture
) -> None:
    run = discord_bot
    assert run.app.metadata is not None

    async def broken(username: str) -> None:
        raise RuntimeError("a bug")

    run.app.metadata.profile = broken  # type: ignore[method-assign,assignment]
    with caplog.at_level(logging.ERROR, logger="tiktok_bot"):
        inter = await run.command("user", name="sandbox.cook", locale="en-US")
        await run.emu.wait_for(lambda c: c.interaction_id == inter.id and c.flags == 64)
    (message,) = await run.answered(inter)
    assert message.ephemeral and message.content == t("en", "error.internal")
    assert "a bug" not in message.content and "Traceback" not in message.content
    assert run.emu.message(inter.original_message_id or 0).deleted
    (record,) = [r for r in caplog.records if r.getMessage() == "unhandled error in /user"]
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)
    await run.settled()
    assert [r["outcome"] for r in await usage.rows(action="user")] == ["internal"]


def test_the_bot_is_a_commands_bot_with_the_app_attached() -> None:
    assert issubclass(TikTokBot, discord.ext.commands.Bot)
