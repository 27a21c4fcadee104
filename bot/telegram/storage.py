"""The storage chat: where media is uploaded once so inline answers can offer it by file_id."""

from __future__ import annotations

from aiogram import Bot

from bot.chat.interaction import Tracker
from bot.telegram.sender import TelegramSender
from bot.wiring import App
from services.download.models import Want
from services.links import TikTokLink
from services.metadata.models import Post
from services.store.chats import ChatPrefs


async def upload_to_storage(
    bot: Bot, app: App, link: TikTokLink, storage_chat: int, lang: str
) -> tuple[dict[str, str], Post | None, str | None, int]:
    """Upload a post's media to the storage chat (once; the cache remembers) and return its references."""
    assert link.post_id is not None
    sender = TelegramSender(
        bot,
        chat_id=storage_chat,
        lang=lang,
        prefs=ChatPrefs(),
        upload_limit=app.settings.telegram.upload_limit,
        private=False,
    )
    tracker = Tracker(target=link.post_id)
    await app.flow.send_post("telegram", link, sender, Want.VIDEO, tracker)
    refs, post = await app.flow.cached_refs("telegram", link.post_id, Want.VIDEO)
    return refs, post, tracker.backend, tracker.bytes_sent
