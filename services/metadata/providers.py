"""Metadata providers: a Protocol, an adapter over each client, and the factory for the configured ones."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

import httpx

from services.errors import InvalidLink, NotConfigured
from services.http import is_allowed_url
from services.links import TikTokLink, canonical_post_url
from services.metadata.ensembledata import EnsembleDataClient
from services.metadata.models import HashtagPage, Metered, Post, Profile
from services.metadata.research import ResearchClient
from services.shared import Counters

PROVIDER_NAMES = ("ensembledata", "research")


class MetadataProvider(Protocol):
    """Something that can look up posts, profiles and hashtag pages, saying what each answer cost."""

    @property
    def name(self) -> str:
        """The provider's name as configured in METADATA__PROVIDERS and recorded with each answer."""

    async def post(self, link: TikTokLink) -> Metered[Post]:
        """The post a (resolved) post link points to."""

    async def profile(self, username: str) -> Metered[Profile]:
        """An account by username (without `@`)."""

    async def hashtag(self, tag: str, cursor: str | None, limit: int) -> Metered[HashtagPage]:
        """At most `limit` posts of a hashtag from position `cursor` (a decimal offset; None is the start)."""


def _post_id(link: TikTokLink) -> str:
    if not link.post_id:
        raise InvalidLink("the link does not name a post; resolve short links first")
    return link.post_id


def _web_url(link: TikTokLink) -> str:
    """The link's own post URL when it is a full `/@user/video/<id>` one, else the canonical form."""
    post_id = _post_id(link)
    url = link.url.split("#")[0].split("?")[0].rstrip("/")
    if is_allowed_url(url) and re.search(rf"/@[^/]+/(?:video|photo)/{post_id}$", url):
        return url
    return canonical_post_url(post_id, link.username)


def _offset(cursor: str | None) -> int:
    return int(cursor) if cursor else 0


class EnsembleDataProvider:
    """EnsembleData: post info by URL, user info by username, hashtag pages; costs units."""

    name = "ensembledata"

    def __init__(self, client: EnsembleDataClient) -> None:
        self.client = client

    async def post(self, link: TikTokLink) -> Metered[Post]:
        """`/tt/post/info` with the post's web URL."""
        return await self.client.post_info(_web_url(link))

    async def profile(self, username: str) -> Metered[Profile]:
        """`/tt/user/info`."""
        return await self.client.user_info(username)

    async def hashtag(self, tag: str, cursor: str | None, limit: int) -> Metered[HashtagPage]:
        """`/tt/hashtag/posts`, as many pages as `limit` needs (its cursors are post offsets)."""
        return await self.client.first_posts(tag, limit, cursor=_offset(cursor))


class ResearchProvider:
    """The TikTok Research API: video query by id or hashtag, user info; costs daily-quota requests."""

    name = "research"

    def __init__(self, client: ResearchClient) -> None:
        self.client = client

    async def post(self, link: TikTokLink) -> Metered[Post]:
        """A video query for the id in a one-day window around the time the id carries."""
        return await self.client.post(_post_id(link))

    async def profile(self, username: str) -> Metered[Profile]:
        """`/v2/research/user/info/`."""
        return await self.client.user_info(username)

    async def hashtag(self, tag: str, cursor: str | None, limit: int) -> Metered[HashtagPage]:
        """A video query for the hashtag over the last 30 days."""
        return await self.client.hashtag_posts(tag, offset=_offset(cursor), limit=limit)


def build_providers(
    names: Sequence[str],
    *,
    client: httpx.AsyncClient,
    ed_token: str | None,
    ed_url: str,
    research_key: str | None,
    research_secret: str | None,
    research_url: str,
    qps: float = 5.0,
    daily_quota: int = 1000,
    retries: int = 3,
    backoff: float = 0.5,
    counters: Counters | None = None,
) -> list[MetadataProvider]:
    """The providers named in `names`, in that order, skipping those without credentials."""
    providers: list[MetadataProvider] = []
    for name in names:
        if name == "ensembledata":
            if ed_token:
                ed = EnsembleDataClient(client, ed_token, base_url=ed_url, retries=retries, backoff=backoff)
                providers.append(EnsembleDataProvider(ed))
        elif name == "research":
            if research_key and research_secret:
                research = ResearchClient(
                    client,
                    research_key,
                    research_secret,
                    base_url=research_url,
                    qps=qps,
                    daily_quota=daily_quota,
                    retries=retries,
                    backoff=backoff,
                    counters=counters,
                )
                providers.append(ResearchProvider(research))
        else:
            raise ValueError(f"unknown metadata provider {name!r}; choose from {', '.join(PROVIDER_NAMES)}")
    if not providers:
        raise NotConfigured(
            "no metadata provider is configured: set ENSEMBLEDATA__TOKEN or "
            "RESEARCH__CLIENT_KEY and RESEARCH__CLIENT_SECRET"
        )
    return providers
