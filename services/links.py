"""Recognise TikTok links in chat text and resolve short links safely.

`find_links` is pure and linear in the text: it looks for the literal host (`tiktok.com`, `tiktokv.com`)
with one fast search, then judges each hit in a bounded window — what stands before the host (scheme,
subdomain, the character that would make it a look-alike), what follows it (`.evil.net`, `@evil.net`, a
port), and the path, which is matched segment by segment rather than by one big backtracking regex.

`ShortLinkResolver` turns a `short` link into a `post` link by following redirects by hand: every hop's
URL is checked against the allow-list before it is contacted, and the first Location that parses as a
post ends the walk without fetching the post page.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import quote, unquote

import httpx

from services.errors import (
    InvalidLink,
    LinkNotFound,
    UnsafeRedirect,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
)
from services.http import is_allowed_url
from services.shared import TTLCache
from services.shared.memory import MemoryTTLCache


class LinkKind(StrEnum):
    """What a TikTok link points to."""

    POST = "post"
    SHORT = "short"
    USER = "user"
    HASHTAG = "hashtag"
    MUSIC = "music"


@dataclass(frozen=True, slots=True)
class TikTokLink:
    """One TikTok link found in text; fields that do not apply to its kind are None."""

    kind: LinkKind
    url: str
    post_id: str | None = None
    username: str | None = None
    tag: str | None = None
    code: str | None = None
    user_id: str | None = None  # a user link that names the account by its numeric id, not its name

    @property
    def has_media(self) -> bool:
        """Whether the link leads to one post's media (a post, or a short link to one)."""
        return self.kind in (LinkKind.POST, LinkKind.SHORT)

    def as_json(self) -> dict[str, Any]:
        """The link as the CLI prints it: every key present, null where not applicable."""
        data = asdict(self)
        data["kind"] = self.kind.value
        return data


def canonical_post_url(post_id: str, username: str | None = None) -> str:
    """The canonical web URL of a post: `https://www.tiktok.com/@<user or _>/video/<id>`."""
    return f"https://www.tiktok.com/@{username or '_'}/video/{post_id}"


# --- recognition -------------------------------------------------------------------------------------

_HOST = re.compile(r"tiktok(v?)\.com", re.IGNORECASE)
# Subdomains a link may have; "vm." before "m." so the longer one wins.
_SUBDOMAIN_PREFIXES = ("www.", "vm.", "vt.", "m.")
# One URL token after the host: stops at whitespace, quotes, brackets and CJK punctuation. Bounded, so a
# 1 MB token costs one 2 KB read per host hit at most.
_TAIL = re.compile(
    r"[^\s<>\"'`()\[\]{}|\\^\x00-\x1f\x7f\u200b-\u200d\u2060\ufeff"
    r"«»“”‘’‹›「」『』【】《》〈〉（）。、，！？…]{0,2048}"
)
# A second URL glued to the first ("…/ZMabc/,https://vm…") starts a new token.
_NEXT_URL = re.compile(r"https?://", re.IGNORECASE)
_PATH_END = re.compile(r"[?#&]")
# Punctuation that ends a sentence rather than a URL.
_TRAILING = ".,;:!?*'\"~"
# Host look-alikes: a character that would make the hit part of a longer host name or a URL's userinfo.
_BAD_BEFORE_SCHEME = "+-._"
_BAD_BEFORE_HOST = "+-._@/\\%=&~#?"
_AFTER_HOST = ("/", "?", "#")

