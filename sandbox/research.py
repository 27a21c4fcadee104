"""TikTok Research API emulator: client-credentials tokens, video query, user info and comments.

Faithful to the reference notes: a form-encoded token endpoint; JSON POSTs with `fields` in the query string
answering `{"data": ..., "error": {"code", "message", "log_id"}}`; 401 `access_token_invalid` for a missing or
expired token; 429 `rate_limit_exceeded` once the daily request quota is spent; 400 `invalid_params` for bad
fields, dates more than 30 days apart, `max_count` over 100, unknown users and expired search ids.
Control: `emu.fault_next("500", count=2)`, `emu.token_ttl = 1`, `emu.expire_tokens()`, `emu.daily_quota = 0`,
or over HTTP `POST /_control/faults` and `POST /_control/state {"token_ttl": 1, "daily_quota": 0, ...}`.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar

from aiohttp import web

from sandbox.base import Emulator
from sandbox.catalogue import CATALOGUE, Catalogue, FixturePost, Status, post_id_at
from sandbox.faults import TRANSPORT_FAULTS, Target, play_transport

CLIENT_KEY = "sandbox-research-key"
CLIENT_SECRET = "sandbox-research-secret"  # noqa: S105 - the sandbox's own credentials
MAX_DAYS = 30
MAX_COUNT = 100
MAX_COMMENTS = 1000  # only the first thousand comments of a post are retrievable
# The public API sees public posts only; region- and age-restricted ones are still public somewhere.
PUBLIC = (Status.OK, Status.AGE, Status.REGION)

VIDEO_FIELDS = frozenset(
    [
        "id",
        "video_description",
        "create_time",
        "region_code",
        "share_count",
        "view_count",
        "like_count",
        "comment_count",
        "music_id",
        "hashtag_names",
        "username",
        "effect_ids",
        "playlist_id",
        "voice_to_text",
        "is_stem_verified",
        "favorites_count",
        "video_duration",
        "hashtag_info_list",
        "sticker_info_list",
        "effect_info_list",
        "video_mention_list",
        "video_label",
        "video_tag",
    ]
)
USER_FIELDS = frozenset(
    [
        "display_name",
        "bio_description",
        "avatar_url",
        "is_verified",
        "follower_count",
        "following_count",
        "likes_count",
        "video_count",
        "open_id",
        "is_private",
    ]
)
COMMENT_FIELDS = frozenset(
    ["id", "video_id", "text", "like_count", "reply_count", "parent_comment_id", "create_time"]
)
CONDITION_FIELDS = frozenset(
    [
        "username",
        "hashtag_name",
        "keyword",
        "video_id",
        "music_id",
        "effect_id",
        "region_code",
        "video_length",
        "create_date",
    ]
)
OPERATIONS = frozenset({"EQ", "IN", "GT", "GTE", "LT", "LTE"})


class ApiError(Exception):
    """An error reply: HTTP status, error code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def invalid(message: str) -> ApiError:
    """A 400 invalid_params error."""
    return ApiError(400, "invalid_params", message)


def _log_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S") + secrets.token_hex(10).upper()


def envelope(data: Any, code: str = "ok", message: str = "", status: int = 200) -> web.Response:
    """A reply in the Research API envelope."""
    body = {"data": data, "error": {"code": code, "message": message, "log_id": _log_id()}}
    return web.json_response(body, status=status)


def _ymd(text: Any, name: str) -> date:
    if not isinstance(text, str) or len(text) != 8 or not text.isdigit():
        raise invalid(f"Invalid parameters: {name} must be a date in YYYYMMDD format")
    try:
        return datetime.strptime(text, "%Y%m%d").replace(tzinfo=UTC).date()
    except ValueError:
        raise invalid(f"Invalid parameters: {name} {text} is not a date") from None


def _length_bucket(seconds: int) -> str:
    if seconds < 15:
        return "SHORT"
    if seconds <= 60:
        return "MID"
    if seconds <= 300:
        return "LONG"
    return "EXTRA_LONG"


def _values_of(post: FixturePost, field: str) -> list[str]:
    """What a condition on `field` compares against, for one post."""
    created = datetime.fromtimestamp(post.created, tz=UTC)
    return {
        "username": [post.author],
        "hashtag_name": [t.lower() for t in post.hashtags],
        "keyword": [post.description.lower()],
        "video_id": [post.id],
        "music_id": [post.music_id],
        "effect_id": [],
        "region_code": [post.region],
        "video_length": [_length_bucket(post.duration)],
        "create_date": [created.strftime("%Y%m%d")],
    }[field]


