"""The Discord bot end to end, pasted links: real discord.py on the emulator, real services on loopback.

Each post kind pasted in a server channel, a thread and a DM; what reached the channel is checked byte for
byte (attachment SHA-256 against the sandbox media) and field by field (the embed).
"""

from __future__ import annotations

import time

import pytest

from bot.chat.flow import POST_VARIANT
from sandbox.blobs import Blob
from sandbox.catalogue import Status
from sandbox.discord import BOT_PERMISSIONS, MessageFlag, Perm, StoredMessage
from sandbox.discord.world import MIB
from tests.e2e.discord.conftest import (
    ALBUM,
    BIG,
    BY_STATUS,
    CLIP,
    SLIDES,
    DiscordRun,
    UsageTable,
    post,
    rendition_sha,
    sha,
    url,
)

PHOTOS = [sha("photo1.jpg"), sha("photo2.jpg"), sha("photo3.jpg")]


def embed_fields(message: StoredMessage) -> dict[str, str]:
    """The first embed's fields, name → value."""
    return {f["name"]: f["value"] for f in message.embeds[0].get("fields", [])}


async def test_video_link_in_a_guild_channel(discord_bot: DiscordRun, usage: UsageTable) -> None:
    run = discord_bot
    pasted = await run.paste(f"look {url(CLIP)} !")
    reply = await run.reply_to(pasted)
    assert [a.sha256 for a in reply.attachments] == [sha("clip.mp4")]
    assert reply.attachments[0].filename == f"{CLIP}_video.mp4"
    (embed,) = reply.embeds
    assert embed["author"]["name"] == "Sandbox Cook (@sandbox.cook)"
    assert embed["url"] == url(CLIP) and embed["title"] == "Open on TikTok"
    assert embed["description"].startswith("Pasta in 30 seconds")
    assert embed_fields(reply) == {
        "👁 views": "1.5M",
        "❤️ likes": "240K",
        "💬 comments": "1.3K",
        "↗️ shares": "905",
    }
    assert "0:03" in embed["footer"]["text"]
    assert reply.mention_ids == []  # a reply that does not ping
    assert run.emu.calls("POST /channels/{channel_id}/typing", channel_id=run.demo.channel_id)
    await run.settled()
    (row,) = await usage.rows(action="link")
    assert row["platform"] == "discord" and row["outcome"] == "ok" and row["target"] == CLIP
    assert row["chat_type"] == "guild" and row["chat_id"] == str(run.demo.channel_id)
    assert row["user_id"] == str(run.demo.member_id) and row["backend"] == "ttsave"
    assert row["bytes_sent"] == Blob.of_file("clip.mp4").size
    sample = run.app.metrics.registry.get_sample_value
    assert sample("tiktok_bot_updates_received_total", {"platform": "discord", "kind": "message_create"}) >= 1
    ok = {"platform": "discord", "action": "link", "outcome": "ok"}
    assert sample("tiktok_bot_replies_total", ok) == 1


async def test_video_link_in_a_dm_and_a_thread(discord_bot: DiscordRun) -> None:
    run = discord_bot
    in_dm = await run.paste(url(CLIP), channel_id=run.demo.dm_channel_id)
    reply = await run.reply_to(in_dm)
    assert [a.sha256 for a in reply.attachments] == [sha("clip.mp4")] and reply.guild_id is None
    in_thread = await run.paste(f"{url(CLIP)}", channel_id=run.demo.thread_id)
    reply = await run.reply_to(in_thread)
    assert reply.channel_id == run.demo.thread_id and reply.embeds[0]["url"] == url(CLIP)


@pytest.mark.parametrize("where", ["channel", "dm"])
async def test_slideshow_as_photos_with_their_sound(discord_bot: DiscordRun, where: str) -> None:
    run = discord_bot
    channel = run.demo.channel_id if where == "channel" else run.demo.dm_channel_id
    pasted = await run.paste(url(SLIDES), channel_id=channel)
    reply = await run.reply_to(pasted)
    assert [a.sha256 for a in reply.attachments] == [*PHOTOS, sha("sound.mp3")]
    assert [a.filename for a in reply.attachments][:2] == [f"{SLIDES}_photo_0.jpg", f"{SLIDES}_photo_1.jpg"]
    assert reply.embeds[0]["author"]["name"].endswith("(@travel_bug-1)")
    assert "3 photos" in reply.embeds[0]["footer"]["text"]


