"""Slash commands: /start, /help, /post, /user, /hashtag (with a More button), /audio."""

from __future__ import annotations

import logging

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from bot.chat.cards import HASHTAG_PAGE_SIZE, hashtag_card, post_card, profile_card
from bot.chat.commands import (
    parse_post_argument,
    parse_tag,
    parse_username,
    require_metadata,
    user_usage_key,
)
from bot.chat.flow import ChatContext
from bot.chat.i18n import t
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
    async with app.flow.track(ctx, "start"):
        await message.answer(html_text(t(ctx.language, "start")))


async def on_help(message: Message, app: App, ctx: ChatContext) -> None:
    """The link forms and commands."""
    async with app.flow.track(ctx, "help"):
        await message.answer(html_text(t(ctx.language, "help")))


async def on_post(message: Message, command: CommandObject, app: App, ctx: ChatContext) -> None:
    """Stats card of one post."""
    link = parse_post_argument(command.args)
    if link is None:
        await message.reply(html_text(t(ctx.language, "usage.post")))
        return
    try:
        async with app.flow.track(ctx, "post", link.post_id or link.code) as tracker:
            app.flow.check_limits(ctx)
            link = await app.flow.resolve(link)
            tracker.target = link.post_id
            answer = await require_metadata(app.metadata).post(link)
            tracker.backend, tracker.units, tracker.cache_hit = answer.provider, answer.units, answer.cached
            await message.reply(
                render_card(post_card(answer.value, ctx.language), ctx.language, limit=MESSAGE_LIMIT)
            )
    except ServiceError as exc:
        await _fail(message, ctx, exc)


async def on_user(message: Message, command: CommandObject, app: App, ctx: ChatContext) -> None:
    """Profile card of one account."""
    username = parse_username(command.args)
    if username is None:
        await message.reply(html_text(t(ctx.language, user_usage_key(command.args))))
        return
    try:
        async with app.flow.track(ctx, "user", username) as tracker:
            app.flow.check_limits(ctx)
            answer = await require_metadata(app.metadata).profile(username)
            tracker.backend, tracker.units, tracker.cache_hit = answer.provider, answer.units, answer.cached
            await message.reply(
                render_card(profile_card(answer.value, ctx.language), ctx.language, limit=MESSAGE_LIMIT)
            )
    except ServiceError as exc:
        await _fail(message, ctx, exc)


def _more_button(tag: str, cursor: str | None, page: int, lang: str) -> InlineKeyboardMarkup | None:
    if not cursor:
        return None
    data = HashtagMore(tag=tag, cursor=cursor, page=page).pack()
    if len(data.encode()) > 64:  # Telegram's callback_data limit; a tag this long pages no further
        return None
    return InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text=t(lang, "hashtag.more"), callback_data=data)]]
    )


async def _hashtag_page(
    app: App, ctx: ChatContext, tag: str, cursor: str | None, page: int
) -> tuple[str, InlineKeyboardMarkup | None]:
    async with app.flow.track(ctx, "hashtag", tag) as tracker:
        app.flow.check_limits(ctx)
        answer = await require_metadata(app.metadata).hashtag(tag, cursor, limit=HASHTAG_PAGE_SIZE)
        tracker.backend, tracker.units, tracker.cache_hit = answer.provider, answer.units, answer.cached
        card = hashtag_card(
            answer.value, ctx.language, page_number=page, offset=(page - 1) * HASHTAG_PAGE_SIZE
        )
        text = render_card(card, ctx.language, limit=MESSAGE_LIMIT)
        return text, _more_button(tag, answer.value.next_cursor, page + 1, ctx.language)


async def on_hashtag(message: Message, command: CommandObject, app: App, ctx: ChatContext) -> None:
    """First page of a hashtag with a More button."""
    tag = parse_tag(command.args)
    if tag is None:
        await message.reply(html_text(t(ctx.language, "usage.hashtag")))
        return
    try:
        text, markup = await _hashtag_page(app, ctx, tag, None, 1)
        await message.reply(text, reply_markup=markup)
    except ServiceError as exc:
        await _fail(message, ctx, exc)


async def on_hashtag_more(
    query: CallbackQuery, callback_data: HashtagMore, app: App, ctx: ChatContext
) -> None:
    """The next page, edited into the same message."""
    from bot.chat.errors import error_text

    try:
        text, markup = await _hashtag_page(
            app, ctx, callback_data.tag, callback_data.cursor, callback_data.page
        )
    except ServiceError as exc:
        await query.answer(error_text(exc, ctx.language), show_alert=True)
        return
    if query.message is not None and isinstance(query.message, Message):
        await query.message.edit_text(text, reply_markup=markup)
    await query.answer()


async def on_audio(
    message: Message, command: CommandObject, bot: Bot, app: App, ctx: ChatContext, prefs: ChatPrefs
) -> None:
    """Only the sound of a post."""
    link = parse_post_argument(command.args)
    if link is None:
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
