"""MetadataService: posts, profiles and hashtag pages from a chain of providers, cached, with their cost."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Generic, TypeVar

from pydantic import TypeAdapter, ValidationError

from services.errors import InvalidLink, NotConfigured, NotFound, QuotaExceeded, UpstreamError, UserNotFound
from services.health import BackendFigures, BackendHealth, CircuitBreaker
from services.links import LinkKind, TikTokLink
from services.metadata.models import HashtagPage, Metered, Post, Profile
from services.metadata.providers import (
    EnsembleDataProvider,
    MetadataProvider,
    ResearchProvider,
    build_providers,
)
from services.shared import TTLCache
from services.shared.memory import MemoryTTLCache

__all__ = [
    "Answer",
    "EnsembleDataProvider",
    "MetadataProvider",
    "MetadataService",
    "ResearchProvider",
    "build_providers",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

# Failures another provider may not share; NotFound and PostUnavailable are facts about TikTok itself.
FALLBACK_ON = (UpstreamError, QuotaExceeded, NotConfigured)
MAX_LIMIT = 50
MAX_CURSOR_DIGITS = 6  # a cursor is a post offset; it rides in Telegram callback data (64 bytes with the tag)
_USERNAME = re.compile(r"[\w.\-]{1,64}")
_TAG = re.compile(r"\w{1,100}")


@dataclass(frozen=True, slots=True)
class Answer(Generic[T]):
    """A metadata result: the value, which provider answered, and what it cost (0 when `cached`)."""

    value: T
    provider: str
    units: int = 0
    requests: int = 0
    cached: bool = False


class MetadataService:
    """Looks posts, profiles and hashtags up through providers in order, falling back on upstream trouble."""

    def __init__(
        self,
        providers: Sequence[MetadataProvider],
        *,
        cache_ttl: float = 600,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 2048,
        cache: TTLCache | None = None,
    ) -> None:
        if not providers:
            raise NotConfigured("no metadata provider is configured")
        self.providers = tuple(providers)
        # Observed only (providers are never skipped): what /healthz says of each metadata upstream.
        self.health = {p.name: BackendHealth(p.name, CircuitBreaker()) for p in self.providers}
        self._ttl = cache_ttl
        # Answers as JSON by key; shared by replicas when the cache is Redis.
        self._cache: TTLCache = (
            cache if cache is not None else MemoryTTLCache(clock=clock, max_entries=max_entries)
        )
        self._flights: dict[str, asyncio.Lock] = {}

    async def post(self, link: TikTokLink) -> Answer[Post]:
        """The post a resolved post link points to."""
        if link.kind is not LinkKind.POST or not link.post_id:
            raise InvalidLink("not a link to a TikTok post (short links must be resolved first)")
        return await self._ask(f"post:{link.post_id}", _POST, lambda p: p.post(link))

    async def profile(self, username: str) -> Answer[Profile]:
        """An account by username (a leading `@` is fine)."""
        name = username.strip().removeprefix("@")
        if not _USERNAME.fullmatch(name):
            raise UserNotFound(f"{username!r} is not a TikTok username")
        return await self._ask(f"profile:{name.lower()}", _PROFILE, lambda p: p.profile(name))

    async def hashtag(self, tag: str, cursor: str | None = None, limit: int = 10) -> Answer[HashtagPage]:
        """Up to `limit` (1..50) posts of a hashtag from `cursor`, the `next_cursor` of the previous page."""
        name = tag.strip().removeprefix("#").lower()
        if not _TAG.fullmatch(name):
            raise NotFound(f"{tag!r} is not a hashtag")
        start = cursor or None
        if start is not None and not (start.isdigit() and len(start) <= MAX_CURSOR_DIGITS):
            raise NotFound("that page of the hashtag no longer exists")
        count = min(max(limit, 1), MAX_LIMIT)
        return await self._ask(
            f"hashtag:{name}:{start or ''}:{count}", _HASHTAG, lambda p: p.hashtag(name, start, count)
        )

    async def _ask(
        self, key: str, kind: _Kind[T], call: Callable[[MetadataProvider], Awaitable[Metered[T]]]
    ) -> Answer[T]:
        hit = await self._cached(key, kind)
        if hit is not None:
            return hit
        # One upstream call per key at a time: whoever waited finds the answer in the cache.
        lock = self._flights.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                hit = await self._cached(key, kind)
                if hit is not None:
                    return hit
                answer = await self._first_answer(kind.action, call)
                if self._ttl > 0:
                    await self._cache.put(key, kind.codec.dump_json(answer).decode(), self._ttl)
                return answer
        finally:
            if not lock.locked() and self._flights.get(key) is lock:
                del self._flights[key]

    async def _cached(self, key: str, kind: _Kind[T]) -> Answer[T] | None:
        text = await self._cache.get(key)
        if text is None:
            return None
        try:
            answer = kind.codec.validate_json(text)
        except ValidationError:
            log.warning(
                "unreadable cached %s answer dropped", kind.action
            )  # e.g. written by an older version
            return None
        return replace(answer, units=0, requests=0, cached=True)

    async def _first_answer(
        self, action: str, call: Callable[[MetadataProvider], Awaitable[Metered[T]]]
    ) -> Answer[T]:
        failure: Exception | None = None
        for provider in self.providers:
            started = time.monotonic()
            try:
                got = await call(provider)
            except FALLBACK_ON as exc:
                self._observe(provider.name, started, exc)
                log.warning(
                    "metadata provider %s failed (%s), trying the next",
                    provider.name,
                    exc.code,
                    extra={"action": f"metadata.{action}", "backend": provider.name, "outcome": exc.code},
                )
                failure = exc
                continue
            except Exception as exc:
                self._observe(provider.name, started, exc)
                raise
            self._observe(provider.name, started, None)
            return Answer(got.value, provider.name, got.units, got.requests)
        assert failure is not None  # providers is never empty
        raise failure

    def _observe(self, name: str, started: float, exc: Exception | None) -> None:
        if isinstance(exc, NotConfigured):
            return  # a provider without credentials was not asked
        if isinstance(exc, QuotaExceeded):
            exc = UpstreamError(exc.message)  # out of units or quota: down for us until it renews
        self.health[name].observe(time.monotonic() - started, exc)

    def figures(self) -> list[BackendFigures]:
        """Each provider's figures since start-up (the breaker is only observed: nothing is skipped)."""
        answered = sum(h.successes for h in self.health.values())
        return [self.health[p.name].figures(answered) for p in self.providers]


class _Kind(Generic[T]):
    """What is asked (for logs) and how its answer is kept in the cache."""

    def __init__(self, action: str, answer: type[Answer[T]]) -> None:
        self.action = action
        self._answer = answer

    @cached_property
    def codec(self) -> TypeAdapter[Answer[T]]:
        """The answer's JSON codec, built when first used (its schema costs start-up ~10 ms per kind)."""
        return TypeAdapter(self._answer)


_POST = _Kind("post", Answer[Post])
_PROFILE = _Kind("profile", Answer[Profile])
_HASHTAG = _Kind("hashtag", Answer[HashtagPage])