async def test_twelve_photos_go_out_ten_per_message(discord_bot: DiscordRun) -> None:
    run = discord_bot
    pasted = await run.paste(url(ALBUM))
    first = await run.reply_to(pasted)
    second = await run.reply_to(pasted, lambda m: m.id != first.id)
    expected = [sha(name) for name in post(ALBUM).images]
    assert [a.sha256 for a in first.attachments] == expected[:10] and first.embeds
    assert [a.sha256 for a in second.attachments] == [*expected[10:], sha("sound.mp3")]
    assert not second.embeds  # the card goes with the first message only


@pytest.mark.parametrize(
    ("status", "text"),
    [
        (Status.PRIVATE, "This post is private"),
        (Status.DELETED, "This post was deleted"),
    ],
)
async def test_unavailable_posts_terse_in_a_channel_specific_in_a_dm(
    discord_bot: DiscordRun, usage: UsageTable, status: Status, text: str
) -> None:
    run = discord_bot
    post_id = BY_STATUS[status]
    in_channel = await run.paste(url(post_id))
    reply = await run.reply_to(in_channel)
    assert reply.content.startswith("⚠️ ") and text in reply.content and not reply.attachments
    in_dm = await run.paste(url(post_id), channel_id=run.demo.dm_channel_id)
    reply = await run.reply_to(in_dm)
    assert reply.content.startswith(text)
    await run.settled()
    rows = await usage.rows(action="link", target=post_id)
    assert [r["outcome"] for r in rows] == [f"unavailable:{status.value}"] * 2


async def test_a_repeated_post_is_resent_from_its_attachment_links(
    discord_bot: DiscordRun, usage: UsageTable
) -> None:
    run = discord_bot
    first = await run.reply_to(await run.paste(url(SLIDES)))
    downloads = run.media_downloads(SLIDES)
    assert downloads > 0
    again = await run.paste(f"again: {url(SLIDES)}", channel_id=run.demo.dm_channel_id)
    resent = await run.reply_to(again)
    assert run.media_downloads(SLIDES) == downloads  # neither TikTok's CDN nor TTSave was asked again
    assert resent.attachments == [] and resent.embeds[0]["url"] == url(SLIDES)
    assert [line.split("?")[0] for line in resent.content.split("\n")] == cdn_urls(run, first)
    await run.settled()
    rows = await usage.rows(action="link", target=SLIDES)
    assert [(r["cache_hit"], r["backend"]) for r in rows] == [(0, "ttsave"), (1, "cache")]
    assert rows[1]["bytes_sent"] == 0


def cdn_urls(run: DiscordRun, message: StoredMessage) -> list[str]:
    """The emulator's CDN URLs (without the signature) of a message's attachments."""
    base = f"{run.emu.base_url}/attachments/{message.channel_id}"
    return [f"{base}/{a.id}/{a.filename}" for a in message.attachments]


async def test_an_expired_attachment_link_means_a_fresh_download(discord_bot: DiscordRun) -> None:
    run = discord_bot
    await run.reply_to(await run.paste(url(CLIP)))
    await run.settled()  # the first upload's links are cached
    downloads = run.media_downloads(CLIP)
    expired = f"{run.emu.base_url}/attachments/1/2/old.mp4?ex={int(time.time()) - 60:x}&is=0&hm=00&"
    await run.app.store.media.put("discord", CLIP, "media:video", expired)
    reply = await run.reply_to(await run.paste(url(CLIP)), lambda m: bool(m.attachments))
    assert [a.sha256 for a in reply.attachments] == [sha("clip.mp4")]
    assert run.media_downloads(CLIP) > downloads
    await run.settled()
    assert await run.app.store.media.get("discord", CLIP, "media:video") != expired
    assert await run.app.store.media.get("discord", CLIP, POST_VARIANT)


