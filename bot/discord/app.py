"""The Discord frontend: the bot with its cogs, and how it runs.

discord.py has no setting for its endpoints; `run_discord` points its two class attributes at
DISCORD__API_URL / DISCORD__GATEWAY_URL for as long as the bot runs and restores them afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator

import discord
import yarl
from structlog.contextvars import bind_contextvars

from bot.discord.client import GUILD_READY_TIMEOUT, SHUTDOWN_GRACE, TikTokBot, make_bot
from bot.discord.cogs import add_cogs
from bot.wiring import App

log = logging.getLogger("tiktok_bot.discord")


@contextlib.contextmanager
def discord_endpoints(api_url: str, gateway_url: str) -> Iterator[None]:
    """Point discord.py's REST base and gateway at these URLs, restoring the previous ones afterwards."""
    base, gateway = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = api_url.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
    try:
        yield
    finally:
        discord.http.Route.BASE = base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = gateway


async def _replay_when_ready(bot: TikTokBot) -> None:
    """Once the gateway is ready (channels known), answer what a killed process left in the inbox."""
    await bot.wait_until_ready()
    task = asyncio.current_task()
    if task is not None:
        bot.track_task(task)  # shutdown drains the replay like any reply in flight
    try:
        await bot.inbox.replay()
    except Exception:
        log.exception("inbox replay failed")


async def run_discord(
    app: App,
    stop: asyncio.Event,
    *,
    grace: float = SHUTDOWN_GRACE,
    guild_ready_timeout: float = GUILD_READY_TIMEOUT,
    on_start: Callable[[TikTokBot], object] | None = None,
) -> None:
    """Log in, sync commands, stay connected until `stop` is set; then finish (or cancel) work and close."""
    # The frontend's own task: its lines, and those of every task it starts (discord.py's too), say discord.
    bind_contextvars(platform="discord")
    settings = app.settings.discord
    if settings.token is None:
        raise ValueError("DISCORD__TOKEN is not set")
    with discord_endpoints(settings.api_url, settings.gateway_url):
        bot = make_bot(app, guild_ready_timeout=guild_ready_timeout)
        await add_cogs(bot)  # before login: setup_hook syncs what they add
        if on_start is not None:
            on_start(bot)
        if not settings.message_content:
            log.info(
                "message content intent off (DISCORD__MESSAGE_CONTENT=false): links in server channels are "
                "answered only when the bot is mentioned"
            )
        connection: asyncio.Task[None] | None = None
        stopper = asyncio.create_task(stop.wait(), name="discord-stop")
        try:
            await bot.login(settings.token.get_secret_value())
            connection = asyncio.create_task(bot.stay_connected(), name="discord-gateway")
            replay = asyncio.create_task(_replay_when_ready(bot), name="discord-replay")
            await asyncio.wait({connection, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if not replay.done():
                replay.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await replay
            if connection.done():
                connection.result()  # a gateway failure (bad token, refused intents) ends the frontend
                return
            await bot.drain(grace)
        finally:
            stopper.cancel()
            await bot.close()
            if connection is not None and not connection.done():
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.wait_for(connection, 5)
            log.info("discord bot stopped")
