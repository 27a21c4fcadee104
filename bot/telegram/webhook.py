"""Webhook mode: register the webhook with a secret token and serve updates, with /healthz and /metrics.

Each update is stored in the inbox before the HTTP 200 (concurrent requests share one transaction); an update
Telegram sends again because an earlier attempt got no 2xx is recognised and answered only once.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any
from urllib.parse import urlsplit

from aiogram import Bot, Dispatcher
from aiogram.types import Update
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web

from bot.health import build_health_app, listen_address
from bot.telegram.polling import IN_FLIGHT_UPDATES, SHUTDOWN_GRACE, Handlers, InboxFeeder
from bot.wiring import App
from services.errors import StoreError

log = logging.getLogger("tiktok_bot.telegram")


class InboxRequestHandler(SimpleRequestHandler):
    """aiogram's webhook handler, storing each update before answering 200."""

    def __init__(self, feeder: InboxFeeder, **kwargs: Any) -> None:
        super().__init__(dispatcher=feeder.dp, bot=feeder.bot, **kwargs)
        self.feeder = feeder

    async def _handle_request_background(self, bot: Bot, request: web.Request) -> web.Response:
        payload = await request.text()
        update = Update.model_validate_json(payload, context={"bot": bot})
        try:
            await self.feeder.take([update], [payload])
        except StoreError as exc:
            # No 2xx: Telegram delivers it again later, when the disk may have recovered.
            log.error("could not store a webhook update: %s", exc)
            return web.Response(status=503, text="not stored")
        return web.json_response({})


def build_webhook_app(
    feeder: InboxFeeder, path: str, secret: str, ready: asyncio.Event, app: App
) -> tuple[web.Application, InboxRequestHandler]:
    """The health app (GET /healthz, /metrics) plus POST `path`, which feeds the inbox (401 without the
    secret)."""
    handler = InboxRequestHandler(feeder, secret_token=secret)
    web_app = build_health_app(app, ready)
    web_app.router.add_post(path, handler.handle)
    return web_app, handler


async def serve_webhook(dp: Dispatcher, bot: Bot, app: App, stop: asyncio.Event) -> None:
    """Replay what a killed process left, register the webhook, serve until `stop`, then drain."""
    settings = app.settings.telegram
    assert settings.webhook_url is not None
    secret = (
        settings.webhook_secret.get_secret_value() if settings.webhook_secret else secrets.token_urlsafe(32)
    )
    path = urlsplit(settings.webhook_url).path or "/"
    ready = asyncio.Event()
    handlers = Handlers(IN_FLIGHT_UPDATES)
    feeder = InboxFeeder(dp, bot, app.deliveries, handlers)
    web_app, _ = build_webhook_app(feeder, path, secret, ready, app)
    runner = web.AppRunner(web_app, access_log=None, handle_signals=False)
    await runner.setup()
    host, port = listen_address(settings.webhook_listen)
    site = web.TCPSite(runner, host, port)
    await site.start()
    await dp.emit_startup(**feeder.workflow, bot=bot)
    try:
        await feeder.replay()
        await bot.set_webhook(
            settings.webhook_url, secret_token=secret, allowed_updates=dp.resolve_used_update_types()
        )
        ready.set()
        log.info("webhook registered; serving on %s:%s%s", host, port, path)
        await stop.wait()
    finally:
        ready.clear()
        # Stop taking updates first (Telegram keeps them), then finish what was taken.
        await site.stop()
        await handlers.drain(SHUTDOWN_GRACE)
        await dp.emit_shutdown(**feeder.workflow, bot=bot)
        await runner.cleanup()