async def test_an_over_limit_video_comes_in_a_smaller_rendition(discord_bot: DiscordRun) -> None:
    run = discord_bot
    reply = await run.reply_to(await run.paste(url(BIG)))
    (video,) = reply.attachments
    assert video.size <= 10 * MIB and video.sha256 == rendition_sha(BIG, "lowest_540_0")


async def test_a_video_over_the_real_limit_gets_the_stats_and_the_link(
    discord_bot: DiscordRun, usage: UsageTable
) -> None:
    run = discord_bot
    run.emu.set_upload_limit(run.demo.guild_id, 20_000)  # below the clip; the bot's guess is still 10 MiB
    reply = await run.reply_to(await run.paste(url(CLIP)))
    assert run.emu.calls("POST /channels/{channel_id}/messages", ok=False)[0].status == 413
    assert reply.attachments == [] and f"<{url(CLIP)}>" in reply.content
    assert "too large" in reply.content and embed_fields(reply)["👁 views"] == "1.5M"
    await run.settled()
    (row,) = await usage.rows(action="link")
    assert row["outcome"] == "too_large"


async def test_the_limit_an_interaction_reports_picks_the_rendition_for_links(
    discord_bot: DiscordRun,
) -> None:
    run = discord_bot
    run.emu.set_upload_limit(run.demo.guild_id, 7 * 1000 * 1000)
    inter = await run.command("post", link=url(CLIP))  # interactions carry the guild's real limit
    await run.answered(inter)
    assert run.bot.upload_limit_for(run.bot.get_guild(run.demo.guild_id)) == 7_000_000
    reply = await run.reply_to(await run.paste(url(BIG)))
    assert reply.attachments[0].sha256 == rendition_sha(BIG, "lowest_540_0")  # 6 MB, under 7 MB


async def test_captions_off_and_the_preview_hidden(discord_bot: DiscordRun) -> None:
    run = discord_bot
    run.emu.set_bot_permissions(run.demo.guild_id, BOT_PERMISSIONS | Perm.MANAGE_MESSAGES)
    await run.app.store.chats.set("discord", run.demo.guild_id, captions=False, remove_link_message=True)
    pasted = await run.paste(url(CLIP))
    assert pasted.embeds and not pasted.suppressed_embeds  # Discord's own preview of the link
    reply = await run.reply_to(pasted)
    assert reply.embeds == [] and reply.attachments
    await run.emu.wait_for(lambda c: c.method == "PATCH" and c.message_id == pasted.id)
    assert run.emu.message(pasted.id).flags & MessageFlag.SUPPRESS_EMBEDS


async def test_without_manage_messages_the_preview_stays(discord_bot: DiscordRun) -> None:
    run = discord_bot
    await run.app.store.chats.set("discord", run.demo.guild_id, remove_link_message=True)
    pasted = await run.paste(url(CLIP))
    await run.reply_to(pasted)
    assert not run.emu.calls("PATCH /channels/{channel_id}/messages/{message_id}")
    assert not run.emu.message(pasted.id).suppressed_embeds


async def test_manners_no_link_no_bots_auto_download_off(discord_bot: DiscordRun) -> None:
    run = discord_bot
    await run.paste("no links here")
    dm = await run.paste("hello?", channel_id=run.demo.dm_channel_id)
    answer = await run.emu.wait_for_message(run.demo.dm_channel_id, after=dm.id)
    assert answer.content == "I couldn't find a TikTok link in that message."
    await run.app.store.chats.set("discord", run.demo.guild_id, auto_download=False)
    await run.paste(url(CLIP))
    marker = await run.paste(url(CLIP), channel_id=run.demo.dm_channel_id)
    await run.reply_to(marker)
    bot_messages = [
        m for m in run.emu.messages_in(run.demo.channel_id) if m.author_id == run.emu.application_id
    ]
    assert bot_messages == []  # silent in the server: no link, or downloads switched off


async def test_language_of_links_follows_the_users_last_interaction(discord_bot: DiscordRun) -> None:
    run = discord_bot
    inter = await run.command("user", name="sandbox.cook", locale="ru")
    await run.answered(inter)
    reply = await run.reply_to(await run.paste(url(CLIP), channel_id=run.demo.dm_channel_id))
    assert reply.embeds[0]["title"] == "Открыть в TikTok" and "👁 просмотров" in embed_fields(reply)