_POST_ID = re.compile(r"[0-9]{1,21}")  # cobalt: ids longer than 21 characters are not ids
_USERNAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")  # unique ids, and the secUid form yt-dlp tests use
_SHORT_CODE = re.compile(r"[A-Za-z0-9_-]{3,21}")
_TAG = re.compile(r"[^\W]{1,100}")  # Unicode letters, digits and underscore, as TikTok hashtags are
_EMBED_VERSION = re.compile(r"v[0-9]{1,2}")
# Feed pages where the legacy `?item_id=` / `?shareId=` forms name a post.
_LEGACY_FEED_PATHS = frozenset({"", "trending", "foryou", "following", "explore", "friends"})
_LEGACY_ID_PARAMS = frozenset({"item_id", "shareid"})
# Post pages whose id segment is missing, the id riding in `?item_id=` instead.
_QUERY_ID_POST_PATHS = (["share", "video"], ["v"], ["embed"], ["embed", "v2"], ["player", "v1"])
_USER_ID = re.compile(r"[0-9]{1,21}")  # numeric account ids (uid), as long as post ids at most
_SHORT_HOSTS = frozenset({"vm", "vt"})


def _post(post_id: str, username: str | None = None) -> TikTokLink:
    url = canonical_post_url(post_id, username)
    return TikTokLink(LinkKind.POST, url, post_id=post_id, username=username)


def _short(code: str, url: str) -> TikTokLink:
    return TikTokLink(LinkKind.SHORT, url, code=code)


def _split_tail(tail: str) -> tuple[list[str] | None, str]:
    """Path segments (None if malformed) and the query of a URL tail."""
    end = _PATH_END.search(tail)
    # A sentence's punctuation can stand before an HTML entity or a query too ("@name.&quot;").
    path = (tail[: end.start()] if end else tail).rstrip(_TRAILING)
    query = ""
    if end is not None and tail[end.start()] == "?":
        query = tail[end.start() + 1 :].split("#", 1)[0]
    if path and not path.startswith("/"):
        return None, query
    segments = path.rstrip("/").split("/")[1:]
    if any(not seg for seg in segments):
        return None, query
    return segments, query


def _legacy_post_id(query: str) -> str | None:
    """The post id of a `?item_id=` / `?shareId=` query, if any."""
    for param in query.split("&"):
        key, _, value = param.partition("=")
        if key.lower().removeprefix("amp;") in _LEGACY_ID_PARAMS and _POST_ID.fullmatch(value):
            return value
    return None


def _post_path(segments: list[str]) -> TikTokLink | None:
    """A post named by its path on www./m./bare tiktok.com or tiktokv.com."""
    n = len(segments)
    words = [seg.lower() for seg in segments]
    if n == 3 and segments[0].startswith("@") and words[1] in ("video", "photo"):
        user = segments[0][1:]
        if (not user or _USERNAME.fullmatch(user)) and _POST_ID.fullmatch(segments[2]):
            # `@_` is the canonical URL's own placeholder for an author we do not know.
            return _post(segments[2], None if user in ("", "_") else user)
        return None
    post_id: str | None = None
    if words[:-1] in (["share", "video"], ["i18n", "share", "video"], ["embed"], ["v"]):
        post_id = segments[-1]
        if words[0] == "v" and words[-1].endswith(".html"):
            post_id = post_id[: -len(".html")]
    elif n == 3 and words[0] in ("embed", "player") and _EMBED_VERSION.fullmatch(words[1]):
        post_id = segments[2]
    if post_id is not None and _POST_ID.fullmatch(post_id):
        return _post(post_id)
    return None


def _query_id_post(segments: list[str], query: str) -> TikTokLink | None:
    """A post page without its id segment (`/@user/video`, `/share/video`, ...) whose `?item_id=` names it."""
    words = [seg.lower() for seg in segments]
    author: str | None = None
    if len(segments) == 2 and segments[0].startswith("@") and words[1] in ("video", "photo"):
        author = segments[0][1:]
        if author and not _USERNAME.fullmatch(author):
            return None
    elif words not in _QUERY_ID_POST_PATHS:
        return None
    post_id = _legacy_post_id(query)
    return _post(post_id, None if author in (None, "", "_") else author) if post_id else None


