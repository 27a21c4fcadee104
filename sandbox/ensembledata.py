"""EnsembleData emulator: the TikTok endpoints the bot uses, served from the fixture catalogue.

Faithful to the reference notes: GET with `token` in the query; `{"data": ...}` on success and FastAPI-style
`{"detail": ...}` on error; a `units_charged` header on every reply; 422 for a missing parameter, 491 for a
bad token, 495 when the units balance is spent, 464 for more than 100 ids, 462 for a URL that is not a post.
Control: `emu.fault_next("500", count=2)`, `emu.units_balance = 0`, or over HTTP `POST /_control/faults`
and `POST /_control/state {"units_balance": 0}`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar

from aiohttp import web

from sandbox.base import Emulator
from sandbox.catalogue import CATALOGUE, Catalogue, FixturePost, FixtureUser, Status, rounded
from sandbox.faults import TRANSPORT_FAULTS, Target, play_transport

TOKEN = "sandbox-ensembledata-token"  # noqa: S105 - the sandbox's own token, printed by `tiktok-bot sandbox`
PREFIX = "/apis"
HASHTAG_PAGE = 20
USER_POSTS_CHUNK = 10  # posts per unit of `depth`
MAX_IDS = 100
# Units per call in the sandbox (the real price list depends on the plan); user posts cost `depth`.
COSTS = {"/tt/post/info": 1, "/tt/user/info": 1, "/tt/user/info-from-secuid": 1, "/tt/hashtag/posts": 1}
# Posts the public API still shows: private and deleted ones are gone, restricted ones answer 520 on lookup.
LISTED = (Status.OK, Status.AGE, Status.REGION)
_POST_URL = re.compile(
    r"^https?://(?:www\.|m\.)?tiktok\.com/@[^/?#]+/(?:video|photo)/(\d{1,20})(?:[/?#].*)?$"
)
_CDN = "https://p16-sign-va.tiktokcdn.com/sandbox"

Handler = Callable[[web.Request], Awaitable["Reply"]]


class Reply:
    """A handler's answer: status, JSON body and the units it charges."""

    def __init__(self, body: Any, status: int = 200, units: int = 0) -> None:
        self.body = body
        self.status = status
        self.units = units


def _error(status: int, detail: Any) -> Reply:
    return Reply({"detail": detail}, status)


def _missing(name: str) -> Reply:
    return _error(422, [{"loc": ["query", name], "msg": "field required", "type": "value_error.missing"}])


def aweme(post: FixturePost, user: FixtureUser | None) -> dict[str, Any]:
    """A post as a mobile-app aweme object."""
    nickname = user.nickname if user else post.author
    cover = {"url_list": [f"{_CDN}/{post.id}/cover.jpeg"]}
    item: dict[str, Any] = {
        "aweme_id": post.id,
        "desc": post.description,
        "create_time": post.created,
        "region": post.region,
        "aweme_type": 150 if post.is_photo else 0,
        "share_url": f"{post.url}?_r=1&u_code=sandbox",
        "author": {
            "uid": user.uid if user else "0",
            "unique_id": post.author,
            "nickname": nickname,
            "sec_uid": user.sec_uid if user else "",
            "avatar_thumb": {"url_list": [f"{_CDN}/avatar/{post.author}.jpeg"]},
        },
        "statistics": {
            "aweme_id": post.id,
            "play_count": post.views,
            "digg_count": post.likes,
            "comment_count": post.comments,
            "share_count": post.shares,
            "collect_count": post.saves,
            "download_count": 0,
            "forward_count": 0,
        },
        "music": {
            "id": int(post.music_id),
            "mid": post.music_id,
            "title": post.music_title,
            "author": nickname,
            "album": "",
            "duration": post.duration or 15,
            "play_url": {"url_list": [f"https://sf16-ies-music.tiktokcdn.com/obj/sandbox/{post.music_file}"]},
        },
        "video": {
            "duration": post.duration * 1000,
            "width": post.width,
            "height": post.height,
            "play_addr": {
                "url_list": [f"https://v16m.tiktokcdn.com/sandbox/{post.id}/play.mp4"],
                "url_key": f"v0_{post.id}_h264_540p",
            },
            "cover": cover,
            "origin_cover": cover,
            "has_watermark": True,
        },
        "text_extra": [{"hashtag_name": tag, "type": 1} for tag in post.hashtags],
        "is_top": 0,
    }
    if post.is_photo:
        item["image_post_info"] = {
            "images": [
                {"display_image": {"url_list": [f"{_CDN}/{post.id}/{name}"], "width": 1080, "height": 1440}}
                for name in post.images
            ]
        }
    return item


