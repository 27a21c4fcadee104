"""`tiktok-bot run`, `tiktok-bot telegram`, `tiktok-bot discord`: run the frontends until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from bot.config import Settings
from bot.logs import setup_logging
from bot.wiring import App, build_app

log = logging.getLogger("tiktok_bot")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `run`, `telegram` and `discord`."""
    run = commands.add_parser("run", help="run every frontend whose token is set")
    run.set_defaults(handler=lambda args, settings: run_frontends(settings, ("telegram", "discord")))
    tg = commands.add_parser(
        "telegram", help="run the Telegram bot (long polling, or a webhook if configured)"
    )
    tg.set_defaults(handler=lambda args, settings: run_frontends(settings, ("telegram",)))
    dc = commands.add_parser("discord", help="run the Discord bot")
    dc.set_defaults(handler=lambda args, settings: run_frontends(settings, ("discord",)))


def _secrets(settings: Settings) -> list[str]:
    values = [
        settings.telegram.token,
        settings.telegram.webhook_secret,
        settings.discord.token,
        settings.ensembledata.token,
        settings.research.client_secret,
        settings.database.user_id_salt,
    ]
    return [v.get_secret_value() for v in values if v is not None]


Runner = Callable[[App, asyncio.Event], Coroutine[Any, Any, None]]


def _runners(settings: Settings, wanted: tuple[str, ...]) -> dict[str, Runner]:
    runners: dict[str, Runner] = {}
    if "telegram" in wanted and settings.telegram.token is not None:
        from bot.telegram.app import run_telegram

        runners["telegram"] = run_telegram
    if "discord" in wanted and settings.discord.token is not None:
        from bot.discord.app import run_discord

        runners["discord"] = run_discord
    return runners


def listeners(settings: Settings) -> dict[str, Runner]:
    """What serves beside the frontends: the health endpoint when HEALTH__LISTEN is set (polling mode)."""
    if not settings.health.listen:
        return {}
    from bot.health import serve_health

    listen = settings.health.listen
    return {"health": lambda app, stop: serve_health(app, listen, stop)}


def settle_heap() -> None:
    """Move everything start-up built (aiogram's and discord.py's ~200,000 model and schema objects) out of
    the garbage collector's sight, so a full collection under load walks only what requests create."""
    # Without this a gen-2 collection takes ~200 ms on a small VM: the loop stalls and every chat waits.
    gc.collect()
    gc.freeze()


async def run_frontends(settings: Settings, wanted: tuple[str, ...]) -> int:
    """Run the chosen frontends together; stop them all on a signal or when one fails."""
    setup_logging(settings.log.level, settings.log.format, _secrets(settings))
    runners = _runners(settings, wanted)
    if not runners:
        names = " or ".join(f"{w.upper()}__TOKEN" for w in wanted)
        log.error("nothing to run: set %s", names)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    app = await build_app(settings)
    settle_heap()
    try:
        tasks = {asyncio.create_task(runner(app, stop), name=name) for name, runner in runners.items()}
        tasks |= {asyncio.create_task(run(app, stop), name=name) for name, run in listeners(settings).items()}
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        failed = [t for t in done if t.exception() is not None]
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in failed:
            log.error("%s stopped: %s", task.get_name(), task.exception(), exc_info=task.exception())
        return 1 if failed else 0
    finally:
        await app.aclose()
        log.info("stopped; usage log flushed")