def _compare(left: str, right: str, op: str) -> bool:
    a: int | str
    b: int | str
    a, b = (int(left), int(right)) if left.isdigit() and right.isdigit() else (left, right)
    if op == "GT":
        return a > b  # type: ignore[operator]
    if op == "GTE":
        return a >= b  # type: ignore[operator]
    if op == "LT":
        return a < b  # type: ignore[operator]
    return a <= b  # type: ignore[operator]


def _holds(post: FixturePost, condition: Mapping[str, Any]) -> bool:
    field = condition["field_name"]
    op = condition["operation"]
    wanted = [str(v) for v in condition["field_values"]]
    have = _values_of(post, field)
    if field == "keyword":
        return any(w.lower() in have[0] for w in wanted)
    if field in ("hashtag_name", "region_code", "username"):
        wanted = [w.lower() for w in wanted]
        have = [h.lower() for h in have]
    if op in ("EQ", "IN"):
        return any(h in wanted for h in have)
    return bool(wanted) and any(_compare(h, wanted[0], op) for h in have)


def _check_query(query: Any) -> Mapping[str, Any]:
    if not isinstance(query, Mapping):
        raise invalid("Invalid parameters: query is required")
    if not any(query.get(k) for k in ("and", "or", "not")):
        raise invalid("Invalid parameters: query needs at least one condition in and, or or not")
    for key in ("and", "or", "not"):
        conds = query.get(key) or []
        if not isinstance(conds, list):
            raise invalid(f"Invalid parameters: query.{key} must be a list")
        for c in conds:
            if not isinstance(c, Mapping):
                raise invalid("Invalid parameters: a condition must be an object")
            if c.get("field_name") not in CONDITION_FIELDS:
                raise invalid(f"Invalid parameters: unknown field_name {c.get('field_name')!r}")
            if c.get("operation") not in OPERATIONS:
                raise invalid(f"Invalid parameters: unknown operation {c.get('operation')!r}")
            values = c.get("field_values")
            if not isinstance(values, list) or not values:
                raise invalid("Invalid parameters: field_values must be a non-empty list")
    return query


def _matches(post: FixturePost, query: Mapping[str, Any]) -> bool:
    if not all(_holds(post, c) for c in query.get("and") or []):
        return False
    ors = query.get("or") or []
    if ors and not any(_holds(post, c) for c in ors):
        return False
    return not any(_holds(post, c) for c in query.get("not") or [])


def _pick(full: Mapping[str, Any], fields: list[str]) -> dict[str, Any]:
    return {f: full[f] for f in fields if f in full}


Handler = Callable[[list[str], Mapping[str, Any]], Awaitable[Any]]