def _user_id_path(segments: list[str]) -> TikTokLink | None:
    """An account named by its numeric id: `/share/user/<id>` or `/h5/share/usr/<id>.html`."""
    words = [seg.lower() for seg in segments]
    user_id: str | None = None
    if len(segments) == 3 and words[:2] == ["share", "user"]:
        user_id = segments[2]
    elif len(segments) == 4 and words[:3] == ["h5", "share", "usr"] and words[3].endswith(".html"):
        user_id = segments[3][: -len(".html")]
    if user_id is None or not _USER_ID.fullmatch(user_id):
        return None
    return TikTokLink(LinkKind.USER, f"https://www.tiktok.com/share/user/{user_id}", user_id=user_id)


def _page_path(segments: list[str]) -> TikTokLink | None:
    """A short `/t/<code>`, user, hashtag or music page on www./m./bare tiktok.com."""
    if len(segments) == 1 and segments[0].startswith("@"):
        # TikTok names never end in a full stop: one there is the sentence's ("@user.name./").
        user = segments[0][1:].rstrip(".")
        if _USERNAME.fullmatch(user):
            return TikTokLink(LinkKind.USER, f"https://www.tiktok.com/@{user}", username=user)
        return None
    if len(segments) != 2:
        return None
    word, value = segments[0].lower(), segments[1]
    if word == "t" and _SHORT_CODE.fullmatch(value):
        return _short(value, f"https://www.tiktok.com/t/{value}/")
    if word == "tag":
        tag = unquote(value).removeprefix("#")
        if _TAG.fullmatch(tag):
            return TikTokLink(LinkKind.HASHTAG, f"https://www.tiktok.com/tag/{quote(tag, safe='')}", tag=tag)
        return None
    if word == "music":
        slug, _, music_id = value.rpartition("-")
        if slug and len(slug) <= 200 and _POST_ID.fullmatch(music_id):
            name = quote(unquote(slug), safe="-._~", errors="replace")
            return TikTokLink(LinkKind.MUSIC, f"https://www.tiktok.com/music/{name}-{music_id}")
    return None


def _link_at(subdomain: str, domain: str, tail: str) -> TikTokLink | None:
    """The link a URL on `<subdomain>.<domain>.com` with path+query `tail` points to, if any."""
    segments, query = _split_tail(tail)
    if segments is None:
        return None
    if subdomain in _SHORT_HOSTS:
        if domain == "tiktok" and len(segments) == 1 and _SHORT_CODE.fullmatch(segments[0]):
            return _short(segments[0], f"https://{subdomain}.tiktok.com/{segments[0]}/")
        return None
    if len(segments) <= 1 and (not segments or segments[0].lower() in _LEGACY_FEED_PATHS):
        post_id = _legacy_post_id(query)
        return _post(post_id) if post_id else None
    link = _post_path(segments) or _query_id_post(segments, query)
    if link is None and domain == "tiktok":
        link = _page_path(segments) or _user_id_path(segments)
    return link


def _bad_near(char: str, chars: str) -> bool:
    return char.isalnum() or char in chars


def _prefix(text: str, host_start: int) -> tuple[int, str, str]:
    """Where the URL before a host hit starts, its scheme part (`https://`, `//` or ``) and subdomain."""
    start = host_start
    subdomain = ""
    for candidate in _SUBDOMAIN_PREFIXES:
        if text[max(0, start - len(candidate)) : start].lower() == candidate:
            subdomain = candidate[:-1]
            start -= len(candidate)
            break
    scheme = ""
    if text[max(0, start - 2) : start] == "//":
        scheme = "//"
        start -= 2
        for candidate in ("https:", "http:"):
            if text[max(0, start - len(candidate)) : start].lower() == candidate:
                scheme = candidate + "//"
                start -= len(candidate)
                break
    return start, scheme, subdomain


