"""/privacy: what the bot stores about you, and a button that deletes it."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from bot.chat.i18n import t
from bot.chat.interaction import ChatContext
from bot.telegram.filters import Where
from bot.telegram.render import html_text
from bot.wiring import App

DELETE_DATA = "privacy:delete"


async def on_privacy(message: Message, app: App, ctx: ChatContext) -> None:
    """Count the user's usage rows and offer to delete them."""
    if ctx.user_id is None:
        return
    rows = await app.store.usage.rows_for_user("telegram", ctx.user_id)
    hashed = t(ctx.language, "privacy.hashed") if app.settings.database.hash_user_ids else ""
    text = t(ctx.language, "privacy.text", count=len(rows), hashed=hashed)
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=t(ctx.language, "privacy.delete"), callback_data=DELETE_DATA)]
        ]
    )
    await message.reply(html_text(text), reply_markup=keyboard)
    # Recorded after counting, so the answer matches what the user saw.
    async with app.interactions.track(ctx, "privacy"):
        pass


async def on_delete(query: CallbackQuery, app: App, ctx: ChatContext) -> None:
    """Delete every usage row of this user (on Telegram) and say how many."""
    await app.store.usage.flush()  # rows still queued belong to the user too
    count = await app.store.usage.delete_user("telegram", query.from_user.id)
    text = t(ctx.language, "privacy.deleted", count=count)
    if isinstance(query.message, Message):
        await query.message.edit_text(html_text(text))
    await query.answer()


def build() -> Router:
    """This feature's router, with its handlers registered (a new one per Dispatcher)."""
    router = Router(name="privacy")
    router.message.register(on_privacy, Command("privacy"))
    router.callback_query.register(on_delete, Where(F.data == DELETE_DATA))
    return router
