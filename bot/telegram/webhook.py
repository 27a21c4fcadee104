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
from bot.metrics import Metrics, metrics_handler

log = logging.getLogger("tiktok_bot.telegram")


def listen_address(value: str) -> tuple[str, int]:
    """`host:port` (or `:port`) as a pair."""
    host, _, port = value.rpartition(":")
    return (host or "0.0.0.0"), int(port)


def build_webhook_app(
    dp: Dispatcher, bot: Bot, path: str, secret: str, ready: asyncio.Event, metrics: Metrics | None = None
) -> tuple[web.Application, SimpleRequestHandler]:
    """The aiohttp app: POST `path` feeds the dispatcher (401 without the secret); GET /healthz, /metrics."""
    handler = SimpleRequestHandler(dispatcher=dp, bot=bot, secret_token=secret)
    app = web.Application()
    app.router.add_post(path, handler.handle)

    async def healthz(request: web.Request) -> web.Response:
        status = 200 if ready.is_set() else 503
        return web.json_response({"ready": ready.is_set()}, status=status)

    app.router.add_get("/healthz", healthz)
    if metrics is not None:
        app.router.add_get("/metrics", metrics_handler(metrics))
    return app, handler


async def serve_webhook(
    dp: Dispatcher, bot: Bot, settings: TelegramSettings, stop: asyncio.Event, metrics: Metrics | None = None
) -> None:
    """Register the webhook, serve until `stop`, then let in-flight updates finish."""
    assert settings.webhook_url is not None
    secret = (
        settings.webhook_secret.get_secret_value() if settings.webhook_secret else secrets.token_urlsafe(32)
    )
    path = urlsplit(settings.webhook_url).path or "/"
    ready = asyncio.Event()
    app, handler = build_webhook_app(dp, bot, path, secret, ready, metrics)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
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
