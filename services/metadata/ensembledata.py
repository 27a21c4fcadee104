"""EnsembleData client: TikTok posts, users and hashtags, each answer with the units it cost.

Protocol (see the reference notes): every endpoint is a GET with the token as a query parameter; a reply
is a success iff its JSON body has a `data` key; errors are `{"detail": ...}` with a status code that says
what went wrong; the `units_charged` response header says what the call cost.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
    HashtagPage,
    Metered,
    Post,
    PostPage,
    Profile,
    post_from_aweme,
    profile_from_mobile,
    profile_from_web,
)
from services.retry import RetryAnswer, RetryPolicy, retry_after

UPSTREAM = "ensembledata"
DEFAULT_URL = "https://ensembledata.com/apis"
MAX_POST_IDS = 100
HASHTAG_PAGE_SIZE = 20  # what /tt/hashtag/posts returns per page, roughly
POST_RESTRICTED = 520  # a 5xx code that is an answer, not a failure: never retried


class Subject(StrEnum):
    """What a call asks about; the same status means different things for a post and a user."""

    POST = "post"
    USER = "user"
    HASHTAG = "hashtag"


@dataclass(frozen=True, slots=True)
class _Reply:
    """A successful reply: the whole JSON body, and what getting it cost."""

    body: Mapping[str, Any]
    units: int
    requests: int


def units_charged(response: httpx.Response) -> int:
    """The `units_charged` header as an int (0 when absent or unreadable)."""
    value = response.headers.get("units_charged", "").strip()
    try:
        return max(int(float(value)), 0) if value else 0
    except ValueError:
        return 0


def _detail(body: Any) -> str:
    """The human-readable `detail` of an error body (FastAPI validation errors carry a list)."""
    detail = body.get("detail") if isinstance(body, Mapping) else None
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list) and detail and isinstance(detail[0], Mapping):
        first = detail[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "query")
        return f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg", "invalid"))
    return ""


def _restricted_reason(detail: str) -> UnavailableReason:
    """Why a 520 "post restricted" post cannot be served, from the words of its detail."""
    text = detail.lower()
    if "private" in text:
        return UnavailableReason.PRIVATE
    if "age" in text:
        return UnavailableReason.AGE
    return UnavailableReason.REGION


def map_error(status: int, detail: str, subject: Subject) -> ServiceError:
    """The ServiceError for an EnsembleData error status (not 429/5xx, which are retried first)."""
    said = f" (EnsembleData {status}: {detail})" if detail else f" (EnsembleData {status})"
    if status == 462:
        return InvalidLink(f"not a TikTok post URL{said}", upstream=UPSTREAM)
    if status in (463, 473):
        return UserNotFound(f"no such TikTok user{said}", upstream=UPSTREAM)
    if status == 472:
        return PostUnavailable(
            UnavailableReason.PRIVATE_ACCOUNT, f"the account is private{said}", upstream=UPSTREAM
        )
    if status == POST_RESTRICTED:
        return PostUnavailable(_restricted_reason(detail), f"the post is restricted{said}", upstream=UPSTREAM)
    if status == 404:
        if subject is Subject.POST:
            return PostUnavailable(UnavailableReason.DELETED, f"the post is gone{said}", upstream=UPSTREAM)
        if subject is Subject.USER:
            return UserNotFound(f"no such TikTok user{said}", upstream=UPSTREAM)
        return NotFound(f"nothing found{said}", upstream=UPSTREAM)
    if status == 495:
        return QuotaExceeded(f"EnsembleData units are depleted{said}", upstream=UPSTREAM)
    if status == 491:
        return UpstreamRejected(f"EnsembleData rejected the token{said}", upstream=UPSTREAM, status=status)
    if status == 492:
        return UpstreamRejected(
            f"EnsembleData account e-mail is unverified{said}", upstream=UPSTREAM, status=status
        )
    if status == 493:
        return UpstreamRejected(
            f"EnsembleData subscription has expired{said}", upstream=UPSTREAM, status=status
        )
    if status == 464:
        return UpstreamRejected(f"too many post ids in one call{said}", upstream=UPSTREAM, status=status)
    if status == 422:
        return UpstreamRejected(f"EnsembleData rejected a parameter{said}", upstream=UPSTREAM, status=status)
    return UpstreamRejected(f"EnsembleData refused the request{said}", upstream=UPSTREAM, status=status)


class EnsembleDataClient:
    """The EnsembleData TikTok endpoints the bot uses; every method returns its model with the units spent."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        token: str,
        *,
        base_url: str = DEFAULT_URL,
        retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        self._client = client
        self._token = token
        self._base = base_url.rstrip("/")
        self._policy = RetryPolicy(retries=retries, backoff=backoff)
        self.units_spent = 0  # every unit charged through this client, failed calls included
        self.requests_sent = 0

    async def used_units(self, day: str) -> int:
        """Units the account spent on `day` (`YYYY-MM-DD`, UTC), from `/customer/get-used-units` (free)."""
        reply = await self._get("/customer/get-used-units", {"date": day}, Subject.USER)
        data = reply.body.get("data")
        if isinstance(data, Mapping):  # some plans answer {"units": N, ...}
            data = data.get("units", data.get("used_units"))
        if isinstance(data, bool) or not isinstance(data, int | float | str) or not str(data).isdigit():
            raise UpstreamError("EnsembleData sent no unit count", upstream=UPSTREAM)
        return int(data)

    async def post_info(self, url: str) -> Metered[Post]:
        """One post by its full web URL (`/tt/post/info`)."""
        reply = await self._get("/tt/post/info", {"url": url}, Subject.POST)
        items = [p for p in as_list(reply.body.get("data")) if isinstance(p, Mapping)]
        if not items:
            raise PostUnavailable(
                UnavailableReason.DELETED, "EnsembleData returned no post", upstream=UPSTREAM
            )
        return Metered(post_from_aweme(items[0]), reply.units, reply.requests)

    async def multi_post_info(self, ids: Sequence[str]) -> Metered[tuple[Post, ...]]:
        """Up to 100 posts by id in one call (`/tt/post/multi-info`); missing posts are simply absent."""
        if not ids:
            return Metered(())
        if len(ids) > MAX_POST_IDS:
            raise ValueError(f"multi_post_info takes at most {MAX_POST_IDS} ids, got {len(ids)}")
        reply = await self._get("/tt/post/multi-info", {"ids": ";".join(ids)}, Subject.POST)
        posts = tuple(post_from_aweme(p) for p in as_list(reply.body.get("data")) if isinstance(p, Mapping))
        return Metered(posts, reply.units, reply.requests)

    async def user_info(self, username: str) -> Metered[Profile]:
        """A profile by username (`/tt/user/info`, web camelCase shape)."""
        reply = await self._get("/tt/user/info", {"username": username}, Subject.USER)
        profile = profile_from_web(as_map(reply.body.get("data")))
        if not profile.username:
            raise UpstreamError("EnsembleData user info had no user", upstream=UPSTREAM)
        return Metered(profile, reply.units, reply.requests)

    async def user_info_from_secuid(self, sec_uid: str) -> Metered[Profile]:
        """A profile by secUid (`/tt/user/info-from-secuid`, mobile snake_case shape)."""
        reply = await self._get("/tt/user/info-from-secuid", {"secUid": sec_uid}, Subject.USER)
        profile = profile_from_mobile(as_map(as_map(reply.body.get("data")).get("user")))
        if not profile.username:
            raise UpstreamError("EnsembleData user info had no user", upstream=UPSTREAM)
        return Metered(profile, reply.units, reply.requests)

    async def user_posts(self, username: str, depth: int = 1, cursor: str | None = None) -> Metered[PostPage]:
        """A user's posts, newest first, `depth` chunks of about ten (`/tt/user/posts`)."""
        params: dict[str, str | int] = {"username": username, "depth": depth}
        if cursor is not None:
            params["start_cursor"] = cursor
        reply = await self._get("/tt/user/posts", params, Subject.USER)
        # This endpoint's body is top-level: {"data": [aweme...], "nextCursor": ...}.
        posts = tuple(post_from_aweme(p) for p in as_list(reply.body.get("data")) if isinstance(p, Mapping))
        return Metered(PostPage(posts, _cursor(reply.body.get("nextCursor"))), reply.units, reply.requests)

    async def hashtag_posts(self, tag: str, cursor: int | None = None) -> Metered[HashtagPage]:
        """One page (about 20) of a hashtag's posts (`/tt/hashtag/posts`); `next_cursor` None at the end."""
        params: dict[str, str | int] = {"name": tag}
        if cursor is not None:
            params["cursor"] = cursor
        reply = await self._get("/tt/hashtag/posts", params, Subject.HASHTAG)
        data = as_map(reply.body.get("data"))
        posts = tuple(post_from_aweme(p) for p in as_list(data.get("data")) if isinstance(p, Mapping))
        page = HashtagPage(tag=tag, posts=posts, next_cursor=_cursor(data.get("nextCursor")))
        return Metered(page, reply.units, reply.requests)

    async def first_posts(
        self, tag: str, limit: int, *, cursor: int = 0, max_pages: int | None = None
    ) -> Metered[HashtagPage]:
        """At most `limit` posts of a hashtag from `cursor`, in as few pages as that takes (bounded)."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        # Pages can come back short (hidden posts are filtered), so allow one page of slack, no more.
        pages_left = max_pages if max_pages is not None else math.ceil(limit / HASHTAG_PAGE_SIZE) + 1
        posts: list[Post] = []
        units = requests = 0
        position: int | None = cursor
        while position is not None and len(posts) < limit and pages_left > 0:
            pages_left -= 1
            got = await self.hashtag_posts(tag, position)
            units, requests = units + got.units, requests + got.requests
            wanted = limit - len(posts)
            taken = got.value.posts[:wanted]
            posts.extend(taken)
            upstream_next = _int_cursor(got.value.next_cursor)
            if len(taken) < len(got.value.posts):
                # Stopped inside this page: its cursors are post offsets, so resume after the last taken.
                position = position + len(taken)
            elif upstream_next is None or upstream_next <= position:
                position = None  # the end, or a cursor that does not advance
            else:
                position = upstream_next
        page = HashtagPage(
            tag=tag, posts=tuple(posts), next_cursor=None if position is None else str(position)
        )
        return Metered(page, units, requests)

    async def _get(self, path: str, params: Mapping[str, str | int], subject: Subject) -> _Reply:
        """GET an endpoint with retries on transport errors, 429 and 5xx; map every other failure."""
        url = self._base + path
        query = {"token": self._token, **params}
        units = requests = 0
        try:
            async for attempt in self._policy.attempts():
                with attempt:
                    try:
                        response = await self._client.get(url, params=query)
                    except httpx.ReadTimeout as exc:
                        # The request arrived and may have been charged; asking again could charge twice.
                        raise UpstreamTimeout(
                            "EnsembleData did not answer in time", upstream=UPSTREAM
                        ) from exc
                    except httpx.TimeoutException as exc:
                        raise RetryAnswer(
                            UpstreamTimeout("EnsembleData could not be reached in time", upstream=UPSTREAM)
                        ) from exc
                    except httpx.TransportError as exc:
                        # The message never includes the URL: it carries the token.
                        raise RetryAnswer(
                            UpstreamError(
                                f"EnsembleData unreachable ({type(exc).__name__})", upstream=UPSTREAM
                            )
                        ) from exc
                    requests += 1
                    charged = units_charged(response)
                    units += charged
                    self.units_spent += charged
                    self.requests_sent += 1
                    body = json_or_none(response)
                    if isinstance(body, Mapping) and "data" in body:
                        return _Reply(body, units, requests)
                    status = response.status_code
                    if status == 429 or (status >= 500 and status != POST_RESTRICTED):
                        detail = _detail(body)
                        said = f": {detail}" if detail else ""
                        raise RetryAnswer(
                            UpstreamError(
                                f"EnsembleData answered {status}{said}", upstream=UPSTREAM, status=status
                            ),
                            wait=retry_after(response) if status in (429, 503) else None,
                        )
                    if body is None:
                        raise UpstreamError(
                            f"EnsembleData answered {status} without JSON", upstream=UPSTREAM, status=status
                        )
                    raise map_error(status, _detail(body), subject)
        except RetryAnswer as exc:
            raise exc.failure from exc.__cause__
        raise UpstreamError("EnsembleData did not answer", upstream=UPSTREAM)  # zero attempts configured


def _cursor(value: Any) -> str | None:
    """A `nextCursor` as a string; absent, null, empty or false means the end."""
    if value is None or value is False or value == "":
        return None
    return str(value)


def _int_cursor(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None
