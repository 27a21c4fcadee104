"""The last line of defence: an unexpected exception is logged with its traceback and answered briefly."""

from __future__ import annotations

import logging

from aiogram import Dispatcher
from aiogram.types import ErrorEvent

from bot.chat.errors import error_text
from bot.chat.i18n import pick_language
from bot.logs import log_context
from bot.telegram.render import html_text

log = logging.getLogger("tiktok_bot.telegram")


def register_error_handler(dp: Dispatcher) -> None:
    """Install the handler on the dispatcher."""

    @dp.errors()
    async def on_error(event: ErrorEvent) -> bool:
        update = event.update
        message = update.message or update.channel_post
        chat_id = message.chat.id if message else None
        # aiogram calls this outside the update's middlewares: the update's context is bound again here.
        with log_context(platform="telegram", update=str(update.update_id), chat=chat_id):
            log.error("unhandled error in update %s", update.update_id, exc_info=event.exception)
            if message is not None and message.chat.type == "private":
                user = message.from_user
                lang = pick_language(user.language_code if user else None)
                try:
                    await message.answer(html_text(error_text(event.exception, lang)))
                except Exception:
                    log.exception("could not send the apology")
            elif update.callback_query is not None:
                try:
                    lang = pick_language(update.callback_query.from_user.language_code)
                    await update.callback_query.answer(error_text(event.exception, lang), show_alert=True)
                except Exception:
                    log.exception("could not answer the callback")
        return True
