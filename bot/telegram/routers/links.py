"""Pasted TikTok links in any chat (private, group, forum topic, channel) answered with their media."""

from __future__ import annotations

import logging

from aiogram import Bot, F, Router
from aiogram.types import Message

from bot.chat.i18n import t
from bot.chat.interaction import ChatContext
from bot.telegram.filters import Where
from bot.telegram.sender import TelegramSender
from bot.wiring import App
from services.links import find_links
from services.store.chats import ChatPrefs

log = logging.getLogger("tiktok_bot.telegram")


def sender_for(bot: Bot, message: Message, app: App, ctx: ChatContext, prefs: ChatPrefs) -> TelegramSender:
    """The MediaSender replying to `message`."""
    return TelegramSender.replying_to(
        bot,
        message,
        lang=ctx.language,
        prefs=prefs,
        upload_limit=app.settings.telegram.upload_limit,
        private=ctx.is_private,
        budget=app.settings.limits.reply_budget,
    )


async def on_links(message: Message, bot: Bot, app: App, ctx: ChatContext, prefs: ChatPrefs) -> None:
    """Reply with the media of each TikTok link in the message (in groups, stay silent without links)."""
    text = message.text or message.caption or ""
    links = [link for link in find_links(text, limit=app.settings.limits.links_per_message) if link.has_media]
    if not links:
        if ctx.is_private and not text.startswith("/"):
            await message.answer(t(ctx.language, "usage.no_link"))
        return
    if not prefs.auto_download:
        return
    sender = sender_for(bot, message, app, ctx, prefs)

    async def queued() -> None:
        await sender.send_text(t(ctx.language, "queued"))

    outcomes = await app.flow.deliver_all(ctx, links, sender, on_queued=queued)
    if prefs.remove_link_message and all(o == "ok" for o in outcomes) and not ctx.is_private:
        try:
            await message.delete()
        except Exception:  # the bot may lack the right; keeping the message is harmless
            log.info("could not delete the link message")


def build() -> Router:
    """This feature's router, with its handlers registered (a new one per Dispatcher)."""
    router = Router(name="links")
    router.message.register(on_links, Where(F.text | F.caption))
    router.channel_post.register(on_links, Where(F.text | F.caption))
    return router
