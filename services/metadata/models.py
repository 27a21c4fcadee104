"""Normalised TikTok data (posts, profiles, hashtag pages) and one parser per upstream shape.

Shapes: TikTok web / EnsembleData web (camelCase `itemStruct`, `userInfo`), TikTok mobile "aweme" as
EnsembleData returns it (snake_case), and the Research API's field lists.
Nothing downstream touches raw dicts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from services.formatting import maybe_plain, plain_text
from services.links import canonical_post_url
from services.metadata.loose import Raw, as_float, as_int, as_map, as_seq, as_str, as_time, first_url

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

    def __post_init__(self) -> None:
        # Every text from TikTok is shown somewhere (captions, cards, inline results, audio titles): cleaned
        # of bidi controls and invisible characters once, here, whichever upstream it came from.
        object.__setattr__(self, "title", maybe_plain(self.title))
        object.__setattr__(self, "author", maybe_plain(self.author))


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

    def __post_init__(self) -> None:
        # As Music's: TikTok text is cleaned where it becomes a model.
        object.__setattr__(self, "author", maybe_plain(self.author))
        object.__setattr__(self, "author_name", maybe_plain(self.author_name))
        object.__setattr__(self, "description", plain_text(self.description))
        object.__setattr__(self, "hashtags", tuple(plain_text(tag) for tag in self.hashtags))


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

    def __post_init__(self) -> None:
        # As Music's: TikTok text is cleaned where it becomes a model.
        object.__setattr__(self, "username", plain_text(self.username))
        object.__setattr__(self, "nickname", maybe_plain(self.nickname))
        object.__setattr__(self, "bio", plain_text(self.bio))

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

    def __post_init__(self) -> None:
        object.__setattr__(self, "tag", plain_text(self.tag))

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

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", plain_text(self.text))


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
    return as_time(int(post_id) >> 32)


_HASHTAG = re.compile(r"#(\w+)", re.UNICODE)


def hashtags_in(text: str) -> tuple[str, ...]:
    """Hashtags written in a caption, in order, without duplicates."""
    seen: dict[str, None] = {}
    for tag in _HASHTAG.findall(text or ""):
        seen.setdefault(tag, None)
    return tuple(seen)


# --- TikTok web / EnsembleData web (camelCase) ---


def exact_counts(obj: Raw, key: str = "stats") -> Mapping[str, Any]:
    """The counters of a TikTok object: `statsV2`'s exact strings over `stats`, which real pages round."""
    counts = dict(as_map(obj.get(key)))
    for name, value in as_map(obj.get(f"{key}V2")).items():
        if as_int(value) is not None:
            counts[name] = value
    return counts


def post_from_web(item: Raw) -> Post:
    """A post from a web `itemStruct` (current page JSON, SIGI_STATE ItemModule, __NEXT_DATA__)."""
    post_id = as_str(item.get("id")) or ""
    author_obj = item.get("author")
    if isinstance(author_obj, str):  # SIGI_STATE sometimes names the author by uniqueId only
        author, author_name = author_obj or None, None
    else:
        a = as_map(author_obj)
        author, author_name = as_str(a.get("uniqueId")), as_str(a.get("nickname"))
    stats = exact_counts(item)
    video = as_map(item.get("video"))
    music = as_map(item.get("music"))
    image_post = as_map(item.get("imagePost"))
    images = as_seq(image_post.get("images"))
    desc = as_str(item.get("desc")) or ""
    # Real `challenges` entries name the tag `title` (2025 captures); `hashtagName` is textExtra's key.
    tags = tuple(
        t
        for t in (
            as_str(as_map(c).get("title")) or as_str(as_map(c).get("hashtagName"))
            for c in as_seq(item.get("challenges"))
        )
        if t
    ) or tuple(t for t in (as_str(as_map(x).get("hashtagName")) for x in as_seq(item.get("textExtra"))) if t)
    duration = as_float(video.get("duration"))
    return Post(
        id=post_id,
        url=canonical_post_url(post_id, author),
        author=author,
        author_name=author_name,
        description=desc,
        created=as_time(item.get("createTime")),
        duration=duration if duration else None,
        width=as_int(video.get("width")) or None,
        height=as_int(video.get("height")) or None,
        stats=Stats(
            views=as_int(stats.get("playCount")),
            likes=as_int(stats.get("diggCount")),
            comments=as_int(stats.get("commentCount")),
            shares=as_int(stats.get("shareCount")),
            saves=as_int(stats.get("collectCount")),
        ),
        music=Music(
            id=as_str(music.get("id")),
            title=as_str(music.get("title")),
            author=as_str(music.get("authorName")),
            duration=as_float(music.get("duration")),
        )
        if music
        else None,
        hashtags=tags or hashtags_in(desc),
        is_photo=bool(image_post),
        image_count=len(images),
        cover=as_str(video.get("cover")) or as_str(video.get("originCover")),
        region=as_str(item.get("locationCreated")),
    )


def profile_from_web(user_info: Raw) -> Profile:
    """A profile from web `userInfo` / EnsembleData `/tt/user/info` data: `{user: {...}, stats: {...}}`."""
    user = as_map(user_info.get("user"))
    stats = exact_counts(user_info)
    return Profile(
        username=as_str(user.get("uniqueId")) or "",
        nickname=as_str(user.get("nickname")),
        verified=bool(user.get("verified")),
        bio=as_str(user.get("signature")) or "",
        avatar=as_str(user.get("avatarLarger")) or as_str(user.get("avatarMedium")),
        followers=as_int(stats.get("followerCount")),
        following=as_int(stats.get("followingCount")),
        likes=as_int(stats.get("heartCount")) if "heartCount" in stats else as_int(stats.get("heart")),
        videos=as_int(stats.get("videoCount")),
        private=bool(user.get("privateAccount")),
    )


