"""`tiktok-bot links` and `tiktok-bot resolve`: what a piece of text points to."""

from __future__ import annotations

import argparse
import json

from bot.config import Settings
from services.links import find_links


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `links` and `resolve`."""
    cmd = commands.add_parser("links", help="print each TikTok link found in TEXT as a JSON line")
    cmd.add_argument("text", help="chat text to scan")
    cmd.set_defaults(handler=print_links)


def print_links(args: argparse.Namespace, settings: Settings) -> int:
    """Print one JSON object per link found."""
    for link in find_links(args.text, limit=settings.limits.links_per_message):
        print(json.dumps(link.as_json()))
    return 0
