"""TikTok Research API client: client-credentials token, video query, user info and comments.

Protocol (see the reference notes): a form-encoded POST to /v2/oauth/token/ gives a bearer token valid for
`expires_in` seconds; data endpoints are JSON POSTs with `fields` in the query string and answer
`{"data": {...}, "error": {"code", "message", "log_id"}}`, a success iff `error.code == "ok"`. Video queries
span at most 30 days and page by `cursor` + `search_id`. The daily quota is 1,000 requests, reset 00:00 UTC.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

import httpx

from services.errors import (
    InvalidLink,
    NotFound,
    PostUnavailable,
    QuotaExceeded,
    ServiceError,
    UnavailableReason,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    UserNotFound,
)
from services.metadata.loose import as_list, as_map, json_or_none
from services.metadata.models import (
    CommentPage,
    HashtagPage,
    Metered,
    Post,
    Profile,
    comment_from_research,
    created_from_id,
    post_from_research,
    profile_from_research,
)
from services.retry import RetryAnswer, RetryPolicy
from services.shared import Counters
from services.shared.memory import MemoryCounters

UPSTREAM = "research"
DEFAULT_URL = "https://open.tiktokapis.com"
TOKEN_PATH = "/v2/oauth/token/"  # noqa: S105 - a path, not a secret
VIDEO_QUERY_PATH = "/v2/research/video/query/"
USER_INFO_PATH = "/v2/research/user/info/"
COMMENTS_PATH = "/v2/research/video/comment/list/"
MAX_WINDOW_DAYS = 30  # a query's end_date may be at most this many days after its start_date
MAX_COUNT = 100

VIDEO_FIELDS: tuple[str, ...] = (
    "id",
    "video_description",
    "create_time",
    "region_code",
    "share_count",
    "view_count",
    "like_count",
    "comment_count",
    "favorites_count",
    "music_id",
    "hashtag_names",
    "username",
    "video_duration",
)
USER_FIELDS: tuple[str, ...] = (
    "display_name",
    "bio_description",
    "avatar_url",
    "is_verified",
    "follower_count",
    "following_count",
    "likes_count",
    "video_count",
    "is_private",  # offered by user/info (newer docs: `open_id, is_private`); Profile.private reads it
)
COMMENT_FIELDS: tuple[str, ...] = (
    "id",
    "video_id",
    "text",
    "like_count",
    "reply_count",
    "parent_comment_id",
    "create_time",
)


class Op(StrEnum):
    """A condition's operation."""

    EQ = "EQ"
    IN = "IN"
    GT = "GT"
    GTE = "GTE"
    LT = "LT"
    LTE = "LTE"


class Field(StrEnum):
    """A field a video-query condition can test."""

    USERNAME = "username"
    HASHTAG_NAME = "hashtag_name"
    KEYWORD = "keyword"
    VIDEO_ID = "video_id"
    MUSIC_ID = "music_id"
    EFFECT_ID = "effect_id"
    REGION_CODE = "region_code"
    VIDEO_LENGTH = "video_length"  # SHORT (<15 s), MID (15-60 s), LONG (1-5 min), EXTRA_LONG (>5 min)
    CREATE_DATE = "create_date"  # YYYYMMDD


@dataclass(frozen=True, slots=True)
class Cond:
    """One condition: `field` `op` `values`."""

    field: Field
    values: tuple[str, ...]
    op: Op = Op.EQ

    def as_json(self) -> dict[str, Any]:
        """The condition as the API takes it."""
        return {"operation": self.op.value, "field_name": self.field.value, "field_values": list(self.values)}


def cond(field: Field, *values: str, op: Op | None = None) -> Cond:
    """A condition; with no `op`, EQ for one value and IN for several."""
    if not values:
        raise ValueError("a condition needs at least one value")
    return Cond(field, tuple(values), op or (Op.EQ if len(values) == 1 else Op.IN))


