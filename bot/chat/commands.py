"""Command arguments both frontends accept (post link, username, hashtag) and the service behind them."""

from __future__ import annotations

import re

from services.errors import NotConfigured
from services.links import LinkKind, TikTokLink, find_links
from services.metadata.service import MetadataService

_USERNAME = re.compile(r"^@?([A-Za-z0-9_.-]{1,64})$")
_TAG = re.compile(r"^#?(\w{1,100})$", re.UNICODE)


def parse_post_argument(args: str | None) -> TikTokLink | None:
    """The first post or short link in a command's argument."""
    for link in find_links(args or "", limit=5):
        if link.has_media:
            return link
    return None


def parse_username(args: str | None) -> str | None:
    """A username from `name`, `@name` or a profile link (or a post link's author)."""
    text = (args or "").strip()
    if not text:
        return None
    for link in find_links(text, limit=5):
        if link.username and link.username != "_":
            return link.username
    match = _USERNAME.match(text.split()[0])
    return match.group(1) if match else None


def user_usage_key(args: str | None) -> str:
    """The usage text for an unusable /user argument: a link naming the account by number gets its own."""
    if any(link.user_id for link in find_links(args or "", limit=5)):
        return "usage.user_by_id"
    return "usage.user"


def parse_tag(args: str | None) -> str | None:
    """A hashtag from `tag`, `#tag` or a tag link."""
    text = (args or "").strip()
    if not text:
        return None
    for link in find_links(text, limit=5):
        if link.kind is LinkKind.HASHTAG and link.tag:
            return link.tag
    match = _TAG.match(text.split()[0])
    return match.group(1).lower() if match else None


def require_metadata(metadata: MetadataService | None) -> MetadataService:
    """The metadata service, or NotConfigured when no provider is set up (the user is told so)."""
    if metadata is None:
        raise NotConfigured("no metadata provider is configured")
    return metadata
