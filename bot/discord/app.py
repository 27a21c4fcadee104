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
from bot.discord.inbox import can_answer, expired_action, partition
from bot.discord.resume import SessionKeeper, close_resumable, recover_sessions, shards_of
from bot.replicas import StreamWorker
from bot.wiring import App
from services.store.inbox import InboxEntry
from services.store.sessions import GatewaySession

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


async def _replay_when_ready(
    bot: TikTokBot, left: list[InboxEntry], old_sessions: list[GatewaySession], token: str
) -> None:
    """Once the new session is ready: recover the dead sessions' events, then answer what was left."""
    await bot.wait_until_ready()
    task = asyncio.current_task()
    if task is not None:
        bot.track_task(task)  # shutdown drains the replay like any reply in flight
    try:
        # Only now: the new session already gets every event, so none falls between the two.
        recovered = await recover_sessions(bot, old_sessions, token) if old_sessions else []
        await bot.inbox.replay([*left, *recovered])
    except Exception:
        log.exception("inbox replay failed")


async def _work_stream_when_ready(
    bot: TikTokBot, stop: asyncio.Event, grace: float, old_sessions: list[GatewaySession], token: str
) -> None:
    """Replicas: once ready, recover the dead sessions' events into the stream, then answer this process's
    shards' events from the shared stream and claim from every shard's partition what a dead process left."""
    ready = asyncio.ensure_future(bot.wait_until_ready())
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({ready, stopped}, return_when=asyncio.FIRST_COMPLETED)
    for waiter in (ready, stopped):
        waiter.cancel()
    if stop.is_set():
        return  # stopped before the gateway was ready: nothing taken, nothing to drain
    if old_sessions:
        try:
            await recover_sessions(bot, old_sessions, token)  # into the stream: the workers answer them
        except Exception:
            log.exception("could not recover the previous gateway sessions")
    settings = bot.app.settings.discord
    count = settings.shard_count or 1
    own = settings.shard_ids or list(range(count))
    worker = StreamWorker(
        bot.app.deliveries,
        bot.inbox._handle_old,
        partitions=[partition(shard) for shard in own],
        claim=[partition(shard) for shard in range(count)],
        can_answer=can_answer,
        expired_action=expired_action,
        metrics=bot.app.metrics,
        depth=getattr(bot.app.deliveries.inbox, "depth", None),
        track=bot.track_task,
    )
    await worker.run(stop, grace=grace)


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
        keeper = SessionKeeper(bot, app.store.gateway_sessions)
        bot.inbox.keeper = keeper
        token = settings.token.get_secret_value()
        # Listed before this process takes anything: what a dead one left, and the sessions it left open.
        left = await app.store.inbox.unfinished("discord")
        shards = shards_of(settings.shard_ids, settings.shard_count)
        old_sessions = await app.store.gateway_sessions.load(shards)
        stopper = asyncio.create_task(stop.wait(), name="discord-stop")
        saving = asyncio.create_task(keeper.run(), name="discord-session-keeper")
        handed_over = False
        try:
            await bot.login(token)
            connection = asyncio.create_task(bot.stay_connected(), name="discord-gateway")
            if app.deliveries.shared:
                work = _work_stream_when_ready(bot, stop, grace, old_sessions, token)
                replay = asyncio.create_task(work, name="discord-stream")
            else:
                replay = asyncio.create_task(
                    _replay_when_ready(bot, left, old_sessions, token), name="discord-replay"
                )
            await asyncio.wait({connection, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if app.deliveries.shared and not connection.done():
                await bot.drain(grace)  # the worker drains its own entries once it sees `stop`
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(asyncio.shield(replay), grace + 10)
            if not replay.done():
                replay.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await replay
            if connection.done():
                connection.result()  # a gateway failure (bad token, refused intents) ends the frontend
                return
            saving.cancel()
            # From here on nothing is stored: the next process resumes the session from this point.
            handing_over = await keeper.freeze()
            await bot.drain(grace)
            if handing_over:
                await close_resumable(bot, connection)
                handed_over = True
        finally:
            stopper.cancel()
            saving.cancel()
            await bot.close()  # close code 1000 unless handed over: Discord ends the session
            if not handed_over:
                await keeper.forget()
            if connection is not None and not connection.done():
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.wait_for(connection, 5)
            log.info("discord bot stopped")
