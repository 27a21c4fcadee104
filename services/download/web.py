"""The TikTok web backend: read the post page's JSON, then fetch the media with that page's cookies.

The recipe public tools share (pyktok, yt-dlp, gallery-dl, cobalt): GET `https://www.tiktok.com/@_/video/<id>`
with a browser User-Agent, keep the cookies it sets (`tt_chain_token` binds CDN URLs to the session), parse
`__UNIVERSAL_DATA_FOR_REHYDRATION__` (older pages: `SIGI_STATE`, `__NEXT_DATA__`), then GET the media with
those cookies and the page as Referer. Cookies live in anonymous visitor sessions (`sessions.py`), reused
across downloads as a browser would; no user's own TikTok cookies ever enter them.

The front door (2026): a page may be a proof-of-work challenge (solved once per page, `challenge.py`), an
empty shell, a 10204 IP block, a login wall, or the CDN may refuse the media. Each is a `DoorError`; the
backend tries again in another visitor session (blocks also bench the session's proxy) up to
`door_attempts` times, then raises the last one met.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from services.download.challenge import COOKIE_DOMAIN, Solver, read_challenge
from services.download.growing import StreamInfo
from services.download.models import (
    Download,
    FileRole,
    MediaFile,
    MediaKind,
    Progress,
    Quality,
    Want,
    extension_for,
    mime_for,
    role_for,
)
from services.download.sessions import Egress, NoEgress, SessionPool, VisitorSession
from services.download.spool import Meter, Spool, ensure_room
from services.download.streams import DOWNLOAD_RETRY, body_errors, open_stream, read_capped
from services.errors import (
    CdnRejected,
    ChallengeFailed,
    DoorError,
    EmptyShell,
    IpBlocked,
    LinkNotFound,
    LoginWall,
    PostUnavailable,
    ServiceError,
    TooLarge,
    TruncatedStream,
    UnavailableReason,
    UnsafeRedirect,
    UpstreamError,
    UpstreamRejected,
    UpstreamServerError,
    UpstreamTimeout,
)
from services.http import is_allowed_url
from services.links import LinkKind, TikTokLink
from services.metadata.models import Post, post_from_web
from services.retry import RetryPolicy

NAME = "web"
PAGE_URL = "https://www.tiktok.com/@_/video/{post_id}"
_PAGE_CAP = 8 * 1024 * 1024
_MAX_HOPS = 5
Raw = Mapping[str, Any]

# statusCode of `webapp.video-detail` (yt-dlp TikTokIE, gallery-dl `_check_status_code`).
STATUS_REASONS: Mapping[int, UnavailableReason] = {
    10216: UnavailableReason.PRIVATE,
    10222: UnavailableReason.PRIVATE_ACCOUNT,
    10221: UnavailableReason.DELETED,  # the author no longer exists, and the post with them
    10231: UnavailableReason.REGION,
}
# yt-dlp reads 10204 as "Your IP address is blocked from accessing this post": a block, not a verdict,
# whatever its statusMsg says (the reference: "treat it as a block (retry elsewhere), not as deleted").
IP_BLOCKED = 10204
# The scope key of the same detail on the page TikTok serves to mobile browsers (read by many public tools).
REFLOW_DETAIL = "webapp.reflow.video.detail"
HVC1_PATH = "/media-video-hvc1/"  # H.265 copies that are video-only or dead (yt-dlp #16950, #17372)
# The errors a fresh visitor session (another cookie jar, later another proxy) may not meet again.
TRANSIENT_AT_DOOR: tuple[type[ServiceError], ...] = (DoorError, UpstreamServerError, UpstreamTimeout)


# --- the page's JSON, as frozen data ---


class Codec(StrEnum):
    """A rendition's codec family."""

    H264 = "h264"
    H265 = "h265"
    BYTEVC2 = "bytevc2"  # TikTok's own codec: no player outside the app decodes it
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Rendition:
    """One entry of `video.bitrateInfo`."""

    urls: tuple[str, ...]
    codec: Codec
    size: int | None
    width: int | None
    height: int | None
    bitrate: int | None


