"""Discord under flood control: typing never costs a reply; a 429 past the budget is its own outcome."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.e2e.discord.conftest import CLIP, DiscordRun, UsageTable, sha, url
from tests.e2e.test_telegram_hardening import assert_clean, hostile_post


async def test_typing_refused_with_long_429s_still_delivers(
    discord_bot: DiscordRun, usage: UsageTable, caplog: pytest.LogCaptureFixture
) -> None:
    run = discord_bot
    # Past discord.py's max_ratelimit_timeout: it raises RateLimited instead of waiting.
    run.emu.fault_next("429", count=20, method="POST", path="/channels/*/typing", retry_after=90)
    pasted = await run.paste(url(CLIP))
    reply = await run.reply_to(pasted)
    assert [a.sha256 for a in reply.attachments] == [sha("clip.mp4")]
    await run.settled()
    (row,) = await usage.rows(action="link")
    assert row["outcome"] == "ok"
    assert not [r for r in caplog.records if r.exc_info is not None]


async def test_a_message_429_past_the_budget_is_reply_failed(
    discord_bot: DiscordRun, usage: UsageTable, caplog: pytest.LogCaptureFixture
) -> None:
    run = discord_bot
    run.emu.fault_next("429", count=20, method="POST", path="/channels/*/messages", retry_after=90)
    await run.paste(url(CLIP))
    async with asyncio.timeout(20):
        while not (rows := await usage.rows(action="link")):  # noqa: ASYNC110 -- no reply to wait for
            await asyncio.sleep(0.05)
    assert [r["outcome"] for r in rows] == ["reply_failed:flood"]
    assert not [r for r in caplog.records if r.exc_info is not None]
    failed = [r for r in caplog.records if "reply not delivered" in r.getMessage()]
    assert len(failed) == 1 and failed[0].levelno == logging.WARNING


async def test_bidi_and_invisible_characters_never_reach_an_embed(
    discord_bot: DiscordRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = discord_bot
    hostile = hostile_post(monkeypatch)
    reply = await run.reply_to(await run.paste(hostile.url))
    (embed,) = reply.embeds
    assert embed["author"]["name"] == "Nickgnp.exe (@rlo.cook)"
    assert embed["description"].startswith("Safetext #tag")
    for text in (embed["author"]["name"], embed["description"], embed.get("footer", {}).get("text", "")):
        assert_clean(text)
