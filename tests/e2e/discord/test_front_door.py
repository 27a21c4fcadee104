"""The front door end to end: a pasted link served on Telegram and Discord through TikTok's 2026 door.

The TikTok emulator challenges every first visit, blocks the first sandbox proxy's address (10204) and serves
the sharp renditions only in H.265 (with hvc1 copies listed first); the bot runs on the web backend alone,
through two proxies.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.wiring import App
from sandbox.blobs import Blob
from sandbox.catalogue import T0, post_id_at
from sandbox.proxy import ForwardProxy
from sandbox.runner import Sandbox
from sandbox.telegram import TelegramEmulator
from sandbox.tiktok import TikTokEmulator
from tests.e2e.conftest import wait_rows
from tests.e2e.discord.conftest import DiscordRun, UsageTable, post, url

HEVC = post_id_at(T0 + 4 * 86_400, 10)  # 1080p/720p only in H.265, H.264 at 540p


@pytest.fixture
async def proxies() -> AsyncIterator[list[ForwardProxy]]:
    """Two forward proxies, going out from 127.0.0.2 (which TikTok will block) and 127.0.0.3."""
    first, second = ForwardProxy(source="127.0.0.2"), ForwardProxy(source="127.0.0.3")
    async with first, second:
        yield [first, second]


@pytest.fixture
def extra_env(proxies: list[ForwardProxy]) -> dict[str, str]:
    """The web backend alone, through both proxies."""
    return {"DOWNLOAD__BACKENDS": "web", "DOWNLOAD__PROXIES": ",".join(p.url for p in proxies)}


def hostile_door(sandbox: Sandbox) -> TikTokEmulator:
    tiktok = sandbox.get(TikTokEmulator)
    tiktok.set_door(challenge="first", blocked={"127.0.0.2"})
    return tiktok


def served_variants(tiktok: TikTokEmulator, post_id: str) -> list[str]:
    return [h.variant for h in tiktok.media_log if h.kind == "video" and h.key == post_id and h.status == 200]


async def test_telegram_through_the_door(
    tg: TelegramEmulator, sandbox: Sandbox, app: App, proxies: list[ForwardProxy]
) -> None:
    tiktok = hostile_door(sandbox)
    user = tg.add_user("Door", language_code="en")
    chat = tg.private_chat(user)
    mark = tg.mark()
    tg.inject_message(chat, post(HEVC).url, user=user)
    call = await tg.wait_for(method="sendVideo", chat_id=chat.id, after=mark, timeout=20)
    [video] = [f for f in call.files if f.field == "video"]
    assert video.uploaded and video.sha256 == Blob.of_file("clip.mp4").sha256()
    # Compatible (the default): the 540p H.264 copy; never an hvc1 copy.
    assert served_variants(tiktok, HEVC) == ["lowest_540_0"]
    assert not [h for h in tiktok.media_log if h.variant.startswith("hvc1")]
    # Challenged, solved and verified; blocked on the first proxy; served through the second.
    assert tiktok.door_log.passed >= 1 and tiktok.door_log.blocked >= 1 and tiktok.door_log.rejected == 0
    first, second = proxies
    assert (
        first.count("v16-webapp-prime.tiktok.com") == 0 and second.count("v16-webapp-prime.tiktok.com") == 1
    )
    rows = await wait_rows(app, "link")
    assert (rows[-1]["outcome"], rows[-1]["backend"]) == ("ok", "web")


async def test_discord_through_the_door_in_best_quality(
    discord_bot: DiscordRun, sandbox: Sandbox, usage: UsageTable, proxies: list[ForwardProxy]
) -> None:
    run = discord_bot
    tiktok = hostile_door(sandbox)
    await run.app.store.chats.set("discord", run.demo.dm_channel_id, quality="best")
    pasted = await run.paste(url(HEVC), channel_id=run.demo.dm_channel_id)
    reply = await run.reply_to(pasted, lambda m: bool(m.attachments))
    assert [a.sha256 for a in reply.attachments] == [Blob.of_file("clip.mp4").sha256()]
    # Best: the 1080p H.265 rendition, fetched by its plain URL (its hvc1 copy is skipped).
    assert served_variants(tiktok, HEVC) == ["normal_1080_0"]
    assert not [h for h in tiktok.media_log if h.variant.startswith("hvc1")]
    assert tiktok.door_log.passed >= 1 and tiktok.door_log.blocked >= 1
    await run.settled()
    rows = await usage.rows(action="link", target=HEVC)
    assert [(r["outcome"], r["backend"]) for r in rows] == [("ok", "web")]


async def test_quality_chosen_in_telegram_settings(tg: TelegramEmulator, sandbox: Sandbox, app: App) -> None:
    tiktok = sandbox.get(TikTokEmulator)
    user = tg.add_user("Quin", language_code="en")
    chat = tg.private_chat(user)
    mark = tg.mark()
    tg.inject_message(chat, "/settings", user=user)
    menu = await tg.wait_for(method="sendMessage", chat_id=chat.id, after=mark)

    def quality_label() -> str:
        current = next(
            m for m in tg.messages_in(chat.id) if m.get("message_id") == menu.message["message_id"]
        )  # type: ignore[index]
        return next(
            b["text"]
            for row in current["reply_markup"]["inline_keyboard"]
            for b in row
            if "Video quality" in b["text"]
        )

    assert quality_label().endswith("bot default")
    for expected in ("plays everywhere (H.264)", "sharpest (H.265 allowed)"):  # auto -> compatible -> best
        mark = tg.mark()
        press = tg.press_button(menu, text=quality_label(), user=user)
        await tg.wait_answered(press)
        await tg.wait_for(method="editMessageReplyMarkup", chat_id=chat.id, after=mark)
        assert quality_label().endswith(expected)
    assert (await app.store.chats.get("telegram", chat.id)).quality == "best"
    mark = tg.mark()
    tg.inject_message(chat, post(HEVC).url, user=user)
    await tg.wait_for(method="sendVideo", chat_id=chat.id, after=mark, timeout=20)
    assert served_variants(tiktok, HEVC) == ["normal_1080_0"]


async def test_quality_chosen_in_discord_settings(discord_global: DiscordRun, sandbox: Sandbox) -> None:
    run = discord_global
    inter = await run.command("settings", channel_id=run.demo.dm_channel_id)
    (panel,) = await run.answered(inter)
    click = await run.emu.click_component(panel.id, "st:quality", user_id=run.demo.member_id)
    await run.emu.wait_for(lambda c: c.interaction_id == click.id)
    assert (await run.app.store.chats.get("discord", run.demo.dm_channel_id)).quality == "compatible"
    click = await run.emu.click_component(panel.id, "st:quality", user_id=run.demo.member_id)
    await run.emu.wait_for(lambda c: c.interaction_id == click.id)
    assert (await run.app.store.chats.get("discord", run.demo.dm_channel_id)).quality == "best"
    assert (await run.app.store.chats.get("discord", run.demo.guild_id)).quality == "auto"
    reply = await run.reply_to(
        await run.paste(url(HEVC), channel_id=run.demo.dm_channel_id), lambda m: bool(m.attachments)
    )
    assert reply.attachments
    assert served_variants(sandbox.get(TikTokEmulator), HEVC) == ["normal_1080_0"]
