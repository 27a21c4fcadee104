"""The Discord bot's slash commands and buttons end to end: defer, follow-ups, ephemeral failures, usage."""

from __future__ import annotations

import pytest

from sandbox.catalogue import Status
from sandbox.discord import MessageFlag, StoredMessage
from services.ratelimit import RateLimits
from tests.e2e.conftest import wait_rows
from tests.e2e.discord.conftest import (
    BIG,
    BY_STATUS,
    CLIP,
    SLIDES,
    DiscordRun,
    UsageTable,
    rendition_sha,
    sha,
    url,
)

EPHEMERAL = int(MessageFlag.EPHEMERAL)


def fields(message: StoredMessage) -> dict[str, str]:
    """The first embed's fields, name → value."""
    return {f["name"]: f["value"] for f in message.embeds[0].get("fields", [])}


def buttons(message: StoredMessage) -> list[dict[str, object]]:
    """Every button of a message, in order."""
    return [c for row in message.components for c in row.get("components", [])]


async def test_post_defers_then_fills_the_thinking_message_with_the_card(
    discord_bot: DiscordRun, usage: UsageTable
) -> None:
    run = discord_bot
    inter = await run.command("post", link=url(CLIP), locale="en-US")
    (message,) = await run.answered(inter)
    callback = run.emu.interaction_responses(inter.id)[0]
    assert callback.payload == {"type": 5}  # deferred at once, publicly
    assert not message.ephemeral and message.id == inter.original_message_id
    embed = message.embeds[0]
    assert embed["author"]["name"] == "Sandbox Cook (@sandbox.cook)" and embed["url"] == url(CLIP)
    assert fields(message)["❤️ likes"] == "240K"
    await run.settled()
    (row,) = await usage.rows(action="post")
    assert row["outcome"] == "ok" and row["target"] == CLIP and row["backend"] == "ensembledata"
    assert row["units"] == 1


async def test_commands_speak_the_users_language(discord_bot: DiscordRun) -> None:
    run = discord_bot
    inter = await run.command("post", link=url(CLIP))  # bob's client is in Russian
    (message,) = await run.answered(inter)
    assert message.embeds[0]["title"] == "Открыть в TikTok" and "❤️ лайков" in fields(message)
    bad = await run.command("post", link="not a link", locale="ru")
    (usage_line,) = await run.answered(bad)
    assert usage_line.ephemeral and usage_line.content.startswith("Отправьте /post")


async def test_a_bad_argument_is_answered_ephemerally_at_once(
    discord_bot: DiscordRun, usage: UsageTable
) -> None:
    run = discord_bot
    for name, option in (("post", "link"), ("audio", "link"), ("download", "link"), ("hashtag", "tag")):
        inter = await run.command(name, locale="en-US", **{option: "%%%"})
        (message,) = await run.answered(inter)
        callback = run.emu.interaction_responses(inter.id)[0]
        assert callback.payload["type"] == 4 and callback.flags == EPHEMERAL
        assert message.ephemeral and message.content.startswith(f"Send /{name}")
    await run.settled()
    rows = await usage.rows(outcome="invalid_argument")
    assert [r["action"] for r in rows] == ["post", "audio", "download", "hashtag"]


async def test_failures_after_the_defer_are_ephemeral(discord_bot: DiscordRun, usage: UsageTable) -> None:
    run = discord_bot
    private = BY_STATUS[Status.PRIVATE]
    cases = [
        ("download", {"link": url(private)}, "This post is private"),
        ("user", {"name": "nobody.here.at.all"}, "There's no TikTok account with that name."),
    ]
    for name, options, text in cases:
        inter = await run.command(name, locale="en-US", **options)
        await run.emu.wait_for(lambda c, i=inter.id: c.interaction_id == i and c.flags == EPHEMERAL)  # type: ignore[misc]
        (message,) = await run.answered(inter)
        assert message.ephemeral and message.content.startswith(text)
        original = run.emu.message(inter.original_message_id or 0)
        assert original.deleted  # the public "thinking…" placeholder went away
    await run.settled()
    assert [r["outcome"] for r in await usage.rows(action="download")] == ["unavailable:private"]
    assert [r["outcome"] for r in await usage.rows(action="user")] == ["user_not_found"]


