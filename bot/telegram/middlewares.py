"""Per-update context: who and where, the chat's settings and the reply language."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.dispatcher.middlewares.user_context import EVENT_CONTEXT_KEY, EventContext
from aiogram.types import CallbackQuery, Chat, InlineQuery, Message, TelegramObject, Update, User

from bot.chat.i18n import pick_language
from bot.chat.interaction import ChatContext
from bot.logs import log_context
from bot.metrics import Metrics
from bot.wiring import App

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


def _chat_and_user(event: TelegramObject) -> tuple[Chat | None, User | None]:
    if isinstance(event, Message):
        return event.chat, event.from_user
    if isinstance(event, CallbackQuery):
        chat = event.message.chat if event.message is not None else None
        return chat, event.from_user
    if isinstance(event, InlineQuery):
        return None, event.from_user
    return None, None


class ContextMiddleware(BaseMiddleware):
    """Puts `ctx` (ChatContext), `prefs` (ChatPrefs) and `lang` into every handler's data."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        """Compute the context, then call the handler."""
        chat, user = _chat_and_user(event)
        chat_id: int | str = chat.id if chat is not None else (user.id if user is not None else 0)
        chat_type = chat.type if chat is not None else "inline"
        prefs = await self.app.store.chats.get("telegram", chat_id)
        lang = pick_language(user.language_code if user else None, prefs.language)
        data["prefs"] = prefs
        data["lang"] = lang
        data["ctx"] = ChatContext(
            platform="telegram",
            chat_id=chat_id,
            chat_type=str(chat_type),
            user_id=user.id if user is not None else None,
            language=lang,
        )
        return await handler(event, data)


class UpdateContext(BaseMiddleware):
    """Counts every update the dispatcher takes, by kind (message, callback_query...), and binds platform,
    update id, chat and user to every line logged while it is handled."""

    # One middleware for both: each layer of aiogram's chain is a coroutine and a partial more per update.
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        """Count, bind (aiogram's own middleware has found the chat and user), then pass on."""
        update = event if isinstance(event, Update) else None
        self.metrics.received(
            "telegram", update.event_type if update is not None else type(event).__name__.lower()
        )
        where: EventContext | None = data.get(EVENT_CONTEXT_KEY)
        with log_context(
            platform="telegram",
            update=str(update.update_id) if update is not None else None,  # as the inbox keys it
            chat=where.chat_id if where is not None else None,
            user=where.user_id if where is not None else None,
        ):
            return await handler(event, data)
