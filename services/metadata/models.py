"""Normalised TikTok data (posts, profiles, hashtag pages) and one parser per upstream shape.

Shapes: TikTok web / EnsembleData web (camelCase `itemStruct`, `userInfo`), TikTok mobile "aweme" as
EnsembleData returns it (snake_case), and the Research API's field lists.
Nothing downstream touches raw dicts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from services.links import canonical_post_url

Raw = Mapping[str, Any]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Stats:
    """A post's counters; None where the upstream did not say."""

    views: int | None = None
    likes: int | None = None
    comments: int | None = None
    shares: int | None = None
    saves: int | None = None


@dataclass(frozen=True, slots=True)
class Music:
    """A post's sound."""

    id: str | None = None
    title: str | None = None
    author: str | None = None
    duration: float | None = None


@dataclass(frozen=True, slots=True)
class Post:
    """One TikTok post (video or photo slideshow)."""

    id: str
    url: str
    author: str | None = None
    author_name: str | None = None
    description: str = ""
    created: datetime | None = None
    duration: float | None = None
    width: int | None = None
    height: int | None = None
    stats: Stats = field(default_factory=Stats)
    music: Music | None = None
    hashtags: tuple[str, ...] = ()
    is_photo: bool = False
    image_count: int = 0
    cover: str | None = None
    region: str | None = None


@dataclass(frozen=True, slots=True)
class Profile:
    """One TikTok account."""

    username: str
    nickname: str | None = None
    verified: bool = False
    bio: str = ""
    avatar: str | None = None
    followers: int | None = None
    following: int | None = None
    likes: int | None = None
    videos: int | None = None
    private: bool = False

    @property
    def url(self) -> str:
        """The profile's web URL."""
        return f"https://www.tiktok.com/@{self.username}"


@dataclass(frozen=True, slots=True)
class HashtagPage:
    """One page of a hashtag's posts; `next_cursor` is None at the end."""

    tag: str
    posts: tuple[Post, ...]
    next_cursor: str | None = None
    total: int | None = None

    @property
    def url(self) -> str:
        """The hashtag's web URL."""
        return f"https://www.tiktok.com/tag/{self.tag}"


@dataclass(frozen=True, slots=True)
class PostPage:
    """One page of a list of posts (a user's posts); `next_cursor` is None at the end."""

    posts: tuple[Post, ...]
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class Comment:
    """One comment on a post."""

    id: str
    text: str = ""
    video_id: str | None = None
    parent_id: str | None = None
    likes: int | None = None
    replies: int | None = None
    created: datetime | None = None


@dataclass(frozen=True, slots=True)
class CommentPage:
    """One page of a post's comments; `cursor` is where the next page starts."""

    comments: tuple[Comment, ...]
    cursor: int | None = None
    has_more: bool = False


@dataclass(frozen=True, slots=True)
class Metered(Generic[T]):
    """A value with what fetching it cost: units charged and quota-counted HTTP requests sent."""

    value: T
    units: int = 0
    requests: int = 0


def created_from_id(post_id: str) -> datetime | None:
    """A post's creation time, read from its id: the top 32 bits of a TikTok id are Unix seconds."""
    if not post_id.isdigit():
        return None
    return _time(int(post_id) >> 32)


