"""The /post, /user and /hashtag lookups both frontends offer: argument, limits, metadata, the card to show.

Each lookup is one call that yields what to render (`Shown`) and records one usage row when the frontend's
rendering ends, so the row's latency and outcome include the reply. A frontend parses nothing and counts
nothing itself: it renders the `Shown`, or a `ServiceError` the call raised.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from bot.chat.cards import HASHTAG_PAGE_SIZE, Card, hashtag_card, post_card, profile_card
from bot.chat.commands import (
    parse_post_argument,
    parse_tag,
    parse_username,
    require_metadata,
    user_usage_key,
)
from bot.chat.interaction import INVALID_ARGUMENT, Admitted, ChatContext, Interactions, Tracker
from services.links import ShortLinkResolver
from services.metadata.service import MetadataService


@dataclass(frozen=True, slots=True)
class NextPage:
    """Where a hashtag's "More" button leads: the tag, the provider's cursor and the next page's number."""

    tag: str
    cursor: str
    page: int


@dataclass(frozen=True, slots=True)
class Shown:
    """What a lookup answers: a card (with the next hashtag page, if any), or the command's usage text."""

    card: Card | None = None
    more: NextPage | None = None
    usage: str = ""  # without a card: the i18n key of the command's usage (its argument was unusable)


class Lookups:
    """Looks posts, accounts and hashtags up for a chat: each request limited, logged and made a card."""

    def __init__(
        self, *, interactions: Interactions, resolver: ShortLinkResolver, metadata: MetadataService | None
    ) -> None:
        self.interactions = interactions
        self.resolver = resolver
        self.metadata = metadata

    @asynccontextmanager
    async def _admit(
        self, ctx: ChatContext, action: str, target: str | None, admitted: Admitted | None
    ) -> AsyncIterator[Tracker]:
        """Track the request, pass the limits, then let the frontend acknowledge it."""
        async with self.interactions.admit(ctx, action, target) as tracker:
            if admitted is not None:
                await admitted()
            yield tracker

    @asynccontextmanager
    async def _usage(self, ctx: ChatContext, action: str, key: str) -> AsyncIterator[Shown]:
        """The command's usage to show, logged as a refused argument."""
        async with self.interactions.track(ctx, action, outcome=INVALID_ARGUMENT):
            yield Shown(usage=key)

    @asynccontextmanager
    async def post(
        self, ctx: ChatContext, argument: str | None, *, admitted: Admitted | None = None
    ) -> AsyncIterator[Shown]:
        """The stats card of the post a link (or short link) names."""
        link = parse_post_argument(argument)
        if link is None:
            async with self._usage(ctx, "post", "usage.post") as shown:
                yield shown
            return
        async with self._admit(ctx, "post", link.post_id or link.code, admitted) as tracker:
            link = await self.resolver.post_link(link)
            tracker.target = link.post_id
            answer = await require_metadata(self.metadata).post(link)
            tracker.answered(answer)
            yield Shown(card=post_card(answer.value, ctx.language))

    @asynccontextmanager
    async def user(
        self, ctx: ChatContext, argument: str | None, *, admitted: Admitted | None = None
    ) -> AsyncIterator[Shown]:
        """The profile card of the account a name or link names."""
        username = parse_username(argument)
        if username is None:
            async with self._usage(ctx, "user", user_usage_key(argument)) as shown:
                yield shown
            return
        async with self._admit(ctx, "user", username, admitted) as tracker:
            answer = await require_metadata(self.metadata).profile(username)
            tracker.answered(answer)
            yield Shown(card=profile_card(answer.value, ctx.language))

    @asynccontextmanager
    async def hashtag(
        self, ctx: ChatContext, argument: str | None, *, admitted: Admitted | None = None
    ) -> AsyncIterator[Shown]:
        """The first page of a hashtag a tag or link names, with the way to the next one."""
        tag = parse_tag(argument)
        if tag is None:
            async with self._usage(ctx, "hashtag", "usage.hashtag") as shown:
                yield shown
            return
        async with self.hashtag_page(ctx, tag, None, 1, admitted=admitted) as shown:
            yield shown

    @asynccontextmanager
    async def hashtag_page(
        self,
        ctx: ChatContext,
        tag: str,
        cursor: str | None,
        page: int,
        *,
        admitted: Admitted | None = None,
    ) -> AsyncIterator[Shown]:
        """One page of a hashtag (a "More" button's), numbered on from the pages before it."""
        async with self._admit(ctx, "hashtag", tag, admitted) as tracker:
            answer = await require_metadata(self.metadata).hashtag(tag, cursor, limit=HASHTAG_PAGE_SIZE)
            tracker.answered(answer)
            found = answer.value
            card = hashtag_card(found, ctx.language, page_number=page, offset=(page - 1) * HASHTAG_PAGE_SIZE)
            more = NextPage(tag, found.next_cursor, page + 1) if found.next_cursor else None
            yield Shown(card=card, more=more)