def _match_at(text: str, hit: re.Match[str]) -> tuple[TikTokLink | None, int]:
    """Judge one host hit: the link it starts (or None) and where scanning resumes."""
    host_start, host_end = hit.span()
    # Only a path, query or fragment can name anything: a bare host is the home page, and anything
    # else after it (".evil.net", "@evil.net", ":8080", "pany") makes it a different host or a look-alike.
    if text[host_end : host_end + 1] not in _AFTER_HOST:
        return None, host_end
    start, scheme, subdomain = _prefix(text, host_start)
    before = text[start - 1] if start > 0 else ""
    bad = _BAD_BEFORE_SCHEME if scheme.startswith("http") else _BAD_BEFORE_HOST
    # `ftp://`, `javascript://`: a scheme we do not know makes the whole thing something else.
    if scheme == "//":
        bad += ":"
    if before and _bad_near(before, bad):
        return None, host_end
    tail_match = _TAIL.match(text, host_end)
    tail = tail_match.group(0) if tail_match else ""
    glued = _NEXT_URL.search(tail, 1)
    if glued is not None:
        tail = tail[: glued.start()]
    resume = host_end + len(tail)
    return _link_at(subdomain, "tiktok" + hit.group(1).lower(), tail.rstrip(_TRAILING)), resume


def _dedup_key(link: TikTokLink) -> tuple[str, str]:
    if link.kind is LinkKind.POST:
        return link.kind.value, link.post_id or ""
    if link.kind is LinkKind.SHORT:
        return link.kind.value, link.code or ""
    if link.kind is LinkKind.USER:
        return link.kind.value, (link.username or "").lower() or f"#{link.user_id}"
    if link.kind is LinkKind.HASHTAG:
        return link.kind.value, (link.tag or "").casefold()
    return link.kind.value, link.url.rpartition("-")[2]


def find_links(text: str, limit: int = 5) -> list[TikTokLink]:
    """Every TikTok link in `text`, in order of appearance, de-duplicated, at most `limit`."""
    found: list[TikTokLink] = []
    seen: set[tuple[str, str]] = set()
    pos = 0
    while len(found) < limit:
        hit = _HOST.search(text, pos)
        if hit is None:
            break
        link, pos = _match_at(text, hit)
        if link is None:
            continue
        key = _dedup_key(link)
        if key not in seen:
            seen.add(key)
            found.append(link)
    return found


_WHOLE_URL = re.compile(
    r"(?:https?:)?//(?:(www|m|vm|vt)\.)?tiktok(v?)\.com(?:(?::443)?([/?#][^\s]*))?", re.IGNORECASE
)


def parse_link(url: str) -> TikTokLink | None:
    """The TikTok link that the whole of `url` (an absolute http(s) URL) is, or None."""
    match = _WHOLE_URL.fullmatch(url)
    if match is None:
        return None
    return _link_at((match.group(1) or "").lower(), "tiktok" + match.group(2).lower(), match.group(3) or "")


# --- short-link resolution ---------------------------------------------------------------------------

_UPSTREAM = "tiktok"
_COBALT_BODY = re.compile(rb'\s*<a href="(https?://[^"?#\s]{1,2048})')