@dataclass(frozen=True, slots=True)
class Query:
    """A video query: all of `and_`, at least one of `or_` (when given), none of `not_`."""

    and_: tuple[Cond, ...] = ()
    or_: tuple[Cond, ...] = ()
    not_: tuple[Cond, ...] = ()

    def __post_init__(self) -> None:
        if not (self.and_ or self.or_ or self.not_):
            raise ValueError("a query needs at least one condition")

    def as_json(self) -> dict[str, Any]:
        """The query object of a request body; empty lists are left out."""
        out: dict[str, Any] = {}
        for key, conds in (("and", self.and_), ("or", self.or_), ("not", self.not_)):
            if conds:
                out[key] = [c.as_json() for c in conds]
        return out


@dataclass(frozen=True, slots=True)
class VideoPage:
    """One page of a video query; pass `cursor` and `search_id` back for the next while `has_more`."""

    posts: tuple[Post, ...]
    cursor: int
    has_more: bool
    search_id: str | None


def date_windows(start: date, end: date, days: int = MAX_WINDOW_DAYS) -> list[tuple[date, date]]:
    """Split the inclusive range start..end into windows whose end is at most `days` after their start."""
    if end < start:
        raise ValueError("end date before start date")
    if days < 1:
        raise ValueError("days must be at least 1")
    # Each window covers `days` calendar days (end - start = days - 1): safe whether the API's end is
    # inclusive or not, which its documentation leaves unclear.
    windows = []
    cursor = start
    while cursor <= end:
        last = min(cursor + timedelta(days=days - 1), end)
        windows.append((cursor, last))
        cursor = last + timedelta(days=1)
    return windows


def _ymd(day: date) -> str:
    return day.strftime("%Y%m%d")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class DailyQuota:
    """Counts requests sent per UTC day and refuses, before sending, once `limit` are spent.

    The count lives in a `services.shared.Counters` (per process, or in Redis: one quota for every replica).
    """

    def __init__(
        self, limit: int, now: Callable[[], datetime] = _utcnow, *, counters: Counters | None = None
    ) -> None:
        self.limit = limit
        self._now = now
        self._counters: Counters = counters if counters is not None else MemoryCounters()

    def _key(self) -> str:
        return "research-quota:" + self._now().astimezone(UTC).date().isoformat()

    async def used(self) -> int:
        """Requests counted today."""
        return await self._counters.value(self._key())

    async def remaining(self) -> int:
        """Requests left today."""
        return max(self.limit - await self.used(), 0)

    def _spent(self) -> QuotaExceeded:
        return QuotaExceeded(
            f"Research API daily quota of {self.limit} requests is spent; it resets at 00:00 UTC",
            upstream=UPSTREAM,
        )

    async def check(self) -> None:
        """Raise QuotaExceeded if today's quota is spent."""
        if await self.used() >= self.limit:
            raise self._spent()

    async def take(self) -> None:
        """Count one request, or raise QuotaExceeded if today's quota is spent."""
        # A day's key outlives the day by one, whatever clock skew between replicas.
        if not await self._counters.take(self._key(), self.limit, 2 * 86400):
            raise self._spent()