async def test_rate_limited_requests_are_refused_ephemerally(
    discord_bot: DiscordRun, usage: UsageTable
) -> None:
    run = discord_bot
    run.app.interactions.limits = RateLimits(user_per_minute=1, chat_per_minute=30)
    first = await run.command("user", name="sandbox.cook", locale="en-US")
    await run.answered(first)
    second = await run.command("user", name="sandbox.cook", locale="en-US")
    (message,) = await run.answered(second)
    assert message.ephemeral and message.content.startswith("Slow down a little")
    # Every lookup is refused before its defer, /hashtag too: no public "thinking…" flashes first.
    third = await run.command("hashtag", tag="food", locale="en-US")
    (message,) = await run.answered(third)
    callback = run.emu.interaction_responses(third.id)[0]
    assert callback.payload["type"] == 4 and callback.flags == EPHEMERAL
    assert message.content.startswith("Slow down a little")
    await run.settled()
    assert [r["outcome"] for r in await usage.rows(action="user")] == ["ok", "rate_limited"]
    assert [r["outcome"] for r in await usage.rows(action="hashtag")] == ["rate_limited"]


async def test_user_shows_the_profile_card(discord_bot: DiscordRun) -> None:
    run = discord_bot
    inter = await run.command("user", name="@sandbox.cook", locale="en-US")
    (message,) = await run.answered(inter)
    embed = message.embeds[0]
    assert embed["title"] == "Sandbox Cook (@sandbox.cook)" and embed["author"]["name"] == "@sandbox.cook"
    assert fields(message)["👥 followers"] == "1.2M" and "verified" in embed["footer"]["text"]


async def test_hashtag_pages_with_the_more_button_to_the_end(
    discord_bot: DiscordRun, usage: UsageTable
) -> None:
    run = discord_bot
    inter = await run.command("hashtag", tag="#food", locale="en-US")
    (message,) = await run.answered(inter)
    assert message.embeds[0]["title"] == "#food"
    seen = [message.embeds[0]["description"]]
    assert seen[0].startswith("[1. @sandbox.cook") and seen[0].count("\n") == 4
    for page in range(2, 10):
        (button,) = buttons(run.emu.message(message.id))
        assert button["label"] == "More ▶" and str(button["custom_id"]).startswith(f"ht:{page}:")
        click = await run.emu.click_component(message.id, str(button["custom_id"]), user_id=run.demo.admin_id)
        await run.emu.wait_for(lambda c, i=click.id: c.interaction_id == i and c.method == "PATCH")  # type: ignore[misc]
        current = run.emu.message(message.id)
        seen.append(current.embeds[0]["description"])
        assert f"page {page}" in current.embeds[0]["footer"]["text"]
        if not buttons(current):
            break
    assert seen[1].startswith(r"[6. @sandbox.cook")
    rows = [line for page in seen for line in page.split("\n")]
    assert len(rows) == 25 and len(set(rows)) == 25  # every post once, in five pages
    assert buttons(run.emu.message(message.id)) == []
    await run.settled()
    assert len(await usage.rows(action="hashtag", outcome="ok")) == 5


async def test_audio_sends_only_the_sound(discord_bot: DiscordRun, usage: UsageTable) -> None:
    run = discord_bot
    inter = await run.command("audio", link=url(CLIP), locale="en-US")
    (message,) = await run.answered(inter)
    assert [a.sha256 for a in message.attachments] == [sha("sound.mp3")]
    assert message.attachments[0].filename.endswith(".mp3")
    await run.settled()
    (row,) = await usage.rows(action="audio")
    assert row["outcome"] == "ok"


