"""The CLI: one module per command group, each adding its sub-commands to one parser."""

from __future__ import annotations

import argparse
import asyncio
import inspect
import sys
from collections.abc import Awaitable, Callable
from typing import Protocol

from bot.config import Settings, SettingsError, load_settings

Handler = Callable[[argparse.Namespace, Settings], "int | Awaitable[int]"]


class CommandModule(Protocol):
    """A CLI module: adds its sub-commands, each with `handler` set as a default."""

    def register(self, commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        """Add this module's sub-commands."""


def _modules() -> list[CommandModule]:
    # Imported here so `tiktok-bot --help` stays fast and a frontend's import cost is paid only when used.
    from bot.cli import demo, doctor, download, info, links, run, sandbox, settings, stats

    return [links, download, info, stats, settings, sandbox, run, doctor, demo]


def build_parser() -> argparse.ArgumentParser:
    """The whole CLI parser."""
    parser = argparse.ArgumentParser(
        prog="tiktok-bot",
        description="A Telegram and Discord bot for TikTok links, and the tools to run and inspect it.",
    )
    parser.add_argument("--env-file", default=".env", help="settings file to read (default: .env)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _modules():
        module.register(commands)
    return parser


def run_cli(argv: list[str]) -> int:
    """Parse `argv`, load settings, run the chosen command and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0
    try:
        settings = load_settings(args.env_file)
    except SettingsError as exc:
        print(f"tiktok-bot: {exc}", file=sys.stderr)
        return 2
    try:
        result = handler(args, settings)
        if inspect.isawaitable(result):
            return asyncio.run(_await(result))
        return int(result)
    except KeyboardInterrupt:
        return 130


async def _await(result: Awaitable[int]) -> int:
    return await result
