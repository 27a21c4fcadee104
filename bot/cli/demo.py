"""`tiktok-bot demo`: every emulator and the real bot in one process, a scripted talk, a transcript."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import shutil
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TextIO

from bot.config import Settings, settings_from
from bot.discord.app import run_discord
from bot.discord.client import TikTokBot
from bot.logs import setup_logging
from bot.telegram.app import run_telegram
from bot.wiring import App, build_app
from sandbox.demo.discord import DiscordScript
from sandbox.demo.script import Logged, Outcome, Printer
from sandbox.demo.telegram import TelegramScript
from sandbox.discord import DiscordEmulator
from sandbox.runner import Sandbox
from sandbox.telegram import TelegramEmulator
from services.store.stats import render_stats_table

log = logging.getLogger("tiktok_bot.demo")

INTRO = (
    "tiktok-bot demo — the real bot (aiogram 3, discord.py 2, services/) against loopback emulators",
    "of TikTok web + CDN + short links, TTSave, EnsembleData, the Research API, the Telegram Bot API",
    "and Discord. Media the chats receive and the bot's database go to {out}/.",
)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `demo`."""
    cmd = commands.add_parser(
        "demo",
        help="run the bot offline against emulators of every upstream, playing a scripted conversation",
    )
    cmd.add_argument(
        "--out",
        type=Path,
        default=Path("demo-out"),
        help="where media and the database go (default demo-out/)",
    )
    cmd.set_defaults(handler=_main)


async def _main(args: argparse.Namespace, settings: Settings) -> int:
    # The bot's own log would drown the transcript: warnings and errors only, on stderr.
    setup_logging("WARNING")
    return await run_demo(args.out)


def demo_settings(env: dict[str, str], out_dir: Path) -> Settings:
    """The sandbox's environment and a database under `out_dir`; nothing from the developer's settings."""
    return settings_from(
        {
            **env,
            "DATABASE__PATH": str(out_dir / "demo.sqlite3"),
            "DATABASE__FLUSH_MS": "20",
            "LOG__LEVEL": "WARNING",
        }
    )


def _reset(out_dir: Path) -> None:
    """Forget the last run: its media and database (a stale cache would turn the first video into a hit)."""
    for name in ("telegram", "discord"):
        shutil.rmtree(out_dir / name, ignore_errors=True)
    for path in out_dir.glob("demo.sqlite3*"):
        path.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)


def _usage_reader(app: App) -> Callable[[str, int], Coroutine[Any, Any, Sequence[Logged]]]:
    async def read(platform: str, user_id: int) -> Sequence[Logged]:
        rows = await app.store.usage.rows_for_user(platform, user_id)
        return [Logged(r.action, r.outcome, r.backend, r.cache_hit, r.latency_ms, r.bytes_sent) for r in rows]

    return read


async def run_demo(out_dir: Path, out: TextIO | None = None) -> int:
    """Play the demo; 0 when every step got its expected reply, 1 otherwise."""
    stream = out or sys.stdout
    printer = Printer(stream)
    started = time.monotonic()
    _reset(out_dir)
    sandbox = Sandbox()
    await sandbox.start()
    outcome = Outcome()
    try:
        settings = demo_settings(sandbox.env(), out_dir)
        app = await build_app(settings)
        stop = asyncio.Event()
        discord_bots: list[TikTokBot] = []
        tasks = [
            asyncio.create_task(run_telegram(app, stop), name="telegram"),
            asyncio.create_task(run_discord(app, stop, on_start=discord_bots.append), name="discord"),
        ]
        try:
            for line in INTRO:
                printer.line(line.format(out=out_dir))
            usage = _usage_reader(app)
            tg = sandbox.get(TelegramEmulator)
            await tg.wait_for(method="deleteWebhook", timeout=10)  # polling is about to start
            await TelegramScript(tg, usage, out_dir, printer, outcome).run()
            if await _discord_ready(discord_bots, tasks[1]):
                await DiscordScript(sandbox.get(DiscordEmulator), usage, out_dir, printer, outcome).run()
            elif not tasks[1].done():
                outcome.failures.append("the Discord frontend was not ready within 15 s")
            _check_frontends(tasks, outcome)
            printer.heading("Operator stats (tiktok-bot stats)")
            printer.line(render_stats_table(await app.store.stats(days=1)))
        finally:
            stop.set()
            for task in tasks:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, 15)
            await app.aclose()
    finally:
        await sandbox.stop()
    printer.heading("Result")
    printer.line(
        f"{outcome.steps} steps, {len(outcome.failed_steps)} failed, {len(outcome.saved)} files saved under "
        f"{out_dir}/, {time.monotonic() - started:.1f} s"
    )
    for failure in outcome.failures:
        printer.line(f"  ✗ {failure}")
    return 1 if outcome.failures else 0


async def _discord_ready(bots: list[TikTokBot], task: asyncio.Task[None], within: float = 15.0) -> bool:
    """Wait until discord.py has connected and seen the demo server (False if it stopped instead)."""
    deadline = time.monotonic() + within
    while not (bots and bots[0].is_ready()):
        if task.done() or time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def _check_frontends(tasks: Sequence[asyncio.Task[None]], outcome: Outcome) -> None:
    """A frontend that stopped during the script is a failure of its own."""
    for task in tasks:
        if task.done():
            exc = task.exception()
            outcome.failures.append(f"the {task.get_name()} frontend stopped: {exc!r}")
