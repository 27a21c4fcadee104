"""A line logged inside a real aiogram handler carries the update's context, bound once where it came in."""

from __future__ import annotations

import io

from sandbox.catalogue import CATALOGUE
from sandbox.telegram import TelegramEmulator
from tests.e2e.conftest import wait_log_line

CLIP = next(p for p in CATALOGUE.posts.values() if p.renditions and p.renditions[-1].file)


async def test_the_reply_line_names_platform_update_chat_and_user(
    json_logs: io.StringIO, tg: TelegramEmulator
) -> None:
    user = tg.add_user("Ann", language_code="en")
    chat = tg.private_chat(user)
    injected = tg.inject_message(chat, CLIP.url, user=user)
    await tg.wait_for(method="sendVideo", chat_id=chat.id, timeout=15)
    line = await wait_log_line(json_logs, "link ok")
    assert line["platform"] == "telegram"
    assert (line["update"], line["chat"], line["user"]) == (str(injected.update_id), chat.id, user.id)
    assert (line["action"], line["target"], line["outcome"]) == ("link", CLIP.id, "ok")
    assert line["level"] == "info" and str(line["logger"]).startswith("tiktok_bot.")
