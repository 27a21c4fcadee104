"""`tiktok-bot config`: the effective settings with secrets masked."""

from __future__ import annotations

import argparse
import json

from bot.config import Settings, masked


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `config`."""
    cmd = commands.add_parser("config", help="print the effective settings, secrets masked")
    cmd.set_defaults(handler=show_config)


def show_config(args: argparse.Namespace, settings: Settings) -> int:
    """Print the settings as indented JSON."""
    print(json.dumps(masked(settings), indent=2, default=str))
    return 0
