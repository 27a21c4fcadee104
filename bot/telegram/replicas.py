"""Telegram on the shared update stream (REDIS__URL set): the webhook or the polling leader puts updates into
the inbox (a `StreamInbox`), every replica's worker takes and answers them through the same `Deliveries` code
as one process on its database inbox.

Webhook mode: any replica behind the load balancer takes any update, puts it in the stream and answers 200.
Polling mode: the replica holding the `telegram-poller` lease calls getUpdates and puts each poll in the
stream before the next getUpdates confirms it; the others (and it) work the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiogram import Bot, Dispatcher
from aiogram.methods import GetUpdates
from aiohttp import web

from bot.chat.inbox import Deliveries
from bot.health import build_health_app, listen_address
from bot.replicas import Leader, StreamWorker
from bot.telegram.polling import Handlers, InboxFeeder
from bot.wiring import App
from services.store.inbox import InboxEntry

log = logging.getLogger("tiktok_bot.telegram")

POLLER_LEASE = "telegram-poller"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 -- a header name, not a secret
MAX_UPDATE_BYTES = 1 << 20  # an update is a few KiB of JSON; anything larger is not from Telegram


PARTITION = "telegram"  # every Telegram update goes into one partition of the shared stream


def stream_entry(update_id: int, payload: str, kind: str) -> InboxEntry:
    """The inbox entry of a Telegram update (its update_id is unique per bot)."""
    return InboxEntry("telegram", str(update_id), kind, payload, time.time(), partition=PARTITION)


def webhook_into_stream(
    deliveries: Deliveries, secret: str
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """POST handler: 401 without the secret, 400 for what is not an update, else into the stream and 200."""

    async def handle(request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), secret.encode()):
            return web.Response(status=401, text="Unauthorized")
        if (request.content_length or 0) > MAX_UPDATE_BYTES:
            return web.Response(status=413)
        body = await request.text()
        try:
            data = json.loads(body)
            update_id = int(data["update_id"])
        except (ValueError, KeyError, TypeError):
            return web.Response(status=400, text="not an update")
        kind = next((str(k) for k in data if k != "update_id"), "")
        # The 200 goes out only once the update is in Redis: a replica that dies later loses nothing.
        await deliveries.accept([stream_entry(update_id, body, kind)])
        return web.Response(status=200)

    return handle


async def run_replicated(app: App, bot: Bot, dp: Dispatcher, stop: asyncio.Event, concurrency: int) -> None:
    """Feed the shared inbox (webhook or polling leader) and work it, until `stop`."""
    deliveries = app.deliveries
    feeder = InboxFeeder(dp, bot, deliveries, Handlers(concurrency))
    depth = getattr(deliveries.inbox, "depth", None)
    worker = StreamWorker(
        deliveries,
        feeder._handle_old,  # an update from the stream is handled as a stored one, late notice included
        partitions=[PARTITION],
        concurrency=concurrency,
        metrics=app.metrics,
        depth=depth,
    )
    work = asyncio.create_task(worker.run(stop), name="stream-worker")
    try:
        if app.settings.telegram.webhook_url:
            await serve_webhook_into_stream(app, bot, dp, deliveries, stop)
        else:
            await poll_as_leader(app, bot, dp, deliveries, stop)
    finally:
        stop.set()
        await work


async def serve_webhook_into_stream(
    app: App, bot: Bot, dp: Dispatcher, deliveries: Deliveries, stop: asyncio.Event
) -> None:
    """Register the webhook (every replica registers the same URL: the load balancer's) and serve it."""
    settings = app.settings.telegram
    assert settings.webhook_url is not None
    # Replicas must agree on the secret: a random one per replica would make the others' updates 401.
    if settings.webhook_secret is None:
        raise ValueError("webhook replicas need TELEGRAM__WEBHOOK_SECRET (the same on every replica)")
    secret = settings.webhook_secret.get_secret_value()
    path = urlsplit(settings.webhook_url).path or "/"
    ready = asyncio.Event()
    web_app = build_health_app(app, ready)
    web_app.router.add_post(path, webhook_into_stream(deliveries, secret))
    runner = web.AppRunner(web_app, access_log=None, handle_signals=False)
    await runner.setup()
    host, port = listen_address(settings.webhook_listen)
    await web.TCPSite(runner, host, port).start()
    try:
        await bot.set_webhook(
            settings.webhook_url, secret_token=secret, allowed_updates=dp.resolve_used_update_types()
        )
        ready.set()
        log.info("webhook replica serving on %s:%s%s", host, port, path, extra={"platform": "telegram"})
        await stop.wait()
    finally:
        ready.clear()
        await runner.cleanup()


async def poll_as_leader(
    app: App, bot: Bot, dp: Dispatcher, deliveries: Deliveries, stop: asyncio.Event
) -> None:
    """Take the poller lease when free; while held, getUpdates into the stream."""
    lease = app.settings.redis.lease
    holder = getattr(app.shared.stream, "consumer", None) or secrets.token_hex(8)
    leader = Leader(app.shared.leases, POLLER_LEASE, holder, lease)
    # A long poll shorter than the lease, so the holder renews it in time.
    timeout = max(1, min(25, int(lease / 3)))
    types = dp.resolve_used_update_types()

    async def lead() -> None:
        app.metrics.poller_leader.set(1)
        try:
            await bot.delete_webhook(drop_pending_updates=False)
            offset: int | None = None
            while not stop.is_set():
                poll = asyncio.create_task(
                    bot(GetUpdates(offset=offset, timeout=timeout, allowed_updates=types), timeout + 10)
                )
                stopper = asyncio.create_task(stop.wait())
                await asyncio.wait({poll, stopper}, return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
                if not poll.done():
                    poll.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await poll
                    return
                try:
                    updates = poll.result()
                except Exception:
                    log.exception("getUpdates failed", extra={"platform": "telegram"})
                    await asyncio.sleep(1)
                    updates = []
                entries = [
                    stream_entry(
                        u.update_id, u.model_dump_json(exclude_unset=True, exclude_none=True), u.event_type
                    )
                    for u in updates
                ]
                try:
                    await deliveries.accept(entries)  # one round trip for the poll
                except Exception:
                    # Not stored, so not confirmed: the same offset asks Telegram for them again.
                    log.exception("could not store updates", extra={"platform": "telegram"})
                    await asyncio.sleep(1)
                else:
                    if updates:
                        offset = updates[-1].update_id + 1
                if not await leader.renew():
                    log.warning("lost the poller lease", extra={"platform": "telegram"})
                    return
        finally:
            app.metrics.poller_leader.set(0)

    await leader.run(stop, lead)