@dataclass(frozen=True, slots=True)
class Image:
    """One image of a photo post; `urls` are variants of the same picture (HEIC, WebP, JPEG)."""

    urls: tuple[str, ...]
    width: int | None
    height: int | None


@dataclass(frozen=True, slots=True)
class WebItem:
    """What the web backend needs from an `itemStruct`: the post, and where its media lives."""

    post: Post
    renditions: tuple[Rendition, ...] = ()
    play_url: str | None = None
    download_url: str | None = None
    images: tuple[Image, ...] = ()
    music_url: str | None = None
    age_restricted: bool = False


@dataclass(frozen=True, slots=True)
class PostPage:
    """A post page read: its status and, when the status is 0, the item."""

    status_code: int
    status_msg: str
    item: WebItem | None
    source: str  # which script held the data: universal, sigi, next


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _map(value: Any) -> Raw:
    return value if isinstance(value, Mapping) else {}


def _urls(value: Any) -> tuple[str, ...]:
    """Every URL of a `{UrlList|urlList|url_list: [...]}` object or a plain string."""
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, Mapping):
        for key in ("UrlList", "urlList", "url_list"):
            urls = value.get(key)
            if isinstance(urls, list):
                return tuple(u for u in urls if isinstance(u, str) and u)
    if isinstance(value, list):  # yt-dlp also meets a list of {src} objects
        return tuple(u["src"] for u in value if isinstance(u, Mapping) and isinstance(u.get("src"), str))
    return ()