# --- TikTok mobile "aweme" (EnsembleData post info, hashtag posts, user posts; snake_case) ---


def post_from_aweme(aweme: Raw) -> Post:
    """A post from a mobile-app aweme object."""
    post_id = as_str(aweme.get("aweme_id")) or ""
    author = as_map(aweme.get("author"))
    username = as_str(author.get("unique_id"))
    stats = as_map(aweme.get("statistics"))
    video = as_map(aweme.get("video"))
    music = as_map(aweme.get("music"))
    images = as_seq(as_map(aweme.get("image_post_info")).get("images"))
    desc = as_str(aweme.get("desc")) or ""
    tags = tuple(
        t for t in (as_str(as_map(x).get("hashtag_name")) for x in as_seq(aweme.get("text_extra"))) if t
    )
    duration_ms = as_float(video.get("duration"))
    return Post(
        id=post_id,
        url=canonical_post_url(post_id, username),
        author=username,
        author_name=as_str(author.get("nickname")),
        description=desc,
        created=as_time(aweme.get("create_time")),
        duration=duration_ms / 1000 if duration_ms else None,  # mobile durations are milliseconds
        width=as_int(video.get("width")) or None,
        height=as_int(video.get("height")) or None,
        stats=Stats(
            views=as_int(stats.get("play_count")),
            likes=as_int(stats.get("digg_count")),
            comments=as_int(stats.get("comment_count")),
            shares=as_int(stats.get("share_count")),
            saves=as_int(stats.get("collect_count")),
        ),
        music=Music(
            id=as_str(music.get("id")) or as_str(music.get("mid")),
            title=as_str(music.get("title")),
            author=as_str(music.get("author")),
            duration=as_float(music.get("duration")),
        )
        if music
        else None,
        hashtags=tags or hashtags_in(desc),
        is_photo=bool(images),
        image_count=len(images),
        cover=first_url(video.get("cover")) or first_url(video.get("origin_cover")),
        region=as_str(aweme.get("region")),
    )


def profile_from_mobile(user: Raw) -> Profile:
    """A profile from a mobile-app user object (EnsembleData info-from-secuid, user search)."""
    return Profile(
        username=as_str(user.get("unique_id")) or "",
        nickname=as_str(user.get("nickname")),
        verified=bool(user.get("custom_verify")) or bool(user.get("verification_type")),
        bio=as_str(user.get("signature")) or "",
        avatar=first_url(user.get("avatar_larger")) or first_url(user.get("avatar_medium")),
        followers=as_int(user.get("follower_count")),
        following=as_int(user.get("following_count")),
        likes=as_int(user.get("total_favorited")),
        videos=as_int(user.get("aweme_count")),
        private=bool(user.get("secret")) or bool(user.get("private_account")),
    )


# --- TikTok Research API ---


def research_video_id(video: Raw) -> str | None:
    """A Research API video's id: `id` as the field list names it, or `video_id` as TikTok's documented
    example responses carry it (as a JSON number or a string)."""
    post_id = as_str(video.get("id")) or as_str(video.get("video_id"))
    return post_id if post_id and post_id.isdigit() else None


def post_from_research(video: Raw) -> Post | None:
    """A post from one Research API video-query result (only the requested fields are present); None without
    an id, since a post without one can be neither linked nor downloaded."""
    post_id = research_video_id(video)
    if post_id is None:
        return None
    username = as_str(video.get("username"))
    desc = as_str(video.get("video_description")) or ""
    tags = tuple(t for t in (as_str(x) for x in as_seq(video.get("hashtag_names"))) if t)
    return Post(
        id=post_id,
        url=canonical_post_url(post_id, username),
        author=username,
        description=desc,
        created=as_time(video.get("create_time")),
        duration=as_float(video.get("video_duration")) or None,
        stats=Stats(
            views=as_int(video.get("view_count")),
            likes=as_int(video.get("like_count")),
            comments=as_int(video.get("comment_count")),
            shares=as_int(video.get("share_count")),
            # The request list and the codebook's "Favorites_count" say favorites_count; the British spelling
            # turns up too. Either is the saves counter.
            saves=_first_int(video, "favorites_count", "favourites_count"),
        ),
        music=Music(id=as_str(video.get("music_id"))) if video.get("music_id") else None,
        hashtags=tags or hashtags_in(desc),
        region=as_str(video.get("region_code")),
    )


def _first_int(raw: Raw, *keys: str) -> int | None:
    """The first of `keys` that holds an integer."""
    for key in keys:
        value = as_int(raw.get(key))
        if value is not None:
            return value
    return None


def profile_from_research(data: Raw, username: str) -> Profile:
    """A profile from Research API user info; the response does not echo the username, so it is passed in."""
    return Profile(
        username=username,
        nickname=as_str(data.get("display_name")),
        verified=bool(data.get("is_verified")),
        bio=as_str(data.get("bio_description")) or "",
        avatar=as_str(data.get("avatar_url")),
        followers=as_int(data.get("follower_count")),
        following=as_int(data.get("following_count")),
        likes=as_int(data.get("likes_count")),
        videos=as_int(data.get("video_count")),
        private=bool(data.get("is_private")),
    )


def comment_from_research(comment: Raw) -> Comment:
    """A comment from one Research API comment-list result."""
    return Comment(
        id=as_str(comment.get("id")) or "",
        text=as_str(comment.get("text")) or "",
        video_id=as_str(comment.get("video_id")),
        parent_id=as_str(comment.get("parent_comment_id")),
        likes=as_int(comment.get("like_count")),
        replies=as_int(comment.get("reply_count")),
        created=as_time(comment.get("create_time")),
    )
