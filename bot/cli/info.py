"""`tiktok-bot info post|user|hashtag`: metadata cards from the configured providers."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from bot.chat.cards import Card, hashtag_card, post_card, profile_card
from bot.config import Settings
from bot.upstreams import build_metadata_service, metadata_client
from services.errors import InvalidLink, NotConfigured, ServiceError
from services.links import LinkKind, TikTokLink, canonical_post_url, find_links
from services.metadata.models import HashtagPage, Post, Profile
from services.metadata.service import Answer, MetadataService

MAX_HASHTAG_LIMIT = 50
LANGUAGE = "en"  # the cards' labels on a terminal


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `info` with its `post`, `user` and `hashtag` sub-commands."""
    info = commands.add_parser("info", help="look up a post, user or hashtag through the metadata providers")
    kinds = info.add_subparsers(dest="info_kind", metavar="KIND", required=True)

    post = kinds.add_parser("post", help="a post's card: author, caption, duration, stats, sound, hashtags")
    post.add_argument("url", help="a TikTok post URL (or a bare post id)")
    post.set_defaults(handler=info_post)

    user = kinds.add_parser("user", help="an account's card: name, bio, followers, likes, videos")
    user.add_argument("name", help="a username, with or without @")
    user.set_defaults(handler=info_user)

    tag = kinds.add_parser("hashtag", help="a page of a hashtag's posts")
    tag.add_argument("tag", help="a hashtag, with or without #")
    tag.add_argument(
        "--limit", type=_limit, default=10, help=f"posts to show, 1..{MAX_HASHTAG_LIMIT} (default 10)"
    )
    tag.add_argument(
        "--cursor", default=None, help="where to start: the `next` cursor a previous page printed"
    )
    tag.set_defaults(handler=info_hashtag)

    for cmd in (post, user, tag):
        cmd.add_argument("--json", action="store_true", help="print the normalised model as JSON instead")


def _limit(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_HASHTAG_LIMIT:
        raise argparse.ArgumentTypeError(f"must be 1..{MAX_HASHTAG_LIMIT}")
    return value


def post_link(text: str) -> TikTokLink:
    """The post a URL (or a bare numeric post id) names; raises InvalidLink otherwise."""
    text = text.strip()
    if text.isdigit():
        return TikTokLink(kind=LinkKind.POST, url=canonical_post_url(text), post_id=text)
    links = find_links(text, limit=1)
    if links and links[0].kind is LinkKind.POST and links[0].post_id:
        return links[0]
    if links and links[0].kind is LinkKind.SHORT:
        raise InvalidLink(
            "a short link: resolve it first with `tiktok-bot resolve URL`, then pass the post URL"
        )
    raise InvalidLink(f"not a TikTok post URL: {text}")


async def _run(
    settings: Settings,
    as_json: bool,
    ask: Callable[[MetadataService], Awaitable[Answer[Any]]],
    card: Callable[[Any], list[str]],
) -> int:
    try:
        async with metadata_client(settings) as client:
            answer = await ask(build_metadata_service(settings, client))
    except NotConfigured as exc:
        print(f"tiktok-bot: {exc.message}", file=sys.stderr)
        return 2
    except ServiceError as exc:
        print(f"tiktok-bot: {exc.message}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(model_json(answer.value), ensure_ascii=False, indent=2))
        print(cost_line(answer), file=sys.stderr)
    else:
        print("\n".join([*card(answer.value), cost_line(answer)]))
    return 0


async def info_post(args: argparse.Namespace, settings: Settings) -> int:
    """Print a post's card."""
    try:
        link = post_link(args.url)
    except ServiceError as exc:
        print(f"tiktok-bot: {exc.message}", file=sys.stderr)
        return 1
    return await _run(settings, args.json, lambda s: s.post(link), post_lines)


async def info_user(args: argparse.Namespace, settings: Settings) -> int:
    """Print a profile's card."""
    return await _run(settings, args.json, lambda s: s.profile(args.name), profile_lines)


async def info_hashtag(args: argparse.Namespace, settings: Settings) -> int:
    """Print a page of a hashtag's posts."""
    return await _run(
        settings, args.json, lambda s: s.hashtag(args.tag, args.cursor, args.limit), hashtag_lines
    )


# --- cards: bot/chat/cards.py's, as plain text ---


def cost_line(answer: Answer[Any]) -> str:
    """`via ensembledata · 1 unit · 1 request`, or `via research · cached`."""
    if answer.cached:
        return f"via {answer.provider} · cached"
    units = f"{answer.units} unit{'' if answer.units == 1 else 's'}"
    requests = f"{answer.requests} request{'' if answer.requests == 1 else 's'}"
    return f"via {answer.provider} · {units} · {requests}"


def card_lines(card: Card) -> list[str]:
    """A chat card as plain text: title, text, rows (each with its link), figures, footer, link."""
    lines = [card.title]
    if card.text:
        lines.append(card.text)
    for text, url in card.lines:
        lines.extend((text, f"    {url}"))
    if card.figures:
        lines.append(" · ".join(f"{value} {label}" for _, value, label in card.figures))
    if card.footer:
        lines.append(card.footer)
    lines.append(card.url)
    return lines


def post_lines(post: Post) -> list[str]:
    """A post's card as lines of text."""
    return card_lines(post_card(post, LANGUAGE))


def profile_lines(profile: Profile) -> list[str]:
    """A profile's card as lines of text."""
    return card_lines(profile_card(profile, LANGUAGE))


def hashtag_lines(page: HashtagPage) -> list[str]:
    """A hashtag page's card as lines of text (a cursor's page has no number), then the next cursor."""
    lines = card_lines(hashtag_card(page, LANGUAGE, page_number=None))
    if page.next_cursor:
        lines.append(f"next page: --cursor {page.next_cursor}")
    return lines


def model_json(value: Any) -> Any:
    """A model as plain JSON data: dataclasses as objects, datetimes as ISO 8601, tuples as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: model_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [model_json(v) for v in value]
    return value