def usable_media_url(url: str) -> bool:
    """Whether a media URL is worth fetching: not on www.tiktok.com (yt-dlp #11034), not an hvc1 copy."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return False
    return parsed.host.lower() != "www.tiktok.com" and HVC1_PATH not in parsed.path


def _media_urls(value: Any) -> tuple[str, ...]:
    return tuple(u for u in _urls(value) if usable_media_url(u))


def codec_of(codec_type: str, url_key: str) -> Codec:
    """The codec family from `CodecType` and `UrlKey` (`v…_bytevc1_720p_…` is H.265)."""
    text = f"{codec_type} {url_key}".lower()
    if "bytevc2" in text:
        return Codec.BYTEVC2
    if "h265" in text or "bytevc1" in text or "hevc" in text:
        return Codec.H265
    if "h264" in text or "avc" in text:
        return Codec.H264
    return Codec.UNKNOWN


def item_from_web(item: Raw) -> WebItem:
    """The media of a web `itemStruct` (camelCase), with the post read by `post_from_web`."""
    video = _map(item.get("video"))
    renditions = []
    for entry in video.get("bitrateInfo") or ():
        if not isinstance(entry, Mapping):
            continue
        play = _map(entry.get("PlayAddr"))
        urls = _media_urls(play)
        if not urls:
            continue
        renditions.append(
            Rendition(
                urls=urls,
                codec=codec_of(str(entry.get("CodecType") or ""), str(play.get("UrlKey") or "")),
                size=_int(play.get("DataSize")) or None,
                width=_int(play.get("Width")) or None,
                height=_int(play.get("Height")) or None,
                bitrate=_int(entry.get("Bitrate")) or None,
            )
        )
    image_post = item.get("imagePost")
    images = []
    if isinstance(image_post, Mapping):
        for image in image_post.get("images") or ():
            if isinstance(image, Mapping):
                urls = _media_urls(image.get("imageURL"))
                if urls:
                    images.append(
                        Image(
                            urls,
                            _int(image.get("imageWidth")) or None,
                            _int(image.get("imageHeight")) or None,
                        )
                    )
    music_url = _media_urls(_map(item.get("music")).get("playUrl"))
    download = video.get("downloadAddr") or _map(video.get("download")).get("url")
    # `PlayAddrStruct` (2025 pages) holds the same URL as `playAddr`, as a {UrlList} object.
    play_url = next(
        iter(_media_urls(video.get("playAddr")) or _media_urls(video.get("PlayAddrStruct"))), None
    )
    download_url = next(iter(_media_urls(download)), None)
    # isContentClassified is set on posts anyone can watch too: only a post without its video is age-gated.
    has_media = bool(renditions or play_url or download_url or images)
    return WebItem(
        post=post_from_web(item),
        renditions=tuple(renditions),
        play_url=play_url,
        download_url=download_url,
        images=tuple(images),
        music_url=next(iter(music_url), None),
        age_restricted=bool(item.get("isContentClassified")) and not has_media,
    )


def _script(html: str, script_id: str) -> Any:
    """The JSON inside `<script id="script_id" ...>…</script>`, or None."""
    match = re.search(rf'<script[^>]+\bid="{re.escape(script_id)}"[^>]*>(.*?)</script>', html, re.DOTALL)
    if match is None:
        return None
    try:
        return json.loads(match.group(1))
    except ValueError:
        return None


def _path(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def parse_post_page(html: str, post_id: str | None = None) -> PostPage:
    """Read a post page: the rehydration JSON, else SIGI_STATE, else __NEXT_DATA__; UpstreamError if none."""
    universal = _script(html, "__UNIVERSAL_DATA_FOR_REHYDRATION__")
    detail = _path(universal, "__DEFAULT_SCOPE__", "webapp.video-detail")
    if not isinstance(detail, Mapping):  # the page a mobile browser gets names it "reflow"
        detail = _path(universal, "__DEFAULT_SCOPE__", REFLOW_DETAIL)
    if isinstance(detail, Mapping):
        item = _path(detail, "itemInfo", "itemStruct")
        return _page(detail.get("statusCode"), detail.get("statusMsg"), item, "universal")
    sigi = _script(html, "SIGI_STATE")
    if isinstance(sigi, Mapping):
        items = _path(sigi, "ItemModule")
        item = None
        if isinstance(items, Mapping) and items:
            item = items.get(post_id) if post_id else next(iter(items.values()))
        if isinstance(item, Mapping) and isinstance(item.get("author"), str):
            # SIGI names the author by uniqueId; the account itself sits in UserModule.
            user = _path(sigi, "UserModule", "users", item["author"])
            if isinstance(user, Mapping):
                item = {**item, "author": user}
        return _page(
            _path(sigi, "VideoPage", "statusCode"), _path(sigi, "VideoPage", "statusMsg"), item, "sigi"
        )
    nextdata = _script(html, "__NEXT_DATA__")
    props = _path(nextdata, "props", "pageProps")
    if isinstance(props, Mapping):
        return _page(
            props.get("statusCode"), props.get("statusMsg"), _path(props, "itemInfo", "itemStruct"), "next"
        )
    if universal is not None:
        raise EmptyShell("the page's rehydration data has no video detail", upstream=NAME)
    raise EmptyShell("no post data on the page", upstream=NAME)


def _page(status: Any, message: Any, item: Any, source: str) -> PostPage:
    code = _int(status) or 0
    return PostPage(
        status_code=code,
        status_msg=message if isinstance(message, str) else "",
        item=item_from_web(item) if code == 0 and isinstance(item, Mapping) and item else None,
        source=source,
    )


def check_page(page: PostPage) -> WebItem:
    """The item of a page that can be served; PostUnavailable (or UpstreamError) otherwise."""
    if page.status_code == IP_BLOCKED:
        raise IpBlocked(f"status {IP_BLOCKED}: this address is blocked from the post", upstream=NAME)
    if page.status_code in STATUS_REASONS:
        reason = STATUS_REASONS[page.status_code]
        raise PostUnavailable(
            reason, f"post unavailable: {reason.value} (status {page.status_code})", upstream=NAME
        )
    if page.status_code != 0:
        raise UpstreamError(f"post page status {page.status_code} {page.status_msg}".strip(), upstream=NAME)
    if page.item is None:
        if page.status_msg:  # cobalt: any status message without an item means the post is gone
            raise PostUnavailable(
                UnavailableReason.DELETED, f"post unavailable: {page.status_msg}", upstream=NAME
            )
        raise EmptyShell("the post page has no item", upstream=NAME)
    if page.item.age_restricted:
        raise PostUnavailable(UnavailableReason.AGE, "post is age-restricted (login required)", upstream=NAME)
    return page.item


# --- choosing what to download ---


@dataclass(frozen=True, slots=True)
class Source:
    """One URL to try for a file, with what the page says about it."""

    url: str
    label: str
    size: int | None = None
    width: int | None = None
    height: int | None = None


def _fits(rendition: Rendition, limit: int | None) -> bool:
    # An unknown size is given a chance; the spool enforces the limit while reading.
    return limit is None or rendition.size is None or rendition.size <= limit


def _ranked(renditions: Sequence[Rendition]) -> list[Rendition]:
    """Largest picture first; at equal size H.264 (plays everywhere), then the higher bitrate."""
    return sorted(
        renditions,
        key=lambda r: ((r.width or 0) * (r.height or 0), r.codec is Codec.H264, r.bitrate or 0, r.size or 0),
        reverse=True,
    )


def ranked_renditions(
    item: WebItem, size_limit: int | None, quality: Quality = Quality.COMPATIBLE
) -> list[Rendition]:
    """The renditions to try, in order, for `quality`; bytevc2 never (nothing outside the app plays it)."""
    fitting = [r for r in item.renditions if _fits(r, size_limit) and r.codec is not Codec.BYTEVC2]
    h264 = _ranked([r for r in fitting if r.codec is Codec.H264])[:1]
    if quality is Quality.BEST:
        # The sharpest copy; the best H.264 behind it in case the H.265 copy fails.
        top = _ranked(fitting)[:1]
        return top + [r for r in h264 if r not in top]
    # Compatible: the best H.264; H.265 only when no H.264 copy fits (better than nothing).
    return h264 or _ranked(fitting)[:1]


def video_sources(
    item: WebItem, size_limit: int | None, quality: Quality = Quality.COMPATIBLE
) -> list[Source]:
    """URLs to try for a video, best first: the renditions `quality` ranks, then playAddr, downloadAddr."""
    sources: list[Source] = []
    for rendition in ranked_renditions(item, size_limit, quality):
        label = f"{rendition.codec.value} {rendition.width}x{rendition.height}"
        sources += [
            Source(u, label, rendition.size, rendition.width, rendition.height) for u in rendition.urls
        ]
    if item.play_url:
        sources.append(Source(item.play_url, "playAddr", None, item.post.width, item.post.height))
    if item.download_url:  # watermarked: the last resort
        sources.append(Source(item.download_url, "downloadAddr", None, item.post.width, item.post.height))
    unique: dict[str, Source] = {}
    for source in sources:
        unique.setdefault(source.url, source)
    return list(unique.values())


def image_source(image: Image) -> str:
    """The image variant to fetch: a JPEG when offered (HEIC and WebP do not display everywhere)."""
    for url in image.urls:
        path = httpx.URL(url).path.lower() if is_allowed_url(url) else url.lower()
        if path.endswith((".jpeg", ".jpg")) or ".jpeg" in path:
            return url
    return image.urls[0]


# --- the backend ---

_POST_PATH = re.compile(
    r"^/@[\w.-]*/(?:video|photo)/(\d{1,21})/?$|^/v/(\d{1,21})(?:\.html)?$|^/share/video/(\d{1,21})"
)


def post_id_in(url: httpx.URL) -> str | None:
    """The post id of a TikTok post URL's path, if it is one."""
    match = _POST_PATH.search(url.path)
    return next((g for g in match.groups() if g), None) if match else None


