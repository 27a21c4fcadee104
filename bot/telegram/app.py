"""The Telegram frontend: the Bot with its session, the Dispatcher with its routers, and how it runs."""

from __future__ import annotations

import asyncio
import logging

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.types import BotCommand, BotCommandScopeDefault
from structlog.contextvars import bind_contextvars

from bot.chat.i18n import languages, t
from bot.config import TelegramSettings
from bot.telegram.errors import register_error_handler
from bot.telegram.middlewares import ContextMiddleware, UpdateContext
from bot.telegram.polling import IN_FLIGHT_UPDATES, SHUTDOWN_GRACE, Handlers, InboxFeeder, poll
from bot.telegram.routers import build_router
from bot.telegram.session import KeepResponseModels, RawUpdatesSession, RetryAfter
from bot.wiring import App

log = logging.getLogger("tiktok_bot.telegram")

COMMANDS = ("start", "help", "post", "user", "hashtag", "audio")
POLLING_TIMEOUT = 25


def build_bot(settings: TelegramSettings, reply_budget: float = 60.0) -> Bot:
    """A Bot on the configured Bot API server, waiting out flood-control answers within `reply_budget` s."""
    if settings.token is None:
        raise ValueError("TELEGRAM__TOKEN is not set")
    session = RawUpdatesSession(
        api=TelegramAPIServer.from_base(settings.api_url.rstrip("/"), is_local=settings.local_api)
    )
    session.middleware(KeepResponseModels())
    session.middleware(RetryAfter(budget=reply_budget))
    return Bot(
        settings.token.get_secret_value(),
        session=session,
        default=DefaultBotProperties(parse_mode=ParseMode.HTML, link_preview_is_disabled=True),
    )


def build_dispatcher(app: App) -> Dispatcher:
    """The Dispatcher: context middleware on every update kind, the feature routers, the error handler."""
    dp = Dispatcher(app=app)
    dp.update.outer_middleware(UpdateContext(app.metrics))
    middleware = ContextMiddleware(app)
    for observer in (dp.message, dp.channel_post, dp.callback_query, dp.inline_query):
        observer.outer_middleware(middleware)
    dp.include_router(build_router())
    register_error_handler(dp)
    return dp


async def register_commands(bot: Bot) -> None:
    """setMyCommands for every catalogue language (the default scope in English)."""
    for lang in languages():
        commands = [BotCommand(command=name, description=t(lang, f"cmd.{name}")) for name in COMMANDS]
        await bot.set_my_commands(
            commands, scope=BotCommandScopeDefault(), language_code=None if lang == "en" else lang
        )


async def run_telegram(app: App, stop: asyncio.Event) -> None:
    """Long-poll until `stop` is set, then drain in-flight work and close the session."""
    # The frontend's own task: its lines, and those of every task it starts (aiogram's too), say telegram.
    bind_contextvars(platform="telegram")
    bot = build_bot(app.settings.telegram, app.settings.limits.reply_budget)
    dp = build_dispatcher(app)
    try:
        me = await bot.get_me()
        log.info("telegram bot @%s started", me.username)
        await register_commands(bot)
        if app.shared.stream is not None:
            from bot.telegram.replicas import run_replicated

            await run_replicated(app, bot, dp, stop, IN_FLIGHT_UPDATES)
            return
        if app.settings.telegram.webhook_url:
            from bot.telegram.webhook import serve_webhook

            await serve_webhook(dp, bot, app, stop)
            return
        await bot.delete_webhook(drop_pending_updates=False)  # polling and a webhook exclude each other
        handlers = Handlers(IN_FLIGHT_UPDATES)
        feeder = InboxFeeder(dp, bot, app.deliveries, handlers)
        await dp.emit_startup(**feeder.workflow, bot=bot)
        try:
            # What a killed process took and did not answer goes first, then new updates.
            await feeder.replay()
            await poll(feeder, stop, wait_s=POLLING_TIMEOUT)
            await handlers.drain(SHUTDOWN_GRACE)
        finally:
            await dp.emit_shutdown(**feeder.workflow, bot=bot)
    finally:
        await bot.session.close()