@pytest.mark.parametrize("where", ["channel", "dm"])
async def test_download_video_and_slideshow(discord_global: DiscordRun, where: str) -> None:
    run = discord_global
    channel = run.demo.channel_id if where == "channel" else run.demo.dm_channel_id
    inter = await run.command("download", link=url(CLIP), channel_id=channel)
    (message,) = await run.answered(inter)
    assert [a.sha256 for a in message.attachments] == [sha("clip.mp4")] and not message.ephemeral
    inter = await run.command("download", link=url(SLIDES), channel_id=channel)
    (message,) = await run.answered(inter)
    photos = [sha("photo1.jpg"), sha("photo2.jpg"), sha("photo3.jpg")]
    assert [a.sha256 for a in message.attachments] == [*photos, sha("sound.mp3")]


async def test_download_again_resends_without_downloading(discord_bot: DiscordRun, usage: UsageTable) -> None:
    run = discord_bot
    first = await run.command("download", link=url(CLIP))
    (uploaded,) = await run.answered(first)
    await run.settled()
    downloads = run.media_downloads(CLIP)
    second = await run.command("download", link=f"https://www.tiktok.com/@x/video/{CLIP}?lang=en")
    (resent,) = await run.answered(second)
    assert run.media_downloads(CLIP) == downloads
    attachment = uploaded.attachments[0]
    assert resent.content.startswith(f"{run.emu.base_url}/attachments/{uploaded.channel_id}/{attachment.id}/")
    await run.settled()
    assert [r["cache_hit"] for r in await usage.rows(action="download")] == [0, 1]


async def test_download_over_the_interactions_limit(discord_bot: DiscordRun, usage: UsageTable) -> None:
    run = discord_bot
    run.emu.set_upload_limit(run.demo.guild_id, 7 * 1000 * 1000)
    inter = await run.command("download", link=url(BIG))
    (message,) = await run.answered(inter)
    assert [a.sha256 for a in message.attachments] == [rendition_sha(BIG, "lowest_540_0")]

    run.emu.set_upload_limit(run.demo.guild_id, 20_000)  # nothing fits: the stats and the link instead
    inter = await run.command("download", link=url(CLIP), locale="en-US")
    (message,) = await run.answered(inter)
    assert message.attachments == [] and not message.ephemeral
    assert (
        message.content.startswith("This video is too large to send here")
        and f"<{url(CLIP)}>" in message.content
    )
    assert fields(message)["👁 views"] == "1.5M"
    await run.settled()
    assert [r["outcome"] for r in await usage.rows(action="download")] == ["ok", "too_large"]


async def test_settings_for_managers_only_with_toggle_buttons(
    discord_bot: DiscordRun, usage: UsageTable
) -> None:
    run = discord_bot
    with pytest.raises(PermissionError):  # hidden from members without Manage Server
        await run.command("settings")
    refused = await run.emu.invoke_command(
        "settings", user_id=run.demo.member_id, channel_id=run.demo.channel_id, check_permissions=False
    )
    (message,) = await run.answered(refused)
    assert message.ephemeral and "Управлять сервером" in message.content  # bob's client is in Russian

    inter = await run.command("settings", user_id=run.demo.admin_id)
    (panel,) = await run.answered(inter)
    assert panel.ephemeral and panel.content == "**Settings for this chat**"
    labels = {b["custom_id"]: b["label"] for b in buttons(panel)}
    assert labels["st:captions"] == "✅ Captions with stats"
    assert labels["st:remove_link_message"] == "⬜ Hide the link's preview (needs Manage Messages)"
    click = await run.emu.click_component(panel.id, "st:captions", user_id=run.demo.admin_id)
    await run.emu.wait_for(lambda c: c.interaction_id == click.id)
    assert {b["custom_id"]: b["label"] for b in buttons(run.emu.message(panel.id))}["st:captions"] == (
        "⬜ Captions with stats"
    )
    prefs = await run.app.store.chats.get("discord", run.demo.guild_id)
    assert prefs.captions is False
    click = await run.emu.click_component(panel.id, "st:language", user_id=run.demo.admin_id)
    await run.emu.wait_for(lambda c: c.interaction_id == click.id)
    assert (await run.app.store.chats.get("discord", run.demo.guild_id)).language == "en"

    # Captions are now off in this server: the next link comes without the card.
    pasted = await run.paste(url(CLIP))
    reply = await run.reply_to(pasted)
    assert reply.embeds == [] and reply.attachments
    await run.settled()
    outcomes = [(r["target"], r["outcome"]) for r in await usage.rows(action="settings")]
    assert outcomes == [(None, "not_allowed"), (None, "ok"), ("captions", "ok"), ("language", "ok")]