def web_user(user: FixtureUser) -> dict[str, Any]:
    """`/tt/user/info` data: the web camelCase `{user, stats}`."""
    avatar = f"{_CDN}/avatar/{user.username}.jpeg"
    return {
        "user": {
            "id": user.uid,
            "uniqueId": user.username,
            "nickname": user.nickname,
            "secUid": user.sec_uid,
            "signature": user.bio,
            "verified": user.verified,
            "region": "US",
            "language": "en",
            "avatarLarger": avatar,
            "avatarMedium": avatar,
            "avatarThumb": avatar,
            "privateAccount": user.private,
            "ins_id": "",
            "youtube_channel_id": "",
        },
        # TikTok's own objects, passed through: rounded `stats`, exact strings in `statsV2`.
        "stats": {
            "followingCount": rounded(user.following),
            "followerCount": rounded(user.followers),
            "heartCount": rounded(user.likes),
            "videoCount": rounded(user.videos),
            "diggCount": 0,
        },
        "statsV2": {
            "followingCount": str(user.following),
            "followerCount": str(user.followers),
            "heartCount": str(user.likes),
            "videoCount": str(user.videos),
            "diggCount": "0",
        },
    }


def mobile_user(user: FixtureUser) -> dict[str, Any]:
    """`/tt/user/info-from-secuid` data's `user`: the mobile snake_case object."""
    return {
        "uid": user.uid,
        "sec_uid": user.sec_uid,
        "unique_id": user.username,
        "nickname": user.nickname,
        "signature": user.bio,
        "follower_count": user.followers,
        "following_count": user.following,
        "aweme_count": user.videos,
        "total_favorited": user.likes,
        "favoriting_count": 0,
        "custom_verify": "Verified account" if user.verified else "",
        "region": "US",
        "secret": 1 if user.private else 0,
        "avatar_larger": {"url_list": [f"{_CDN}/avatar/{user.username}.jpeg"]},
    }


