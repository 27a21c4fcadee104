"""/settings: an inline keyboard toggling the chat's settings (admins in groups, anyone in private)."""

from __future__ import annotations

from functools import partial

from aiogram import Bot, Router
from aiogram.enums import ChatMemberStatus
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from bot.chat.i18n import t
from bot.chat.interaction import NOT_ALLOWED, ChatContext
from bot.chat.settings import STALE, TOGGLES
from bot.telegram.render import html_text
from bot.wiring import App
from services.store.chats import ChatPrefs

ADMIN_STATUSES = {ChatMemberStatus.CREATOR, ChatMemberStatus.ADMINISTRATOR}


class SettingsToggle(CallbackData, prefix="st"):
    """A settings button: which setting to flip (or `language` to cycle)."""

    name: str


def settings_keyboard(prefs: ChatPrefs, lang: str) -> InlineKeyboardMarkup:
    """One button per setting showing its state; pressing flips it."""
    rows = []
    for name in TOGGLES:
        state = "✅" if getattr(prefs, name) else "⬜️"
        rows.append(
            [
                InlineKeyboardButton(
                    text=f"{state} {t(lang, f'settings.{name}')}",
                    callback_data=SettingsToggle(name=name).pack(),
                )
            ]
        )
    rows.append(
        [
            InlineKeyboardButton(
                text=f"🎞 {t(lang, 'settings.quality')}: {t(lang, f'settings.quality.{prefs.quality}')}",
                callback_data=SettingsToggle(name="quality").pack(),
            )
        ]
    )
    language = prefs.language if prefs.language != "auto" else t(lang, "settings.language.auto")
    rows.append(
        [
            InlineKeyboardButton(
                text=f"🌐 {t(lang, 'settings.language')}: {language}",
                callback_data=SettingsToggle(name="language").pack(),
            )
        ]
    )
    return InlineKeyboardMarkup(inline_keyboard=rows)


async def may_change_settings(bot: Bot, ctx: ChatContext, message: Message | None) -> bool:
    """Anyone in a private chat; in groups and channels only the chat's administrators."""
    if ctx.is_private:
        return True
    if message is not None and message.sender_chat is not None and message.sender_chat.id == ctx.chat_id:
        return True  # an anonymous administrator posting as the group
    if ctx.user_id is None:
        return False
    member = await bot.get_chat_member(ctx.chat_id, int(ctx.user_id))
    return member.status in ADMIN_STATUSES


async def on_settings(message: Message, bot: Bot, app: App, ctx: ChatContext, prefs: ChatPrefs) -> None:
    """Show the settings keyboard, or a polite refusal to non-admins."""
    allowed = partial(may_change_settings, bot, ctx, message)
    async with app.settings_panel.show(ctx, prefs, allowed) as shown:
        if shown.outcome == NOT_ALLOWED:
            await message.reply(html_text(t(shown.language, "settings.admins_only")))
        else:
            await message.reply(
                f"<b>{html_text(t(shown.language, 'settings.title'))}</b>",
                reply_markup=settings_keyboard(shown.prefs, shown.language),
            )


async def on_toggle(
    query: CallbackQuery,
    callback_data: SettingsToggle,
    bot: Bot,
    app: App,
    ctx: ChatContext,
    prefs: ChatPrefs,
) -> None:
    """Flip one setting; it applies to the next message at once."""
    allowed = partial(may_change_settings, bot, ctx, None)
    language = query.from_user.language_code
    press = app.settings_panel.toggle(
        ctx, ctx.chat_id, prefs, callback_data.name, allowed, user_language=language
    )
    async with press as shown:
        if shown.outcome == NOT_ALLOWED:
            await query.answer(t(shown.language, "settings.admins_only"), show_alert=True)
        elif shown.outcome == STALE:
            await query.answer(t(shown.language, "error.stale"))
        else:
            if isinstance(query.message, Message):
                keyboard = settings_keyboard(shown.prefs, shown.language)
                await query.message.edit_reply_markup(reply_markup=keyboard)
            await query.answer(t(shown.language, "settings.saved"))


def build() -> Router:
    """This feature's router, with its handlers registered (a new one per Dispatcher)."""
    router = Router(name="settings")
    router.message.register(on_settings, Command("settings"))
    router.callback_query.register(on_toggle, SettingsToggle.filter())
    return router
