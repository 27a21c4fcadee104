"""Slash commands: /start, /help, /post, /user, /hashtag (with a More button), /audio."""

from __future__ import annotations

import logging
from contextlib import AbstractAsyncContextManager

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from bot.chat.commands import parse_post_argument
from bot.chat.i18n import t
from bot.chat.interaction import INVALID_ARGUMENT, ChatContext
from bot.chat.lookups import NextPage, Shown
from bot.telegram.filters import Where
from bot.telegram.render import MESSAGE_LIMIT, html_text, render_card
from bot.telegram.routers.links import sender_for
from bot.wiring import App
from services.download.models import Want
from services.errors import ServiceError
from services.store.chats import ChatPrefs

log = logging.getLogger("tiktok_bot.telegram")


class HashtagMore(CallbackData, prefix="ht"):
    """The "More" button of a hashtag page: tag, the cursor of the next page, the next page's number."""

    tag: str
    cursor: str
    page: int


async def _fail(message: Message, ctx: ChatContext, exc: BaseException) -> None:
    from bot.chat.errors import error_text, group_error_text

    text = error_text(exc, ctx.language) if ctx.is_private else group_error_text(exc, ctx.language)
    await message.reply(html_text(text))


async def on_start(message: Message, app: App, ctx: ChatContext) -> None:
    """Greeting with what the bot does."""
    async with app.interactions.track(ctx, "start"):
        await message.answer(html_text(t(ctx.language, "start")))


async def on_help(message: Message, app: App, ctx: ChatContext) -> None:
    """The link forms and commands."""
    async with app.interactions.track(ctx, "help"):
        await message.answer(html_text(t(ctx.language, "help")))


def _reply(shown: Shown, lang: str) -> tuple[str, InlineKeyboardMarkup | None]:
    """A lookup's answer as a message: its card with the More button, or the command's usage."""
    if shown.card is None:
        return html_text(t(lang, shown.usage)), None
    return render_card(shown.card, lang, limit=MESSAGE_LIMIT), _more_button(shown.more, lang)


def _more_button(more: NextPage | None, lang: str) -> InlineKeyboardMarkup | None:
    if more is None:
        return None
    data = HashtagMore(tag=more.tag, cursor=more.cursor, page=more.page).pack()
    if len(data.encode()) > 64:  # Telegram's callback_data limit; a tag this long pages no further
        return None
    return InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text=t(lang, "hashtag.more"), callback_data=data)]]
    )


async def _look_up(message: Message, ctx: ChatContext, lookup: AbstractAsyncContextManager[Shown]) -> None:
    """Reply with what a lookup found (or its usage); a service failure as its error text."""
    try:
        async with lookup as shown:
            text, markup = _reply(shown, ctx.language)
            await message.reply(text, reply_markup=markup)
    except ServiceError as exc:
        await _fail(message, ctx, exc)


async def on_post(message: Message, command: CommandObject, app: App, ctx: ChatContext) -> None:
    """Stats card of one post."""
    await _look_up(message, ctx, app.lookups.post(ctx, command.args))


async def on_user(message: Message, command: CommandObject, app: App, ctx: ChatContext) -> None:
    """Profile card of one account."""
    await _look_up(message, ctx, app.lookups.user(ctx, command.args))


async def on_hashtag(message: Message, command: CommandObject, app: App, ctx: ChatContext) -> None:
    """First page of a hashtag with a More button."""
    await _look_up(message, ctx, app.lookups.hashtag(ctx, command.args))


async def on_hashtag_more(
    query: CallbackQuery, callback_data: HashtagMore, app: App, ctx: ChatContext
) -> None:
    """The next page, edited into the same message."""
    from bot.chat.errors import error_text

    page = app.lookups.hashtag_page(ctx, callback_data.tag, callback_data.cursor, callback_data.page)
    try:
        async with page as shown:
            text, markup = _reply(shown, ctx.language)
            if query.message is not None and isinstance(query.message, Message):
                await query.message.edit_text(text, reply_markup=markup)
    except ServiceError as exc:
        await query.answer(error_text(exc, ctx.language), show_alert=True)
        return
    await query.answer()


async def on_audio(
    message: Message, command: CommandObject, bot: Bot, app: App, ctx: ChatContext, prefs: ChatPrefs
) -> None:
    """Only the sound of a post."""
    link = parse_post_argument(command.args)
    if link is None:
        async with app.interactions.track(ctx, "audio", outcome=INVALID_ARGUMENT):
            await message.reply(html_text(t(ctx.language, "usage.audio")))
        return
    await app.flow.deliver(
        ctx, link, sender_for(bot, message, app, ctx, prefs), want=Want.AUDIO, action="audio"
    )


async def on_unknown_command(message: Message, ctx: ChatContext) -> None:
    """An unknown command in a private chat gets the help text rather than silence."""
    await message.answer(html_text(t(ctx.language, "help")))


def build() -> Router:
    """This feature's router, with its handlers registered (a new one per Dispatcher)."""
    router = Router(name="commands")
    router.message.register(on_start, CommandStart())
    router.message.register(on_help, Command("help"))
    router.message.register(on_post, Command("post"))
    router.message.register(on_user, Command("user"))
    router.message.register(on_hashtag, Command("hashtag"))
    router.callback_query.register(on_hashtag_more, HashtagMore.filter())
    router.message.register(on_audio, Command("audio"))
    router.message.register(
        on_unknown_command, Where(F.text.startswith("/")), Where(F.chat.type == "private")
    )
    return router
