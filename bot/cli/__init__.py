"""The CLI: one module per command group, each adding its sub-commands to one parser."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, cast

from bot.config import Settings, SettingsError, load_settings

Handler = Callable[[argparse.Namespace, Settings], "int | Awaitable[int]"]


class CommandModule(Protocol):
    """A CLI module: adds its sub-commands, each with `handler` set as a default."""

    def register(self, commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        """Add this module's sub-commands."""


# The module that adds each sub-command, in `--help` order. Running a command imports only its module:
# `links` must not pay for aiogram, discord.py and the sandbox that `demo` needs.
COMMANDS: dict[str, str] = {
    "links": "links",
    "resolve": "links",
    "download": "download",
    "info": "info",
    "stats": "stats",
    "config": "settings",
    "sandbox": "sandbox",
    "run": "run",
    "telegram": "run",
    "discord": "run",
    "doctor": "doctor",
    "demo": "demo",
}


def _command(argv: Sequence[str]) -> str | None:
    """The sub-command `argv` names, if any (options before it skipped)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--env-file")
    pre.add_argument("command", nargs="?")
    known, _ = pre.parse_known_args(argv)
    command: str | None = known.command
    return command


def _modules(command: str | None) -> list[CommandModule]:
    names = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    return [cast(CommandModule, importlib.import_module(f"bot.cli.{name}")) for name in names]


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The CLI parser: with `argv`, only the module of the command it names adds its sub-commands."""
    parser = argparse.ArgumentParser(
        prog="tiktok-bot",
        description="A Telegram and Discord bot for TikTok links, and the tools to run and inspect it.",
    )
    parser.add_argument("--env-file", default=".env", help="settings file to read (default: .env)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _modules(None if argv is None else _command(argv)):
        module.register(commands)
    return parser


def run_cli(argv: list[str]) -> int:
    """Parse `argv`, load settings, run the chosen command and return its exit code."""
    parser = build_parser(argv)
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
