"""Slash commands go through the inbox: stored on arrival, noted deferred, completed with their row."""

from __future__ import annotations

import asyncio

from tests.e2e.discord.conftest import CLIP, DiscordRun, url


async def test_a_command_is_stored_noted_deferred_and_completed(discord_bot: DiscordRun) -> None:
    run = discord_bot
    inter = await run.command("post", link=url(CLIP), locale="en-US")
    await run.answered(inter)
    await run.settled()
    db = run.app.store.db
    for _ in range(200):
        rows = await db.fetchall(
            "SELECT key, state, done_at IS NOT NULL FROM inbox WHERE kind = 'interaction'"
        )
        if rows and rows[0][2]:
            break
        await asyncio.sleep(0.01)
    assert rows == [(f"interaction:{inter.id}", "deferred", 1)]
    assert await db.fetchall("SELECT action, outcome FROM usage WHERE action = 'post'") == [("post", "ok")]