def is_block(error: ServiceError) -> str | None:
    """Why an error means TikTok blocked this visitor or its address (retry elsewhere), or None.

    Blocks: 10204, a challenge that cannot be passed, a login wall, a 403 from a post page or the CDN. An
    empty shell, a 5xx or a timeout is worth another session but says nothing against the proxy.
    """
    if isinstance(error, IpBlocked | ChallengeFailed | LoginWall):
        return error.code
    if isinstance(error, UpstreamRejected | CdnRejected) and error.status == 403:
        return "HTTP 403"
    return None


class WebBackend:
    """Downloads by reading TikTok's own post page, the way a browser does."""

    name = NAME
    reads_post = True  # the page carries the post's stats: no metadata call is needed for the caption

    def __init__(
        self,
        client: httpx.AsyncClient | None = None,
        *,
        retry: RetryPolicy | None = None,
        sessions: SessionPool | None = None,
        solver: Solver | None = None,
        door_attempts: int = 3,
    ) -> None:
        # Warm visitor sessions (cookies, fingerprint, proxy); a bare client gets a direct pool of its own.
        if sessions is None:
            if client is None:
                raise ValueError("WebBackend needs a client or a session pool")
            sessions = SessionPool.direct(client)
        self.sessions = sessions
        self._retry = retry or DOWNLOAD_RETRY
        self.solver = solver or Solver()
        self._door_attempts = max(1, door_attempts)
        self.door_failures: Counter[str] = Counter()  # error code -> times met at the door

    async def fetch(
        self,
        link: TikTokLink,
        want: Want,
        size_limit: int | None,
        temp_dir: Path,
        progress: Progress | None = None,
        *,
        quality: Quality = Quality.COMPATIBLE,
    ) -> Download:
        """Download in a warm visitor session; when the door turns it away, retry in another (another proxy
        after a block), at most `door_attempts` sessions."""
        post_id = link.post_id if link.kind is LinkKind.POST and link.post_id else None
        if post_id is None:
            async with self.sessions.lease() as session:
                post_id = await self._resolve(link.url, session)
        meter = Meter(progress)
        tried: list[Egress] = []  # proxies that blocked this download
        last: ServiceError | None = None
        for _ in range(self._door_attempts):
            try:
                session = self.sessions.acquire(avoid=tried)
            except NoEgress:
                if last is not None:
                    raise last from None  # say what the door did (10204...), not only that no proxy is left
                raise
            before = _listing(temp_dir)
            try:
                download = await self._fetch_in(session, post_id, want, size_limit, temp_dir, meter, quality)
            except ServiceError as exc:
                reason = is_block(exc)
                if reason is None and not isinstance(exc, TRANSIENT_AT_DOOR):
                    self.sessions.release(session, ok=not isinstance(exc, UpstreamError))
                    raise  # a verdict about the post, or a failure another session would meet too
                self.door_failures[exc.code] += 1
                last = exc  # another visitor session (another proxy, after a block) may get through
                if reason is not None:
                    self.sessions.blocked(session, reason)  # retires the session, benches its proxy
                    if session.egress.proxy is not None:
                        tried.append(session.egress)
                self.sessions.release(session, ok=False)
                _remove_all_but(temp_dir, before)  # the next session writes the same names afresh
                continue
            except BaseException:
                self.sessions.release(session, ok=False)
                raise
            self.sessions.release(session, ok=True)
            return download
        assert last is not None
        raise last

    async def _fetch_in(
        self,
        session: VisitorSession,
        post_id: str,
        want: Want,
        size_limit: int | None,
        temp_dir: Path,
        meter: Meter,
        quality: Quality,
    ) -> Download:
        """One visitor session's try: the page, then its media."""
        item = check_page(await self._read_page(post_id, session))
        files: list[MediaFile] = []
        music = item.music_url
        if want is Want.AUDIO:
            if not music:
                raise UpstreamError("the post has no sound of its own to download", upstream=NAME)
            files.append(await self._audio(music, item, session, temp_dir, size_limit, meter))
            return Download(MediaKind.AUDIO, tuple(files), item.post)
        if item.images:
            for index, image in enumerate(item.images, 1):
                files.append(
                    await self._file(
                        [Source(image_source(image), "image", None, image.width, image.height)],
                        session,
                        temp_dir / f"{index:02d}-photo",
                        size_limit,
                        meter,
                        FileRole.PHOTO,
                    )
                )
            if music:
                files.append(await self._audio(music, item, session, temp_dir, size_limit, meter))
            return Download(MediaKind.PHOTOS, tuple(files), item.post)
        sources = video_sources(item, size_limit, quality)
        if not sources:
            raise UpstreamError("the post page offers no video", upstream=NAME)
        video = await self._file(
            sources,
            session,
            temp_dir / "01-video",
            size_limit,
            meter,
            FileRole.VIDEO,
            item.post.duration,
            item.post if want is Want.VIDEO else None,  # only a lone video can go out while it downloads
        )
        files.append(video)
        if want is Want.ORIGINAL and music:
            files.append(await self._audio(music, item, session, temp_dir, size_limit, meter))
        return Download(MediaKind.VIDEO, tuple(files), item.post)

    async def aclose(self) -> None:
        """Nothing to release: the session pool (and its clients) belong to their owner."""

    async def check(self, post_id: str) -> str:
        """`doctor`: read a post page (its challenge too), then ask its CDN for the first KiB; what it saw."""
        async with self.sessions.lease() as session:
            met = self.solver.met
            page = await self._read_page(post_id, session)
            door = "challenge solved" if self.solver.met > met else "no challenge"
            item = check_page(page)
            sources = [s.url for s in video_sources(item, None)] or [image_source(i) for i in item.images]
            if not sources or not is_allowed_url(sources[0]):
                raise UpstreamError("the post page offers no media on TikTok's CDN", upstream=NAME)
            url = httpx.URL(sources[0])
            request = self._request(url, session, referer=True)
            request.headers["Range"] = "bytes=0-1023"
            async with open_stream(session.client, lambda: request, self._retry, upstream=NAME) as response:
                if response.status_code not in (200, 206):
                    raise _http_error(f"media {url.host}", response.status_code)
                body = await read_capped(response, 64 * 1024 * 1024, upstream=NAME)
            cookies = ", ".join(session.cookies.names()) or "none"
        return (
            f"page ok ({page.source}, {door}, cookies: {cookies}); CDN {url.host} answered "
            f"{response.status_code} with {len(body)} bytes"
        )

    async def read_page(self, post_id: str) -> PostPage:
        """GET a post page in a warm session and parse it (for metadata without media)."""
        async with self.sessions.lease() as session:
            return await self._read_page(post_id, session)

    async def _read_page(self, post_id: str, session: VisitorSession) -> PostPage:
        """GET the post page, passing one proof-of-work challenge if the door puts one up, and parse it."""
        url = httpx.URL(PAGE_URL.format(post_id=post_id))
        html = await self._get_page(url, session)
        challenge = read_challenge(html)
        if challenge is not None:
            solution = await self.solver.solve(challenge)
            for name, value in solution.cookies:
                session.cookies.set(name, value, COOKIE_DOMAIN)
            try:
                html = await self._get_page(url, session)
            finally:
                for name, _ in solution.cookies:
                    session.cookies.discard(name, COOKIE_DOMAIN)
            if read_challenge(html) is not None:
                raise ChallengeFailed("still challenged after one solve", upstream=NAME)
        return parse_post_page(html, post_id)

    async def _get_page(self, url: httpx.URL, session: VisitorSession) -> str:
        """GET a post page's HTML, following allowed redirects and keeping the cookies it sets."""
        for _ in range(_MAX_HOPS):
            async with open_stream(
                session.client, partial(self._request, url, session), self._retry, upstream=NAME
            ) as response:
                session.cookies.collect(response, url)
                status = response.status_code
                if status in (301, 302, 303, 307, 308):
                    url = self._next_hop(url, response)
                    if url.path.rstrip("/") == "/login":
                        raise LoginWall("TikTok wants a login to show this post", upstream=NAME)
                    continue
                if status == 404:
                    raise PostUnavailable(UnavailableReason.DELETED, "post page not found", upstream=NAME)
                if status != 200:
                    raise _http_error("post page", status)
                session.page_url = url
                body = await read_capped(response, _PAGE_CAP, upstream=NAME)
                return body.decode("utf-8", "replace")
        raise UpstreamError("too many redirects from the post page", upstream=NAME)

    async def _resolve(self, start: str, session: VisitorSession) -> str:
        """Follow a short link's redirects until they name a post (never leaving TikTok)."""
        if not is_allowed_url(start):
            raise UnsafeRedirect("not a TikTok URL", location=start, upstream=NAME)
        url = httpx.URL(start)
        for _ in range(_MAX_HOPS):
            post_id = post_id_in(url)
            if post_id:
                return post_id
            if url.path in ("", "/") and url.host.lower() in ("www.tiktok.com", "tiktok.com"):
                raise LinkNotFound("the short link leads to TikTok's home page", upstream=NAME)
            async with open_stream(
                session.client, partial(self._request, url, session), self._retry, upstream=NAME
            ) as response:
                session.cookies.collect(response, url)
                if response.status_code not in (301, 302, 303, 307, 308):
                    raise LinkNotFound(f"the short link answered HTTP {response.status_code}", upstream=NAME)
                url = self._next_hop(url, response)
        raise LinkNotFound("too many redirects from the short link", upstream=NAME)

    def _next_hop(self, url: httpx.URL, response: httpx.Response) -> httpx.URL:
        location = response.headers.get("location", "")
        target = url.join(location) if location else url
        if not location or not is_allowed_url(target):
            raise UnsafeRedirect("a redirect left TikTok", location=location, upstream=NAME)
        return target

    def _request(self, url: httpx.URL, session: VisitorSession, *, referer: bool = False) -> httpx.Request:
        headers: dict[str, str] = {}
        cookie = session.cookies.header_for(url)
        if cookie:
            headers["Cookie"] = cookie
        if referer:
            headers["Referer"] = str(session.page_url)
            headers["Accept"] = "*/*"
            # What a page's <video>/<img> sends for the CDN (the impersonated defaults describe a navigation).
            headers["Sec-Fetch-Site"] = "same-site"
            headers["Sec-Fetch-Mode"] = "no-cors"
            headers["Sec-Fetch-Dest"] = "video"
        return session.client.build_request("GET", url, headers=headers)

    async def _audio(
        self,
        url: str,
        item: WebItem,
        session: VisitorSession,
        temp_dir: Path,
        limit: int | None,
        meter: Meter,
    ) -> MediaFile:
        duration = item.post.music.duration if item.post.music else None
        return await self._file(
            [Source(url, "music")], session, temp_dir / "90-sound", limit, meter, FileRole.AUDIO, duration
        )

    async def _file(
        self,
        sources: Sequence[Source],
        session: VisitorSession,
        stem: Path,
        limit: int | None,
        meter: Meter,
        role: FileRole,
        duration: float | None = None,
        post: Post | None = None,
    ) -> MediaFile:
        """Download the first source that works; TooLarge if any source failed only for its size."""
        errors: list[ServiceError] = []
        for source in sources:
            early = _stream_info(source, role, duration)
            try:
                size, mime, path = await self._download(
                    source.url, session, stem, limit, meter, source.size, early, post
                )
            except (UpstreamError, TooLarge, UnsafeRedirect) as exc:
                errors.append(exc)  # the next source may be fine; a refused URL is never contacted
                continue
            return MediaFile(path, mime, size, role, source.width, source.height, duration)
        too_large = [e for e in errors if isinstance(e, TooLarge)]
        unsafe = [e for e in errors if isinstance(e, UnsafeRedirect)]
        raise too_large[0] if too_large else unsafe[0] if unsafe else errors[-1]

    async def _download(
        self,
        start: str,
        session: VisitorSession,
        stem: Path,
        limit: int | None,
        meter: Meter,
        known_size: int | None = None,
        early: tuple[int, int, float] | None = None,
        post: Post | None = None,
    ) -> tuple[int, str, Path]:
        """GET one media URL with the session's cookies and Referer, spooling it next to `stem`."""
        if not is_allowed_url(start):
            raise UnsafeRedirect("a media URL outside TikTok", location=start, upstream=NAME)
        if limit is None or known_size is None or known_size <= limit:
            ensure_room(stem.parent, known_size)  # the page says how big it is: no room, no request
        url = httpx.URL(start)
        for _ in range(_MAX_HOPS):
            async with open_stream(
                session.client,
                partial(self._request, url, session, referer=True),
                self._retry,
                upstream=NAME,
            ) as response:
                session.cookies.collect(response, url)
                status = response.status_code
                if status in (301, 302, 303, 307, 308):
                    url = self._next_hop(url, response)
                    continue
                if status == 403:
                    raise CdnRejected(f"media {url.host} refused access (403)", upstream=NAME, status=403)
                if status not in (200, 206):
                    raise _http_error(f"media {url.host}", status)
                length = _int(response.headers.get("content-length"))
                if limit is not None and length is not None and length > limit:
                    raise TooLarge(size=length, limit=limit)
                mime = _mime(response, url)
                path = stem.with_suffix(extension_for(mime, ".bin"))
                meter.expect(length)
                with Spool(path, limit, meter, expected=length) as spool, body_errors(NAME):
                    if early is not None and post is not None and length is not None and length > 0:
                        # Size, pixels and seconds known before the bytes: the upload may start now.
                        spool.offer(StreamInfo(length, mime, *early), post)
                    async for chunk in response.aiter_raw():
                        spool.write(chunk)
                    if length is not None and spool.size != length:
                        raise TruncatedStream(f"media ended at {spool.size} of {length} bytes", upstream=NAME)
                return spool.size, mime, path
        raise UpstreamError("too many redirects for a media URL", upstream=NAME)


