"""The Telegram frontend: the Bot with its session, the Dispatcher with its routers, and how it runs."""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.types import BotCommand, BotCommandScopeDefault

from bot.chat.i18n import languages, t
from bot.config import TelegramSettings
from bot.telegram.errors import register_error_handler
from bot.telegram.middlewares import ContextMiddleware
from bot.telegram.routers import build_router
from bot.telegram.session import KeepResponseModels, RetryAfter
from bot.wiring import App

log = logging.getLogger("tiktok_bot.telegram")

COMMANDS = ("start", "help", "post", "user", "hashtag", "audio")
# Updates handled at once; more wait at Telegram until one finishes. A held update costs ~180 objects
# (aiogram's middleware chain): a burst of 1,000 held at once made full garbage collections stall the event
# loop for ~100 ms, while LinkFlow serves only LIMITS__CONCURRENCY of them at a time anyway.
IN_FLIGHT_UPDATES = 100
# In-flight replies get this long to finish when the process is asked to stop.
SHUTDOWN_GRACE = 10.0


def build_bot(settings: TelegramSettings, reply_budget: float = 60.0) -> Bot:
    """A Bot on the configured Bot API server, waiting out flood-control answers within `reply_budget` s."""
    if settings.token is None:
        raise ValueError("TELEGRAM__TOKEN is not set")
    session = AiohttpSession(
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


async def drain(dp: Dispatcher, grace: float = SHUTDOWN_GRACE) -> None:
    """Let in-flight updates finish for up to `grace` seconds, then cancel the rest."""
    tasks = set(dp._handle_update_tasks)  # aiogram keeps no public handle on these
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=grace)
    for task in pending:
        task.cancel()
    for task in pending:
        with suppress(asyncio.CancelledError, Exception):
            await task


async def run_telegram(app: App, stop: asyncio.Event) -> None:
    """Long-poll until `stop` is set, then drain in-flight work and close the session."""
    bot = build_bot(app.settings.telegram, app.settings.limits.reply_budget)
    dp = build_dispatcher(app)
    try:
        me = await bot.get_me()
        log.info("telegram bot @%s started", me.username, extra={"platform": "telegram"})
        await register_commands(bot)
        if app.settings.telegram.webhook_url:
            from bot.telegram.webhook import serve_webhook

            await serve_webhook(dp, bot, app.settings.telegram, stop, app)
            return
        await bot.delete_webhook(drop_pending_updates=False)  # polling and a webhook exclude each other
        polling = asyncio.create_task(
            dp.start_polling(
                bot,
                handle_signals=False,
                close_bot_session=False,
                polling_timeout=25,
                tasks_concurrency_limit=IN_FLIGHT_UPDATES,
            )
        )
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({polling, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if stopper in done:
            with suppress(RuntimeError):  # polling may already be stopping
                await dp.stop_polling()
        else:
            stopper.cancel()
        await polling
        await drain(dp)
    finally:
        await bot.session.close()