# --- small, forgiving readers: upstreams send numbers as strings and omit fields at will ---


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _str(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _map(value: Any) -> Raw:
    return value if isinstance(value, Mapping) else {}


def _seq(value: Any) -> Sequence[Any]:
    return value if isinstance(value, list | tuple) else ()


def _time(value: Any) -> datetime | None:
    seconds = _int(value)
    if seconds is None or seconds <= 0:
        return None
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _first_url(value: Any) -> str | None:
    """The first URL of a `{url_list: [...]}` / `{urlList: [...]}` object, or a plain string."""
    if isinstance(value, str):
        return value or None
    obj = _map(value)
    for key in ("url_list", "urlList", "UrlList"):
        urls = _seq(obj.get(key))
        if urls and isinstance(urls[0], str):
            return str(urls[0])
    return None


_HASHTAG = re.compile(r"#(\w+)", re.UNICODE)


def hashtags_in(text: str) -> tuple[str, ...]:
    """Hashtags written in a caption, in order, without duplicates."""
    seen: dict[str, None] = {}
    for tag in _HASHTAG.findall(text or ""):
        seen.setdefault(tag, None)
    return tuple(seen)


# --- TikTok web / EnsembleData web (camelCase) ---


def post_from_web(item: Raw) -> Post:
    """A post from a web `itemStruct` (current page JSON, SIGI_STATE ItemModule, __NEXT_DATA__)."""
    post_id = _str(item.get("id")) or ""
    author_obj = item.get("author")
    if isinstance(author_obj, str):  # SIGI_STATE sometimes names the author by uniqueId only
        author, author_name = author_obj or None, None
    else:
        a = _map(author_obj)
        author, author_name = _str(a.get("uniqueId")), _str(a.get("nickname"))
    stats = _map(item.get("stats")) or _map(item.get("statsV2"))
    video = _map(item.get("video"))
    music = _map(item.get("music"))
    image_post = _map(item.get("imagePost"))
    images = _seq(image_post.get("images"))
    desc = _str(item.get("desc")) or ""
    tags = tuple(
        t for t in (_str(_map(c).get("hashtagName")) for c in _seq(item.get("challenges"))) if t
    ) or tuple(t for t in (_str(_map(x).get("hashtagName")) for x in _seq(item.get("textExtra"))) if t)
    duration = _float(video.get("duration"))
    return Post(
        id=post_id,
        url=canonical_post_url(post_id, author),
        author=author,
        author_name=author_name,
        description=desc,
        created=_time(item.get("createTime")),
        duration=duration if duration else None,
        width=_int(video.get("width")) or None,
        height=_int(video.get("height")) or None,
        stats=Stats(
            views=_int(stats.get("playCount")),
            likes=_int(stats.get("diggCount")),
            comments=_int(stats.get("commentCount")),
            shares=_int(stats.get("shareCount")),
            saves=_int(stats.get("collectCount")),
        ),
        music=Music(
            id=_str(music.get("id")),
            title=_str(music.get("title")),
            author=_str(music.get("authorName")),
            duration=_float(music.get("duration")),
        )
        if music
        else None,
        hashtags=tags or hashtags_in(desc),
        is_photo=bool(image_post),
        image_count=len(images),
        cover=_str(video.get("cover")) or _str(video.get("originCover")),
        region=_str(item.get("locationCreated")),
    )


def profile_from_web(user_info: Raw) -> Profile:
    """A profile from web `userInfo` / EnsembleData `/tt/user/info` data: `{user: {...}, stats: {...}}`."""
    user = _map(user_info.get("user"))
    stats = _map(user_info.get("stats")) or _map(user_info.get("statsV2"))
    return Profile(
        username=_str(user.get("uniqueId")) or "",
        nickname=_str(user.get("nickname")),
        verified=bool(user.get("verified")),
        bio=_str(user.get("signature")) or "",
        avatar=_str(user.get("avatarLarger")) or _str(user.get("avatarMedium")),
        followers=_int(stats.get("followerCount")),
        following=_int(stats.get("followingCount")),
        likes=_int(stats.get("heartCount")) if "heartCount" in stats else _int(stats.get("heart")),
        videos=_int(stats.get("videoCount")),
        private=bool(user.get("privateAccount")),
    )


# --- TikTok mobile "aweme" (EnsembleData post info, hashtag posts, user posts; snake_case) ---


def post_from_aweme(aweme: Raw) -> Post:
    """A post from a mobile-app aweme object."""
    post_id = _str(aweme.get("aweme_id")) or ""
    author = _map(aweme.get("author"))
    username = _str(author.get("unique_id"))
    stats = _map(aweme.get("statistics"))
    video = _map(aweme.get("video"))
    music = _map(aweme.get("music"))
    images = _seq(_map(aweme.get("image_post_info")).get("images"))
    desc = _str(aweme.get("desc")) or ""
    tags = tuple(t for t in (_str(_map(x).get("hashtag_name")) for x in _seq(aweme.get("text_extra"))) if t)
    duration_ms = _float(video.get("duration"))
    return Post(
        id=post_id,
        url=canonical_post_url(post_id, username),
        author=username,
        author_name=_str(author.get("nickname")),
        description=desc,
        created=_time(aweme.get("create_time")),
        duration=duration_ms / 1000 if duration_ms else None,  # mobile durations are milliseconds
        width=_int(video.get("width")) or None,
        height=_int(video.get("height")) or None,
        stats=Stats(
            views=_int(stats.get("play_count")),
            likes=_int(stats.get("digg_count")),
            comments=_int(stats.get("comment_count")),
            shares=_int(stats.get("share_count")),
            saves=_int(stats.get("collect_count")),
        ),
        music=Music(
            id=_str(music.get("id")) or _str(music.get("mid")),
            title=_str(music.get("title")),
            author=_str(music.get("author")),
            duration=_float(music.get("duration")),
        )
        if music
        else None,
        hashtags=tags or hashtags_in(desc),
        is_photo=bool(images),
        image_count=len(images),
        cover=_first_url(video.get("cover")) or _first_url(video.get("origin_cover")),
        region=_str(aweme.get("region")),
    )


def profile_from_mobile(user: Raw) -> Profile:
    """A profile from a mobile-app user object (EnsembleData info-from-secuid, user search)."""
    return Profile(
        username=_str(user.get("unique_id")) or "",
        nickname=_str(user.get("nickname")),
        verified=bool(user.get("custom_verify")) or bool(user.get("verification_type")),
        bio=_str(user.get("signature")) or "",
        avatar=_first_url(user.get("avatar_larger")) or _first_url(user.get("avatar_medium")),
        followers=_int(user.get("follower_count")),
        following=_int(user.get("following_count")),
        likes=_int(user.get("total_favorited")),
        videos=_int(user.get("aweme_count")),
        private=bool(user.get("secret")) or bool(user.get("private_account")),
    )


# --- TikTok Research API ---


def post_from_research(video: Raw) -> Post:
    """A post from one Research API video-query result (only the requested fields are present)."""
    post_id = _str(video.get("id")) or ""
    username = _str(video.get("username"))
    desc = _str(video.get("video_description")) or ""
    tags = tuple(t for t in (_str(x) for x in _seq(video.get("hashtag_names"))) if t)
    return Post(
        id=post_id,
        url=canonical_post_url(post_id, username),
        author=username,
        description=desc,
        created=_time(video.get("create_time")),
        duration=_float(video.get("video_duration")) or None,
        stats=Stats(
            views=_int(video.get("view_count")),
            likes=_int(video.get("like_count")),
            comments=_int(video.get("comment_count")),
            shares=_int(video.get("share_count")),
            saves=_int(video.get("favorites_count")),
        ),
        music=Music(id=_str(video.get("music_id"))) if video.get("music_id") else None,
        hashtags=tags or hashtags_in(desc),
        region=_str(video.get("region_code")),
    )


def profile_from_research(data: Raw, username: str) -> Profile:
    """A profile from Research API user info; the response does not echo the username, so it is passed in."""
    return Profile(
        username=username,
        nickname=_str(data.get("display_name")),
        verified=bool(data.get("is_verified")),
        bio=_str(data.get("bio_description")) or "",
        avatar=_str(data.get("avatar_url")),
        followers=_int(data.get("follower_count")),
        following=_int(data.get("following_count")),
        likes=_int(data.get("likes_count")),
        videos=_int(data.get("video_count")),
        private=bool(data.get("is_private")),
    )


def comment_from_research(comment: Raw) -> Comment:
    """A comment from one Research API comment-list result."""
    return Comment(
        id=_str(comment.get("id")) or "",
        text=_str(comment.get("text")) or "",
        video_id=_str(comment.get("video_id")),
        parent_id=_str(comment.get("parent_comment_id")),
        likes=_int(comment.get("like_count")),
        replies=_int(comment.get("reply_count")),
        created=_time(comment.get("create_time")),
    )