async def test_a_stale_settings_button_is_answered_and_logged(discord_bot: DiscordRun) -> None:
    run = discord_bot
    inter = await run.command("settings", user_id=run.demo.admin_id)
    (panel,) = await run.answered(inter)
    before = await run.app.store.chats.get("discord", run.demo.guild_id)
    # A panel sent by an older version of the bot can carry a setting this one no longer has.
    stale = {"type": 2, "style": 2, "label": "Old setting", "custom_id": "st:old_setting"}
    run.emu.world.messages[panel.id].components[-1]["components"].append(stale)
    click = await run.emu.click_component(
        panel.id, "st:old_setting", user_id=run.demo.admin_id, locale="en-US"
    )
    (message,) = await run.answered(click)
    assert message.ephemeral and message.content == "Sorry, that button has expired. Send the command again."
    assert await run.app.store.chats.get("discord", run.demo.guild_id) == before
    rows = await wait_rows(run.app, "settings", 2)
    assert [(r["target"], r["outcome"]) for r in rows] == [(None, "ok"), ("old_setting", "stale")]


async def test_settings_in_a_dm_belong_to_that_dm(discord_global: DiscordRun) -> None:
    run = discord_global
    inter = await run.command("settings", channel_id=run.demo.dm_channel_id)
    (panel,) = await run.answered(inter)
    click = await run.emu.click_component(panel.id, "st:slideshow_sound", user_id=run.demo.member_id)
    await run.emu.wait_for(lambda c: c.interaction_id == click.id)
    assert (await run.app.store.chats.get("discord", run.demo.dm_channel_id)).slideshow_sound is False
    assert (await run.app.store.chats.get("discord", run.demo.guild_id)).slideshow_sound is True
    reply = await run.reply_to(await run.paste(url(SLIDES), channel_id=run.demo.dm_channel_id))
    assert [a.filename.rsplit(".", 1)[1] for a in reply.attachments] == ["jpg", "jpg", "jpg"]


async def test_stats_for_operators_only(discord_bot: DiscordRun, usage: UsageTable) -> None:
    run = discord_bot
    await run.reply_to(await run.paste(url(CLIP)))
    await wait_rows(run.app, "link")  # the reply lands just before its usage row is written
    refused = await run.command("stats", locale="en-US")
    (message,) = await run.answered(refused)
    assert message.ephemeral and message.content == "Sorry, this command is for the bot's operators."
    inter = await run.command("stats", user_id=run.demo.admin_id)
    (report,) = await run.answered(inter)
    callback = run.emu.interaction_responses(inter.id)[0]
    assert callback.payload == {"type": 5, "data": {"flags": EPHEMERAL}}
    assert report.ephemeral and report.content.count("```") == 8
    assert "Usage — today" in report.content and "requests 2" in report.content
    # Per backend since start-up, and the breaker now.
    assert "ttsave: 1 req, 1 ok" in report.content and "100% served" in report.content
    assert "breaker closed — up" in report.content
    await run.settled()
    assert [r["outcome"] for r in await usage.rows(action="stats")] == ["not_allowed", "ok"]