def _listing(directory: Path) -> set[Path]:
    return set(directory.iterdir())


def _remove_all_but(directory: Path, keep: set[Path]) -> None:
    for path in _listing(directory) - keep:
        path.unlink(missing_ok=True)


def _stream_info(source: Source, role: FileRole, duration: float | None) -> tuple[int, int, float] | None:
    """A video source's (width, height, duration) when the page says all three, else None."""
    if role is not FileRole.VIDEO or not (source.width and source.height and duration):
        return None
    return source.width, source.height, duration


def _mime(response: httpx.Response, url: httpx.URL) -> str:
    declared = str(response.headers.get("content-type", "")).split(";")[0].strip().lower()
    if role_for(declared) is not None:
        return declared
    # CDNs often say application/octet-stream; the path or TikTok's mime_type=audio_mpeg query knows better.
    query_mime = str(url.params.get("mime_type", "")).replace("_", "/")
    return (
        mime_for(url.path)
        or (query_mime if role_for(query_mime) else "")
        or declared
        or "application/octet-stream"
    )


def _http_error(what: str, status: int) -> UpstreamError:
    if status == 403:
        return UpstreamRejected(
            f"{what} refused access (403): cookie or Referer not accepted", upstream=NAME, status=403
        )
    if 400 <= status < 500 and status != 429:
        return UpstreamRejected(f"{what} answered HTTP {status}", upstream=NAME, status=status)
    if status >= 500:
        return UpstreamServerError(f"{what} answered HTTP {status}", upstream=NAME, status=status)
    return UpstreamError(f"{what} answered HTTP {status}", upstream=NAME, status=status)