class ShortLinkResolver:
    """Resolves short links to posts: manual redirects on the allow-list only, results cached with a TTL."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        ttl: float = 3600.0,
        max_hops: int = 5,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 10_000,
        max_body: int = 16 * 1024,
        cache: TTLCache | None = None,
    ) -> None:
        self._client = client
        self._ttl = ttl
        self._max_hops = max_hops
        self._max_body = max_body
        # Code -> post id; shared by replicas when the cache is Redis.
        self._cache: TTLCache = (
            cache if cache is not None else MemoryTTLCache(clock=clock, max_entries=max_entries)
        )

    async def resolve(self, link: TikTokLink) -> TikTokLink:
        """The post a short link leads to; any other link is returned unchanged."""
        if link.kind is not LinkKind.SHORT or not link.code:
            return link
        cached = await self._cache.get(link.code)
        if cached is not None:
            return _link_from_json(cached)
        try:
            start = httpx.URL(link.url)
        except (httpx.InvalidURL, ValueError, TypeError, UnicodeError):
            raise InvalidLink(f"not a URL: {link.url!r}") from None
        post = await self._follow(start)
        await self._cache.put(link.code, json.dumps(post.as_json()), self._ttl)
        return post

    async def post_link(self, link: TikTokLink) -> TikTokLink:
        """The post a post or short link names (short links resolved); InvalidLink for any other link."""
        link = await self.resolve(link)
        if link.kind is not LinkKind.POST or not link.post_id:
            raise InvalidLink("not a post link")
        return link

    async def _follow(self, url: httpx.URL) -> TikTokLink:
        """Walk the redirect chain from `url` until a Location names a post."""
        if not is_allowed_url(url):
            raise UnsafeRedirect(f"{url.host or url} is not a TikTok host", location=str(url))
        seen = {str(url.copy_with(fragment=None))}
        hops = 0
        while True:
            status, location, body = await self._fetch(url)
            if 300 <= status < 400:
                if not location:
                    raise UpstreamError("redirect without a Location", upstream=_UPSTREAM, status=status)
                hops += 1
                if hops > self._max_hops:
                    raise LinkNotFound(f"short link redirects more than {self._max_hops} times")
                url = self._next_hop(url, location)
                post = parse_link(str(url))
                if post is not None and post.kind is LinkKind.POST:
                    return post
                if url.path in ("", "/"):
                    raise LinkNotFound("short link leads to the home page")
                key = str(url.copy_with(fragment=None))
                if key in seen:
                    raise LinkNotFound("short link redirects in a loop")
                seen.add(key)
                continue
            if status == 200:
                post = _post_from_body(body)
                if post is not None:
                    return post
                raise LinkNotFound("short link does not lead to a post")
            if status in (404, 410):
                raise LinkNotFound("short link not found")
            if status >= 500 or status == 429:
                raise UpstreamError(f"short link host answered {status}", upstream=_UPSTREAM, status=status)
            raise UpstreamRejected(f"short link host answered {status}", upstream=_UPSTREAM, status=status)

    @staticmethod
    def _next_hop(url: httpx.URL, location: str) -> httpx.URL:
        """The absolute URL a Location points to, refused unless it is on the allow-list."""
        try:
            target = url.join(location)
        except (httpx.InvalidURL, ValueError, TypeError, UnicodeError):
            raise UnsafeRedirect("redirect to an unreadable URL", location=location) from None
        if not is_allowed_url(target):
            raise UnsafeRedirect(f"redirect to {target.host or location} refused", location=str(target))
        return target

    async def _fetch(self, url: httpx.URL) -> tuple[int, str | None, bytes]:
        """One GET without following redirects: status, Location and the head of a 200 body."""
        body = b""
        try:
            async with self._client.stream("GET", url, follow_redirects=False) as response:
                if response.status_code == 200:
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) >= self._max_body:
                            break
                return response.status_code, response.headers.get("location"), body
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"{url.host} did not answer in time", upstream=_UPSTREAM) from exc
        except httpx.InvalidURL as exc:
            # httpx prepares a next request even when not following; a Location it cannot build lands here.
            raise UnsafeRedirect(f"redirect to an unreadable URL: {exc}") from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(f"{url.host}: {type(exc).__name__}", upstream=_UPSTREAM) from exc


def _link_from_json(text: str) -> TikTokLink:
    data = json.loads(text)
    return TikTokLink(**{**data, "kind": LinkKind(data["kind"])})


def _post_from_body(body: bytes) -> TikTokLink | None:
    """cobalt's variant: a 200 body that begins `<a href="https://www.tiktok.com/@user/video/<id>?...">`."""
    match = _COBALT_BODY.match(body)
    if match is None:
        return None
    url = match.group(1).decode("utf-8", "replace")
    if not is_allowed_url(url):
        return None
    post = parse_link(url)
    return post if post is not None and post.kind is LinkKind.POST else None
