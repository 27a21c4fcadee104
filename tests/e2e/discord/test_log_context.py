"""A line logged inside a real discord.py handler carries the event's context, bound once where it came in."""

from __future__ import annotations

import io

from tests.e2e.conftest import wait_log_line
from tests.e2e.discord.conftest import CLIP, DiscordRun, url


async def test_the_reply_line_names_platform_message_chat_and_user(
    json_logs: io.StringIO, discord_bot: DiscordRun
) -> None:
    pasted = await discord_bot.paste(url(CLIP))
    await discord_bot.reply_to(pasted)
    line = await wait_log_line(json_logs, "link ok")
    assert line["platform"] == "discord"
    assert (line["update"], line["chat"], line["user"]) == (
        f"message:{pasted.id}",
        pasted.channel_id,
        pasted.author_id,
    )
    assert (line["action"], line["outcome"]) == ("link", "ok")


async def test_a_slash_command_line_names_the_interaction(
    json_logs: io.StringIO, discord_bot: DiscordRun
) -> None:
    inter = await discord_bot.command("user", name="sandbox.cook", locale="en-US")
    await discord_bot.answered(inter)
    line = await wait_log_line(json_logs, "user ok")
    assert (line["platform"], line["update"]) == ("discord", f"interaction:{inter.id}")
    assert line["user"] == discord_bot.demo.member_id and line["chat"] == discord_bot.demo.channel_id
