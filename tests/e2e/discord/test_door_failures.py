"""Each way TikTok's front door can turn the bot away, as a private chat reads it and the usage log says.

The web backend alone, going out directly (no proxy to bench): every visitor session it tries meets the fault.
"""

from __future__ import annotations

import pytest

from sandbox.runner import Sandbox
from sandbox.telegram import TelegramEmulator
from sandbox.tiktok import TikTokEmulator
from tests.e2e.discord.conftest import CLIP, DiscordRun, UsageTable, post, url


@pytest.fixture
def extra_env() -> dict[str, str]:
    """The web backend alone."""
    return {"DOWNLOAD__BACKENDS": "web"}


@pytest.mark.parametrize(
    ("fault", "count", "outcome", "english"),
    [
        ("challenge", 6, "challenge_failed", "anti-bot check"),  # solved, then challenged again: no loop
        ("empty_shell", 3, "empty_shell", "without the video"),
        ("ip_blocked", 3, "ip_blocked", "not a deleted post"),
        ("login", 3, "login_wall", "asked for a login"),
        ("cdn_403", 12, "cdn_rejected", "video servers refused"),
        ("page_500", 9, "upstream_5xx", "server error"),
    ],
)
async def test_each_door_failure_has_its_outcome_and_wording(
    discord_bot: DiscordRun,
    tg: TelegramEmulator,
    sandbox: Sandbox,
    usage: UsageTable,
    fault: str,
    count: int,
    outcome: str,
    english: str,
) -> None:
    tiktok = sandbox.get(TikTokEmulator)
    tiktok.set_door(
        max_answer=1000
    )  # quick solves: the unsolvable case (a full 10^6 scan) is in test_door.py
    # Telegram, a private chat: every visitor session the backend tries meets the fault.
    tiktok.fault_next(fault, count=count)
    user = tg.add_user("Eve", language_code="en")
    chat = tg.private_chat(user)
    mark = tg.mark()
    tg.inject_message(chat, post(CLIP).url, user=user)
    call = await tg.wait_for(method="sendMessage", chat_id=chat.id, after=mark, timeout=20)
    assert english in call.params["text"] and "deleted or is no longer" not in call.params["text"]
    # Discord, a DM.
    tiktok.fault_next(fault, count=count)
    reply = await discord_bot.reply_to(
        await discord_bot.paste(url(CLIP), channel_id=discord_bot.demo.dm_channel_id), timeout=30
    )
    assert english in reply.content and not reply.attachments
    await discord_bot.settled()
    rows = await usage.rows(action="link", target=CLIP)
    assert [(r["platform"], r["outcome"]) for r in rows] == [("telegram", outcome), ("discord", outcome)]