class RateLimiter:
    """Spaces request starts at least 1/qps seconds apart."""

    def __init__(
        self,
        qps: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if qps <= 0:
            raise ValueError("qps must be positive")
        self._interval = 1.0 / qps
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        """Return when the next request may start."""
        async with self._lock:
            now = self._clock()
            delay = self._next - now
            self._next = max(now, self._next) + self._interval
            if delay > 0:
                await self._sleep(delay)


class ResearchClient:
    """The Research API endpoints the bot uses; every method returns its model and the requests it spent."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        client_key: str,
        client_secret: str,
        *,
        base_url: str = DEFAULT_URL,
        qps: float = 5.0,
        daily_quota: int = 1000,
        retries: int = 3,
        backoff: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = _utcnow,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        counters: Counters | None = None,
    ) -> None:
        self._client = client
        self._key = client_key
        self._secret = client_secret
        self._base = base_url.rstrip("/")
        self._policy = RetryPolicy(retries=retries, backoff=backoff)
        self._clock = clock
        self._now = now
        self.quota = DailyQuota(daily_quota, now, counters=counters)
        self._limiter = RateLimiter(qps, clock, sleep)
        self._token: str | None = None
        self._refresh_at = 0.0
        self._token_lock = asyncio.Lock()
        self.token_fetches = 0

    # --- endpoints ---

    async def query_videos(
        self,
        query: Query,
        start: date,
        end: date,
        *,
        fields: Sequence[str] = VIDEO_FIELDS,
        max_count: int = MAX_COUNT,
        cursor: int | None = None,
        search_id: str | None = None,
        is_random: bool = False,
    ) -> Metered[VideoPage]:
        """One page of a video query over one window of at most 30 days."""
        if (end - start).days > MAX_WINDOW_DAYS or end < start:
            raise ValueError("a query window runs forward and spans at most 30 days; see date_windows")
        if not 1 <= max_count <= MAX_COUNT:
            raise ValueError(f"max_count must be 1..{MAX_COUNT}")
        body: dict[str, Any] = {
            "query": query.as_json(),
            "start_date": _ymd(start),
            "end_date": _ymd(end),
            "max_count": max_count,
            "is_random": is_random,
        }
        if cursor is not None:
            body["cursor"] = cursor
        if search_id is not None:
            body["search_id"] = search_id
        data, requests = await self._post(VIDEO_QUERY_PATH, fields, body, subject="video")
        raw = [v for v in as_list(data.get("videos")) if isinstance(v, Mapping)]
        posts = tuple(p for p in map(post_from_research, raw) if p is not None)  # never one without an id
        sid = data.get("search_id")
        page = VideoPage(
            posts=posts,
            cursor=_int(data.get("cursor"), (cursor or 0) + len(raw)),
            has_more=bool(data.get("has_more")),
            search_id=str(sid) if sid not in (None, "") else None,
        )
        return Metered(page, 0, requests)

    async def iter_video_pages(
        self,
        query: Query,
        start: date,
        end: date,
        *,
        fields: Sequence[str] = VIDEO_FIELDS,
        max_count: int = MAX_COUNT,
    ) -> AsyncGenerator[Metered[VideoPage], None]:
        """Every page of a query over any date range: one window of ≤30 days at a time, each to its end."""
        for first, last in date_windows(start, end):
            cursor: int | None = None
            search_id: str | None = None
            while True:
                got = await self.query_videos(
                    query, first, last, fields=fields, max_count=max_count, cursor=cursor, search_id=search_id
                )
                yield got
                page = got.value
                if not page.has_more or page.cursor == cursor:
                    break
                cursor, search_id = page.cursor, page.search_id

    async def videos(
        self,
        query: Query,
        start: date,
        end: date,
        *,
        fields: Sequence[str] = VIDEO_FIELDS,
        limit: int | None = None,
        max_count: int = MAX_COUNT,
    ) -> Metered[tuple[Post, ...]]:
        """All posts matching `query` between two dates (inclusive), or the first `limit` of them."""
        posts: list[Post] = []
        requests = 0
        pages = self.iter_video_pages(query, start, end, fields=fields, max_count=max_count)
        try:
            async for got in pages:
                requests += got.requests
                posts.extend(got.value.posts)
                if limit is not None and len(posts) >= limit:
                    break
        finally:
            await pages.aclose()
        return Metered(tuple(posts[:limit] if limit is not None else posts), 0, requests)

    async def post(self, post_id: str) -> Metered[Post]:
        """One post by id: its id carries its creation time, so a one-day window around it finds it."""
        created = created_from_id(post_id)
        if created is None or created.year < 2014 or created > self._now() + timedelta(days=1):
            raise InvalidLink(f"{post_id} is not a TikTok post id", upstream=UPSTREAM)
        day = created.astimezone(UTC).date()
        query = Query(and_=(cond(Field.VIDEO_ID, post_id),))
        got = await self.query_videos(query, day, day + timedelta(days=1), max_count=1)
        match = next((p for p in got.value.posts if p.id == post_id), None)
        if match is None:
            raise NotFound(
                "the Research API has no public post by that id (deleted, private or not indexed yet)",
                upstream=UPSTREAM,
            )
        return Metered(match, 0, got.requests)

    async def hashtag_posts(
        self, tag: str, *, offset: int = 0, limit: int = 10, days: int = MAX_WINDOW_DAYS
    ) -> Metered[HashtagPage]:
        """Posts `offset..offset+limit` of a hashtag's last `days` days; `next_cursor` is the next offset."""
        if limit < 1 or offset < 0:
            raise ValueError("limit must be positive and offset not negative")
        today = self._now().astimezone(UTC).date()
        # `days` calendar days including today: exactly one window, so one request per page.
        start = today - timedelta(days=min(max(days, 1), MAX_WINDOW_DAYS) - 1)
        query = Query(and_=(cond(Field.HASHTAG_NAME, tag),))
        wanted = offset + limit
        posts: list[Post] = []
        requests = 0
        more = False
        pages = self.iter_video_pages(query, start, today, max_count=min(wanted, MAX_COUNT))
        try:
            async for got in pages:
                requests += got.requests
                posts.extend(got.value.posts)
                more = got.value.has_more
                if len(posts) >= wanted:
                    break
        finally:
            await pages.aclose()
        shown = tuple(posts[offset:wanted])
        has_next = more or len(posts) > wanted
        page = HashtagPage(tag=tag, posts=shown, next_cursor=str(wanted) if has_next else None)
        return Metered(page, 0, requests)

    async def user_info(self, username: str) -> Metered[Profile]:
        """A profile by username."""
        data, requests = await self._post(USER_INFO_PATH, USER_FIELDS, {"username": username}, subject="user")
        return Metered(profile_from_research(data, username), 0, requests)

    async def video_comments(
        self, video_id: str, *, cursor: int = 0, max_count: int = MAX_COUNT
    ) -> Metered[CommentPage]:
        """One page of a post's comments (only the first 1,000 are ever retrievable)."""
        if not 1 <= max_count <= MAX_COUNT:
            raise ValueError(f"max_count must be 1..{MAX_COUNT}")
        body = {
            "video_id": int(video_id) if video_id.isdigit() else video_id,
            "max_count": max_count,
            "cursor": cursor,
        }
        data, requests = await self._post(COMMENTS_PATH, COMMENT_FIELDS, body, subject="video")
        comments = tuple(
            comment_from_research(c) for c in as_list(data.get("comments")) if isinstance(c, Mapping)
        )
        page = CommentPage(
            comments=comments,
            cursor=_int(data.get("cursor"), cursor + len(comments)),
            has_more=bool(data.get("has_more")),
        )
        return Metered(page, 0, requests)

    # --- the token ---

    async def access_token(self) -> str:
        """A valid client access token: the cached one, or a fresh one shortly before it would expire."""
        async with self._token_lock:
            if self._token is not None and self._clock() < self._refresh_at:
                return self._token
            self._token = None
            token, expires_in = await self._fetch_token()
            # Refresh a little early so a request never leaves with a token that expires on the way.
            margin = min(60.0, expires_in / 10)
            self._token, self._refresh_at = token, self._clock() + max(expires_in - margin, 0.0)
            return token

    def _forget_token(self, token: str) -> None:
        if self._token == token:
            self._token = None

    async def _fetch_token(self) -> tuple[str, float]:
        form = {"client_key": self._key, "client_secret": self._secret, "grant_type": "client_credentials"}
        self.token_fetches += 1
        try:
            response = await self._client.post(
                self._base + TOKEN_PATH, data=form, headers={"Cache-Control": "no-cache"}
            )
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout("Research API token request timed out", upstream=UPSTREAM) from exc
        except httpx.TransportError as exc:
            raise UpstreamError(
                f"Research API unreachable ({type(exc).__name__})", upstream=UPSTREAM
            ) from exc
        body = json_or_none(response)
        token = body.get("access_token") if isinstance(body, Mapping) else None
        if isinstance(token, str) and token:
            expires = body.get("expires_in") if isinstance(body, Mapping) else None
            return token, float(expires) if isinstance(expires, int | float) else 7200.0
        error = as_map(body).get("error") or "no access_token"
        description = as_map(body).get("error_description") or ""
        status = response.status_code
        if status >= 500:
            raise UpstreamError(
                f"Research API token request failed ({status})", upstream=UPSTREAM, status=status
            )
        raise UpstreamRejected(
            f"Research API refused the client credentials: {error} {description}".strip(),
            upstream=UPSTREAM,
            status=status,
        )

    # --- the request loop ---

    async def _post(
        self, path: str, fields: Sequence[str], body: Mapping[str, Any], *, subject: str
    ) -> tuple[Mapping[str, Any], int]:
        """POST a data endpoint within quota and pace; return its `data` and the requests sent."""
        # Quota first (nothing is sent once it is spent), one token refresh on 401, retries on 5xx/transport.
        url = self._base + path
        params = {"fields": ",".join(fields)} if fields else None
        requests = 0
        refreshed = False
        try:
            async for attempt in self._policy.attempts():
                with attempt:
                    while True:  # one attempt; a refreshed token asks again within it
                        # Once today's quota is spent, nothing is sent: not even a token request.
                        await self.quota.check()
                        token = await self.access_token()
                        await self.quota.take()
                        await self._limiter.wait()
                        requests += 1
                        try:
                            response = await self._client.post(
                                url, params=params, json=body, headers={"Authorization": f"Bearer {token}"}
                            )
                        except httpx.ReadTimeout as exc:
                            raise UpstreamTimeout(
                                "Research API did not answer in time", upstream=UPSTREAM
                            ) from exc
                        except httpx.TimeoutException as exc:
                            late = UpstreamTimeout(
                                "Research API could not be reached in time", upstream=UPSTREAM
                            )
                            raise RetryAnswer(late) from exc
                        except httpx.TransportError as exc:
                            unreachable = f"Research API unreachable ({type(exc).__name__})"
                            raise RetryAnswer(UpstreamError(unreachable, upstream=UPSTREAM)) from exc
                        status = response.status_code
                        payload = json_or_none(response)
                        if not isinstance(payload, Mapping) and status < 500:
                            raise UpstreamError(
                                f"Research API answered {status} without a JSON envelope",
                                upstream=UPSTREAM,
                                status=status,
                            )
                        error = as_map(as_map(payload).get("error"))
                        code = str(error.get("code") or "")
                        message = str(error.get("message") or "")
                        if status == 200 and code == "ok":
                            return as_map(as_map(payload).get("data")), requests
                        if status == 401 and code in ("access_token_invalid", "") and not refreshed:
                            refreshed = True
                            self._forget_token(token)
                            continue
                        if status < 500 and code != "internal_error":
                            raise map_error(status, code, message, subject)
                        failed = f"Research API failed ({status} {code})".strip()
                        raise RetryAnswer(UpstreamError(failed, upstream=UPSTREAM, status=status))
        except RetryAnswer as exc:
            raise exc.failure from exc.__cause__
        raise UpstreamError("Research API did not answer", upstream=UPSTREAM)  # zero attempts configured


def map_error(status: int, code: str, message: str, subject: str) -> ServiceError:
    """The ServiceError for a Research API error reply that is not worth retrying."""
    said = f" (Research API: {message})" if message else ""
    lowered = message.lower()
    if status == 429 or code == "rate_limit_exceeded":
        return QuotaExceeded(
            f"Research API rate limit or daily quota reached{said}; the quota resets at 00:00 UTC",
            upstream=UPSTREAM,
        )
    if "cannot find the user" in lowered:
        return UserNotFound(f"no such TikTok user{said}", upstream=UPSTREAM)
    if "cannot return this user" in lowered:
        return PostUnavailable(
            UnavailableReason.PRIVATE_ACCOUNT,
            f"TikTok does not share this account's information (private or restricted){said}",
            upstream=UPSTREAM,
        )
    if "cannot find the video" in lowered:
        return NotFound(f"no such public post{said}", upstream=UPSTREAM)
    if "search id" in lowered and "expired" in lowered:
        # A known API hiccup: the paging state vanished. Another provider may still answer.
        return UpstreamError(f"Research API lost the search{said}", upstream=UPSTREAM, status=status)
    if code in ("scope_not_authorized", "scope_permission_missed"):
        return UpstreamRejected(
            f"Research API access is not approved for this {subject} request{said}",
            upstream=UPSTREAM,
            status=status,
        )
    if status == 401 or code == "access_token_invalid":
        return UpstreamRejected(
            f"Research API rejected the access token{said}", upstream=UPSTREAM, status=status
        )
    if code in ("invalid_params", "invalid_param", "invalid_request"):
        return UpstreamRejected(
            f"Research API rejected the {subject} request{said}", upstream=UPSTREAM, status=status
        )
    return UpstreamRejected(
        f"Research API answered {status} {code}{said}".strip(), upstream=UPSTREAM, status=status
    )


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default