class ResearchEmulator(Emulator):
    """open.tiktokapis.com's research endpoints over loopback."""

    name = "research"
    FAULTS: ClassVar[Mapping[str, str]] = TRANSPORT_FAULTS
    FAULT_STATUSES: ClassVar[str | None] = (
        'that status in the error envelope: 429 "rate_limit_exceeded", any other "internal_error"'
    )

    def __init__(
        self,
        catalogue: Catalogue = CATALOGUE,
        *,
        client_key: str = CLIENT_KEY,
        client_secret: str = CLIENT_SECRET,
        token_ttl: int = 7200,
        daily_quota: int = 1000,
        clock: Callable[[], float] = time.monotonic,
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
    ) -> None:
        super().__init__()
        self.catalogue = catalogue
        self.client_key = client_key
        self.client_secret = client_secret
        self.token_ttl = token_ttl  # seconds; the `expires_in` of new tokens
        self.daily_quota = daily_quota  # data requests per UTC day before 429
        self.requests_today = 0
        self._quota_day: date | None = None
        self._clock = clock
        self._today = today
        self.tokens: dict[str, float] = {}  # token -> expiry on `clock`
        self.searches: dict[str, list[str]] = {}  # search_id -> matching post ids
        self.bodies: list[tuple[str, dict[str, Any]]] = []  # (path, JSON body) of each data request served
        self._search_ids = itertools.count(7201388232438386694)
        # TikTok's own example responses (query videos) carry the requested `id` as `video_id`, and the saves
        # counter is also seen spelt `favourites_count`: set these to play those shapes.
        self.video_id_key = "id"
        self.saves_key = "favorites_count"

    def expire_tokens(self) -> None:
        """Invalidate every token issued so far (the next data request gets a 401)."""
        self.tokens.clear()

    def env(self) -> dict[str, str]:
        """RESEARCH__URL and credentials this emulator accepts."""
        return {
            "RESEARCH__URL": self.base_url,
            "RESEARCH__CLIENT_KEY": self.client_key,
            "RESEARCH__CLIENT_SECRET": self.client_secret,
        }

    def routes(self, app: web.Application) -> None:
        """The token endpoint, the research endpoints and the control endpoints."""
        app.router.add_post("/v2/oauth/token/", self._token)
        app.router.add_post("/v2/research/video/query/", self._serve(VIDEO_FIELDS, self._video_query))
        app.router.add_post("/v2/research/user/info/", self._serve(USER_FIELDS, self._user_info))
        app.router.add_post("/v2/research/video/comment/list/", self._serve(COMMENT_FIELDS, self._comments))
        app.router.add_post("/_control/state", self._control_state)

    async def _control_state(self, request: web.Request) -> web.Response:
        """`POST /_control/state` with any of token_ttl, daily_quota, requests_today, expire_tokens."""
        body: Any = await request.json() if request.can_read_body else {}
        if isinstance(body, dict):
            for key in ("token_ttl", "daily_quota", "requests_today"):
                if key in body:
                    setattr(self, key, int(body[key]))
            if body.get("expire_tokens"):
                self.expire_tokens()
        return web.json_response(
            {
                "token_ttl": self.token_ttl,
                "daily_quota": self.daily_quota,
                "requests_today": self.requests_today,
                "tokens": len(self.tokens),
            }
        )

    # --- the token ---

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", "grant_type must be client_credentials")
        if form.get("client_key") != self.client_key or form.get("client_secret") != self.client_secret:
            return _oauth_error(401, "invalid_client", "Client key or secret is incorrect.")
        token = "clt." + secrets.token_hex(16)
        self.tokens[token] = self._clock() + self.token_ttl
        return web.json_response(
            {"access_token": token, "expires_in": self.token_ttl, "token_type": "Bearer"}
        )

    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        expiry = self.tokens.get(token)
        return expiry is not None and self._clock() < expiry

    def _count_request(self) -> bool:
        today = self._today()
        if today != self._quota_day:
            self._quota_day, self.requests_today = today, 0
        if self.requests_today >= self.daily_quota:
            return False
        self.requests_today += 1
        return True

    # --- data endpoints ---

    def _serve(
        self, allowed: frozenset[str], handler: Handler
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def serve(request: web.Request) -> web.StreamResponse:
            fault = self.faults.take(Target.of(request))
            if fault is not None:
                if fault.status == 429:
                    return envelope({}, "rate_limit_exceeded", "Daily quota limit exceeded.", 429)
                if fault.status is not None:
                    return envelope(
                        {}, "internal_error", "Something went wrong. Try again later.", fault.status
                    )
                if await play_transport(request, fault):
                    return web.Response(status=500)  # never reaches the client: the connection is gone
            if not self._authorised(request):
                return envelope(
                    {},
                    "access_token_invalid",
                    "The access token is invalid or not found in the request.",
                    401,
                )
            if not self._count_request():
                return envelope(
                    {},
                    "rate_limit_exceeded",
                    "API rate limit exceeded: daily quota spent, resets 00:00 UTC.",
                    429,
                )
            try:
                fields = [f.strip() for f in request.query.get("fields", "").split(",") if f.strip()]
                if not fields:
                    raise invalid("Invalid parameters: fields is required")
                unknown = [f for f in fields if f not in allowed]
                if unknown:
                    raise invalid(f"Invalid parameters: fields {','.join(unknown)} are invalid")
                try:
                    body = await request.json()
                except ValueError:
                    raise invalid("Invalid parameters: the body is not JSON") from None
                if not isinstance(body, Mapping):
                    raise invalid("Invalid parameters: the body must be a JSON object")
                self.bodies.append((request.path, dict(body)))
                data = await handler(fields, body)
            except ApiError as exc:
                return envelope({}, exc.code, exc.message, exc.status)
            return envelope(data)

        return serve

    def _public(self) -> list[FixturePost]:
        return [p for p in self.catalogue.posts.values() if p.status in PUBLIC]

    def _video(self, post: FixturePost) -> dict[str, Any]:
        return {
            "id": int(post.id),
            "video_description": post.description,
            "create_time": post.created,
            "region_code": post.region,
            "share_count": post.shares,
            "view_count": post.views,
            "like_count": post.likes,
            "comment_count": post.comments,
            "favorites_count": post.saves,
            "music_id": int(post.music_id),
            "hashtag_names": list(post.hashtags),
            "username": post.author,
            "effect_ids": [],
            "playlist_id": 0,
            "voice_to_text": "",
            "is_stem_verified": False,
            "video_duration": post.duration,
        }

    async def _video_query(self, fields: list[str], body: Mapping[str, Any]) -> Any:
        query = _check_query(body.get("query"))
        start = _ymd(body.get("start_date"), "start_date")
        end = _ymd(body.get("end_date"), "end_date")
        if end < start:
            raise invalid("Invalid parameters: end_date must not be before start_date")
        if end - start > timedelta(days=MAX_DAYS):
            raise invalid(
                f"Invalid parameters: end_date must be no more than {MAX_DAYS} days after start_date"
            )
        max_count = body.get("max_count", 20)
        if not isinstance(max_count, int) or not 1 <= max_count <= MAX_COUNT:
            raise invalid(f"Invalid parameters: max_count must be between 1 and {MAX_COUNT}")
        cursor = body.get("cursor", 0)
        if not isinstance(cursor, int) or cursor < 0:
            raise invalid("Invalid count or cursor")
        search_id = body.get("search_id")
        if search_id:
            ids = self.searches.get(str(search_id))
            if ids is None:
                raise invalid(f"Search Id {search_id} is invalid or expired")
        else:
            search_id = str(next(self._search_ids))
            found = [
                p
                for p in self._public()
                if start <= datetime.fromtimestamp(p.created, tz=UTC).date() <= end and _matches(p, query)
            ]
            found.sort(key=lambda p: (p.created, int(p.id)), reverse=True)
            ids = [p.id for p in found]
            self.searches[search_id] = ids
        page = ids[cursor : cursor + max_count]
        videos = [self._shape(_pick(self._video(self.catalogue.posts[i]), fields)) for i in page]
        next_cursor = cursor + len(page)
        return {
            "videos": videos,
            "cursor": next_cursor,
            "has_more": next_cursor < len(ids),
            "search_id": search_id,
        }

    def _shape(self, video: dict[str, Any]) -> dict[str, Any]:
        """A picked video object in the key spelling this emulator plays."""
        for requested, played in (("id", self.video_id_key), ("favorites_count", self.saves_key)):
            if requested in video and played != requested:
                video[played] = video.pop(requested)
        return video

    async def _user_info(self, fields: list[str], body: Mapping[str, Any]) -> Any:
        username = body.get("username")
        if body.get("open_id") and username:
            raise invalid("Invalid parameters: give username or open_id, not both")
        if not isinstance(username, str) or not username:
            raise invalid("Invalid parameters: username is required")
        user = self.catalogue.users.get(username.lower())
        if user is None:
            raise invalid(f"Invalid parameters: user {username} is invalid: cannot find the user")
        if user.private:
            raise invalid("API cannot return this user's information")
        full = {
            "display_name": user.nickname,
            "bio_description": user.bio,
            "avatar_url": f"https://p16-sign-va.tiktokcdn.com/sandbox/avatar/{user.username}.jpeg",
            "is_verified": user.verified,
            "follower_count": user.followers,
            "following_count": user.following,
            "likes_count": user.likes,
            "video_count": user.videos,
            "open_id": f"open-{user.uid}",
            "is_private": user.private,
        }
        return _pick(full, fields)

    async def _comments(self, fields: list[str], body: Mapping[str, Any]) -> Any:
        video_id = str(body.get("video_id") or "")
        post = self.catalogue.posts.get(video_id)
        if not video_id.isdigit() or post is None or post.status not in PUBLIC:
            raise invalid(f"Invalid parameters: video_id {video_id} is invalid: cannot find the video")
        max_count = body.get("max_count", 10)
        cursor = body.get("cursor", 0)
        if not isinstance(max_count, int) or not 1 <= max_count <= MAX_COUNT:
            raise invalid(f"Invalid parameters: max_count must be between 1 and {MAX_COUNT}")
        if not isinstance(cursor, int) or cursor < 0:
            raise invalid("Invalid count or cursor")
        total = min(post.comments, MAX_COMMENTS)
        page = range(cursor, min(cursor + max_count, total))
        comments = [_pick(_comment(post, i), fields) for i in page]
        return {
            "comments": comments,
            "cursor": cursor + len(comments),
            "has_more": cursor + len(comments) < total,
        }


def _comment(post: FixturePost, index: int) -> dict[str, Any]:
    """The `index`-th comment of a post: synthesised, the same every time."""
    created = post.created + 60 * (index + 1)
    return {
        "id": int(post_id_at(created, 10_000 + index)),
        "video_id": int(post.id),
        "text": f"Comment {index + 1} on a post by {post.author}",
        "like_count": (index * 37) % 100,
        "reply_count": index % 3,
        "parent_comment_id": int(post.id),
        "create_time": created,
    }


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    return web.json_response(
        {"error": error, "error_description": description, "log_id": _log_id()}, status=status
    )
