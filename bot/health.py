"""The health endpoint: `GET /healthz` reports readiness and each upstream as up / degraded / down, in JSON.

One function builds the aiohttp app (`build_health_app`), so more routes (`/metrics`) can join the same
listener; webhook mode adds its update route to that app, polling mode serves it on HEALTH__LISTEN.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bot.wiring import App

log = logging.getLogger("tiktok_bot.health")


def listen_address(value: str) -> tuple[str, int]:
    """`host:port` (or `:port`) as a pair."""
    host, _, port = value.rpartition(":")
    return (host or "0.0.0.0"), int(port)


def health_report(app: App, ready: bool) -> dict[str, Any]:
    """Readiness, the overall status and each upstream's figures and breaker (download backends, then
    metadata providers)."""
    upstreams = [f.to_dict("download") for f in app.downloads.figures()]
    if app.metadata is not None:
        upstreams += [f.to_dict("metadata") for f in app.metadata.figures()]
    # Overall: from the download chain, what the bot is for: up while some backend can serve, down when none.
    statuses = [u["status"] for u in upstreams if u["kind"] == "download"]
    if statuses and all(s == "down" for s in statuses):
        overall = "down"
    elif any(u["status"] != "up" for u in upstreams):
        overall = "degraded"
    else:
        overall = "up"
    return {"ready": ready, "status": overall, "upstreams": upstreams}


def healthz_handler(
    app: App, ready: asyncio.Event | None = None
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The `/healthz` handler: 200 when ready (a degraded upstream is not a reason to restart), else 503."""

    async def healthz(request: web.Request) -> web.Response:
        is_ready = ready is None or ready.is_set()
        return web.json_response(health_report(app, is_ready), status=200 if is_ready else 503)

    return healthz


def build_health_app(app: App, ready: asyncio.Event | None = None) -> web.Application:
    """The aiohttp app of the health listener: `GET /healthz` (more routes may be added to it)."""
    web_app = web.Application()
    web_app.router.add_get("/healthz", healthz_handler(app, ready))
    return web_app


async def serve_health(app: App, listen: str, stop: asyncio.Event) -> None:
    """Serve the health app on `listen` (`host:port`) until `stop`."""
    runner = web.AppRunner(build_health_app(app), access_log=None, handle_signals=False)
    await runner.setup()
    host, port = listen_address(listen)
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("health endpoint on http://%s:%s/healthz", host, port)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
