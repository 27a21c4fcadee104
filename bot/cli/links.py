"""`tiktok-bot links` and `tiktok-bot resolve`: what a piece of text points to."""

from __future__ import annotations

import argparse
import json
import sys

from bot.config import Settings
from services.errors import ServiceError
from services.http import HttpOptions
from services.links import ShortLinkResolver, find_links


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `links` and `resolve`."""
    cmd = commands.add_parser("links", help="print each TikTok link found in TEXT as a JSON line")
    cmd.add_argument("text", help="chat text to scan")
    cmd.set_defaults(handler=print_links)

    cmd = commands.add_parser(
        "resolve", help="resolve a short link (vm./vt./t/) to its post and print it as a JSON line"
    )
    cmd.add_argument("url", help="a TikTok link; a link that is not short is printed as it is")
    cmd.set_defaults(handler=resolve)


def print_links(args: argparse.Namespace, settings: Settings) -> int:
    """Print one JSON object per link found."""
    for link in find_links(args.text, limit=settings.limits.links_per_message):
        print(json.dumps(link.as_json()))
    return 0


async def resolve(args: argparse.Namespace, settings: Settings) -> int:
    """Resolve the first link in URL and print it; one line on stderr and exit 1 on failure."""
    links = find_links(args.url, limit=1)
    if not links:
        print(f"tiktok-bot: not a TikTok link: {args.url}", file=sys.stderr)
        return 1
    # Imported here: the HTTP stack (curl_cffi, the session pool) is what `links` never needs.
    from bot.upstreams import tiktok_sessions

    sessions = tiktok_sessions(settings, read_timeout=HttpOptions().read_timeout)
    try:
        resolver = ShortLinkResolver(sessions.client(), ttl=settings.limits.short_link_ttl)
        link = await resolver.resolve(links[0])
    except ServiceError as exc:
        print(f"tiktok-bot: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    finally:
        await sessions.aclose()
    print(json.dumps(link.as_json()))
    return 0