class EnsembleDataEmulator(Emulator):
    """EnsembleData's `/apis/tt/...` endpoints over loopback."""

    name = "ensembledata"
    FAULTS: ClassVar[Mapping[str, str]] = TRANSPORT_FAULTS
    FAULT_STATUSES: ClassVar[str | None] = 'that status with a FastAPI-style {"detail": ...} body'

    def __init__(
        self, catalogue: Catalogue = CATALOGUE, *, token: str = TOKEN, units_balance: int | None = None
    ) -> None:
        super().__init__()
        self.catalogue = catalogue
        self.token = token
        self.units_balance = units_balance  # None: unlimited
        self.units_used = 0

    def env(self) -> dict[str, str]:
        """ENSEMBLEDATA__URL and a token this emulator accepts."""
        return {"ENSEMBLEDATA__URL": self.base_url + PREFIX, "ENSEMBLEDATA__TOKEN": self.token}

    def routes(self, app: web.Application) -> None:
        """The TikTok endpoints and the control endpoints."""
        for path, handler in (
            ("/tt/post/info", self._post_info),
            ("/tt/post/multi-info", self._multi_post_info),
            ("/tt/user/info", self._user_info),
            ("/tt/user/info-from-secuid", self._user_info_from_secuid),
            ("/tt/user/posts", self._user_posts),
            ("/tt/hashtag/posts", self._hashtag_posts),
            ("/customer/get-used-units", self._used_units),
        ):
            app.router.add_get(PREFIX + path, self._serve(handler))
        app.router.add_post("/_control/state", self._control_state)

    async def _control_state(self, request: web.Request) -> web.Response:
        """`POST /_control/state {"units_balance": N | null}`; answers the current state."""
        body: Any = await request.json() if request.can_read_body else {}
        if isinstance(body, dict) and "units_balance" in body:
            value = body["units_balance"]
            self.units_balance = None if value is None else int(value)
        return web.json_response({"units_balance": self.units_balance, "units_used": self.units_used})

    def _serve(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def serve(request: web.Request) -> web.StreamResponse:
            fault = self.faults.take(Target.of(request))
            if fault is not None:
                if fault.status is not None:
                    return _respond(_error(fault.status, _FAULT_DETAIL.get(fault.status, "Server error")))
                if await play_transport(request, fault):
                    return web.Response(status=500)  # never reaches the client: the connection is gone
            if "token" not in request.query:
                return _respond(_missing("token"))
            if request.query["token"] != self.token:
                return _respond(_error(491, "Token not found. Check your token on the dashboard."))
            reply = await handler(request)
            if reply.status == 200 and reply.units:
                if self.units_balance is not None and self.units_balance < reply.units:
                    return _respond(_error(495, "Units depleted. Upgrade your plan or wait for the renewal."))
                if self.units_balance is not None:
                    self.units_balance -= reply.units
                self.units_used += reply.units
            return _respond(reply)

        return serve

    async def _used_units(self, request: web.Request) -> Reply:
        """Units used (the emulator counts one day: its lifetime); free, as on the real API."""
        if not request.query.get("date"):
            return _missing("date")
        return Reply({"data": self.units_used})

    def _post(self, post_id: str) -> FixturePost | None:
        return self.catalogue.posts.get(post_id)

    async def _post_info(self, request: web.Request) -> Reply:
        url = request.query.get("url")
        if not url:
            return _missing("url")
        match = _POST_URL.match(url)
        if match is None:
            return _error(
                462, "Invalid TikTok URL. Use a full post URL like https://www.tiktok.com/@user/video/ID"
            )
        post = self._post(match.group(1))
        if post is None or post.status is Status.DELETED:
            return _error(404, "Post not found")
        if post.status is Status.PRIVATE_ACCOUNT:
            return _error(472, "The account of this post is private")
        if post.status is Status.PRIVATE:
            return _error(520, "Post restricted: the post is private")
        if post.status is Status.REGION:
            return _error(520, "Post restricted in this region")
        return Reply(
            {"data": [aweme(post, self.catalogue.users.get(post.author))]}, units=COSTS["/tt/post/info"]
        )

    async def _multi_post_info(self, request: web.Request) -> Reply:
        raw = request.query.get("ids")
        if not raw:
            return _missing("ids")
        ids = [i for i in raw.split(";") if i]
        if len(ids) > MAX_IDS:
            return _error(464, f"Maximum number of post ids is {MAX_IDS}")
        items = []
        for post_id in ids:
            post = self._post(post_id)
            if post is not None and post.status in (Status.OK, Status.AGE):
                items.append(aweme(post, self.catalogue.users.get(post.author)))
        return Reply({"data": items}, units=max(1, math.ceil(len(ids) / 10)))

    def _user(self, username: str) -> FixtureUser | None:
        return self.catalogue.users.get(username.lower().removeprefix("@"))

    async def _user_info(self, request: web.Request) -> Reply:
        username = request.query.get("username")
        if not username:
            return _missing("username")
        user = self._user(username)
        if user is None:
            return _error(473, "User not found")
        return Reply({"data": web_user(user)}, units=COSTS["/tt/user/info"])

    async def _user_info_from_secuid(self, request: web.Request) -> Reply:
        sec_uid = request.query.get("secUid")
        if not sec_uid:
            return _missing("secUid")
        user = next((u for u in self.catalogue.users.values() if u.sec_uid == sec_uid), None)
        if user is None:
            return _error(473, "User not found")
        return Reply({"data": {"user": mobile_user(user)}}, units=COSTS["/tt/user/info-from-secuid"])

    async def _user_posts(self, request: web.Request) -> Reply:
        username = request.query.get("username")
        if not username:
            return _missing("username")
        depth_text = request.query.get("depth")
        if not depth_text:
            return _missing("depth")
        if not depth_text.isdigit() or int(depth_text) < 1:
            return _error(422, [{"loc": ["query", "depth"], "msg": "value is not a valid integer"}])
        user = self._user(username)
        if user is None:
            return _error(473, "User not found")
        if user.private:
            return _error(472, "This account is private")
        depth = int(depth_text)
        # Cursors are creation times in milliseconds: a page holds posts strictly older than its cursor.
        cursor = _int_arg(request.query.get("start_cursor"))
        oldest = _int_arg(request.query.get("oldest_createtime"))
        posts = sorted(
            (p for p in self.catalogue.posts.values() if p.author == user.username and p.status in LISTED),
            key=lambda p: (p.created, p.id),
            reverse=True,
        )
        if cursor is not None:
            posts = [p for p in posts if p.created * 1000 < cursor]
        if oldest is not None:
            posts = [p for p in posts if p.created >= oldest]
        page = posts[: depth * USER_POSTS_CHUNK]
        body: dict[str, Any] = {"data": [aweme(p, user) for p in page]}
        if len(posts) > len(page):
            body["nextCursor"] = page[-1].created * 1000
        return Reply(body, units=depth)

    async def _hashtag_posts(self, request: web.Request) -> Reply:
        name = request.query.get("name")
        if not name:
            return _missing("name")
        cursor = _int_arg(request.query.get("cursor")) or 0
        ids = self.catalogue.hashtags.get(name.lower().removeprefix("#"), [])
        posts = [p for p in (self._post(i) for i in ids) if p is not None and p.status in LISTED]
        page = posts[cursor : cursor + HASHTAG_PAGE]
        data: dict[str, Any] = {"data": [aweme(p, self.catalogue.users.get(p.author)) for p in page]}
        if cursor + HASHTAG_PAGE < len(posts):
            data["nextCursor"] = cursor + HASHTAG_PAGE
        return Reply({"data": data}, units=COSTS["/tt/hashtag/posts"])


_FAULT_DETAIL = {
    429: "Rate limit exceeded. Slow down.",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service temporarily unavailable",
}


def _int_arg(value: str | None) -> int | None:
    if value is None or not value.strip().lstrip("-").isdigit():
        return None
    return int(value)


def _respond(reply: Reply) -> web.Response:
    return web.json_response(reply.body, status=reply.status, headers={"units_charged": str(reply.units)})
