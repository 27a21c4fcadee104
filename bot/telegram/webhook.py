"""Webhook mode: register the webhook with a secret token and serve updates over HTTP, with /healthz."""

from __future__ import annotations

import asyncio
import logging
import secrets
from contextlib import suppress
from urllib.parse import urlsplit

from aiogram import Bot, Dispatcher
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web

from bot.config import TelegramSettings
from bot.health import build_health_app, listen_address
from bot.wiring import App

log = logging.getLogger("tiktok_bot.telegram")


def build_webhook_app(
    dp: Dispatcher, bot: Bot, path: str, secret: str, ready: asyncio.Event, app: App
) -> tuple[web.Application, SimpleRequestHandler]:
    """The health app (GET /healthz) plus POST `path`, which feeds the dispatcher (401 without the secret)."""
    handler = SimpleRequestHandler(dispatcher=dp, bot=bot, secret_token=secret)
    web_app = build_health_app(app, ready)
    web_app.router.add_post(path, handler.handle)
    return web_app, handler


async def serve_webhook(
    dp: Dispatcher, bot: Bot, settings: TelegramSettings, stop: asyncio.Event, app: App
) -> None:
    """Register the webhook, serve until `stop`, then let in-flight updates finish."""
    assert settings.webhook_url is not None
    secret = (
        settings.webhook_secret.get_secret_value() if settings.webhook_secret else secrets.token_urlsafe(32)
    )
    path = urlsplit(settings.webhook_url).path or "/"
    ready = asyncio.Event()
    web_app, handler = build_webhook_app(dp, bot, path, secret, ready, app)
    runner = web.AppRunner(web_app, access_log=None, handle_signals=False)
    await runner.setup()
    host, port = listen_address(settings.webhook_listen)
    site = web.TCPSite(runner, host, port)
    await site.start()
    try:
        await bot.set_webhook(
            settings.webhook_url, secret_token=secret, allowed_updates=dp.resolve_used_update_types()
        )
        ready.set()
        log.info("webhook registered; serving on %s:%s%s", host, port, path, extra={"platform": "telegram"})
        await stop.wait()
    finally:
        ready.clear()
        tasks = set(handler._background_feed_update_tasks)  # aiogram keeps no public handle on these
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=10)
            for task in pending:
                task.cancel()
                with suppress(asyncio.CancelledError, Exception):
                    await task
        await runner.cleanup()
