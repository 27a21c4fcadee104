"""The TikTok web backend: read the post page's JSON, then fetch the media with that page's cookies.

The recipe public tools share (pyktok, yt-dlp, gallery-dl, cobalt): GET `https://www.tiktok.com/@_/video/<id>`
with a browser User-Agent, keep the cookies it sets (`tt_chain_token` binds CDN URLs to the session), parse
`__UNIVERSAL_DATA_FOR_REHYDRATION__` (older pages: `SIGI_STATE`, `__NEXT_DATA__`), then GET the media with
those cookies and the page as Referer. Cookies live in one fetch's session only: a shared jar would hand one
user's TikTok session to the next.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from enum import StrEnum
from functools import partial
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Any

import httpx

from services.download.growing import StreamInfo
from services.download.models import (
    Download,
    FileRole,
    MediaFile,
    MediaKind,
    Progress,
    Want,
    extension_for,
    mime_for,
    role_for,
)
from services.download.spool import Meter, Spool
from services.download.streams import DOWNLOAD_RETRY, body_errors, open_stream, read_capped
from services.errors import (
    LinkNotFound,
    PostUnavailable,
    ServiceError,
    TooLarge,
    TruncatedStream,
    UnavailableReason,
    UnsafeRedirect,
    UpstreamError,
    UpstreamRejected,
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
    10204: UnavailableReason.DELETED,
    10221: UnavailableReason.DELETED,  # the author no longer exists, and the post with them
    10231: UnavailableReason.REGION,
}


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
        urls = _urls(play)
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
                urls = _urls(image.get("imageURL"))
                if urls:
                    images.append(
                        Image(
                            urls,
                            _int(image.get("imageWidth")) or None,
                            _int(image.get("imageHeight")) or None,
                        )
                    )
    music_url = _urls(_map(item.get("music")).get("playUrl"))
    download = video.get("downloadAddr") or _map(video.get("download")).get("url")
    return WebItem(
        post=post_from_web(item),
        renditions=tuple(renditions),
        play_url=next(iter(_urls(video.get("playAddr"))), None),
        download_url=next(iter(_urls(download)), None),
        images=tuple(images),
        music_url=next(iter(music_url), None),
        age_restricted=bool(item.get("isContentClassified")),
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
        raise UpstreamError("the page's rehydration data has no video detail", upstream=NAME)
    raise UpstreamError("no post data on the page (an anti-bot challenge?)", upstream=NAME)


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
        raise UpstreamError("the post page has no item", upstream=NAME)
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


def _best(renditions: Sequence[Rendition]) -> Rendition | None:
    return max(
        renditions,
        key=lambda r: ((r.width or 0) * (r.height or 0), r.bitrate or 0, r.size or 0),
        default=None,
    )


def video_sources(item: WebItem, size_limit: int | None) -> list[Source]:
    """URLs to try for a video, best first: the best fitting H.264 (else H.265), playAddr, downloadAddr."""
    fitting = [r for r in item.renditions if _fits(r, size_limit)]
    best = _best([r for r in fitting if r.codec is Codec.H264]) or _best(
        [r for r in fitting if r.codec in (Codec.H265, Codec.UNKNOWN)]
    )
    sources: list[Source] = []
    if best is not None:
        label = f"{best.codec.value} {best.width}x{best.height}"
        sources += [Source(u, label, best.size, best.width, best.height) for u in best.urls]
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


# --- cookies of one fetch ---


@dataclass(frozen=True, slots=True)
class _Cookie:
    name: str
    value: str
    domain: str
    host_only: bool
    secure: bool

    def matches(self, url: httpx.URL) -> bool:
        host = url.host.lower()
        if self.secure and url.scheme != "https":
            return False
        return host == self.domain or (not self.host_only and host.endswith("." + self.domain))


@dataclass(slots=True)
class SessionCookies:
    """The cookies one fetch collected; sent back only to the hosts they are scoped to."""

    _cookies: dict[tuple[str, str], _Cookie] = field(default_factory=dict)

    def collect(self, response: httpx.Response, url: httpx.URL) -> None:
        """Keep the Set-Cookie headers of the answer to `url` (the logical URL, before routing)."""
        for header in response.headers.get_list("set-cookie"):
            self._collect_one(header, url.host.lower())

    def _collect_one(self, header: str, host: str) -> None:
        pair, *attributes = header.split(";")
        name, sep, value = pair.partition("=")
        name, value = name.strip(), value.strip().strip('"')
        if not sep or not name:
            return
        domain, secure, expired = "", False, False
        for attribute in attributes:
            attr, _, val = attribute.partition("=")
            attr, val = attr.strip().lower(), val.strip()
            if attr == "domain":
                domain = val.lstrip(".").lower()
            elif attr == "secure":
                secure = True
            elif attr == "max-age":
                expired = val.lstrip("-").isdigit() and int(val) <= 0
            elif attr == "expires" and not expired:
                expired = _expired(val)
        if domain and not (host == domain or host.endswith("." + domain)):
            return  # a cookie for someone else's domain is refused, as a browser would
        cookie = _Cookie(name, value, domain or host, not domain, secure)
        key = (cookie.domain, name)
        if expired:
            self._cookies.pop(key, None)
        else:
            self._cookies[key] = cookie

    def header_for(self, url: httpx.URL) -> str | None:
        """The Cookie header for a request to `url`, if any cookie applies."""
        pairs = [f"{c.name}={c.value}" for c in self._cookies.values() if c.matches(url)]
        return "; ".join(pairs) or None

    def names(self) -> list[str]:
        """Names of the cookies held."""
        return sorted({name for _, name in self._cookies})


def _expired(value: str) -> bool:
    try:
        return parsedate_to_datetime(value).timestamp() <= time.time()
    except (TypeError, ValueError, IndexError, OverflowError):
        return False


def refusing_cookie_jar() -> CookieJar:
    """A jar that stores nothing: cookies belong to one fetch, never to the shared client."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


# --- the backend ---

_POST_PATH = re.compile(
    r"^/@[\w.-]*/(?:video|photo)/(\d{1,21})/?$|^/v/(\d{1,21})(?:\.html)?$|^/share/video/(\d{1,21})"
)


def post_id_in(url: httpx.URL) -> str | None:
    """The post id of a TikTok post URL's path, if it is one."""
    match = _POST_PATH.search(url.path)
    return next((g for g in match.groups() if g), None) if match else None


@dataclass(slots=True)
class _Session:
    page_url: httpx.URL
    cookies: SessionCookies


class WebBackend:
    """Downloads by reading TikTok's own post page, the way a browser does."""

    name = NAME
    reads_post = True  # the page carries the post's stats: no metadata call is needed for the caption

    def __init__(self, client: httpx.AsyncClient, *, retry: RetryPolicy | None = None) -> None:
        # The shared client must not keep cookies between fetches (users): switch its jar off.
        client.cookies = refusing_cookie_jar()
        self._client = client
        self._retry = retry or DOWNLOAD_RETRY

    async def fetch(
        self,
        link: TikTokLink,
        want: Want,
        size_limit: int | None,
        temp_dir: Path,
        progress: Progress | None = None,
    ) -> Download:
        """Read the post page and download the media it points to into `temp_dir`."""
        session = _Session(httpx.URL("https://www.tiktok.com/"), SessionCookies())
        post_id = link.post_id if link.kind is LinkKind.POST and link.post_id else None
        if post_id is None:
            post_id = await self._resolve(link.url, session)
        item = check_page(await self._read_page(post_id, session))
        meter = Meter(progress)
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
        sources = video_sources(item, size_limit)
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
        """Nothing to release: the HTTP client is shared and closed by its owner."""

    async def read_page(self, post_id: str) -> PostPage:
        """GET a post page in a session of its own and parse it (for metadata without media)."""
        return await self._read_page(
            post_id, _Session(httpx.URL("https://www.tiktok.com/"), SessionCookies())
        )

    async def _read_page(self, post_id: str, session: _Session) -> PostPage:
        """GET the post page (following allowed redirects, keeping cookies) and parse it."""
        url = httpx.URL(PAGE_URL.format(post_id=post_id))
        for _ in range(_MAX_HOPS):
            async with open_stream(
                self._client, partial(self._request, url, session), self._retry, upstream=NAME
            ) as response:
                session.cookies.collect(response, url)
                status = response.status_code
                if status in (301, 302, 303, 307, 308):
                    url = self._next_hop(url, response)
                    if url.path.rstrip("/") == "/login":
                        raise UpstreamRejected("TikTok wants a login to show this post", upstream=NAME)
                    continue
                if status == 404:
                    raise PostUnavailable(UnavailableReason.DELETED, "post page not found", upstream=NAME)
                if status != 200:
                    raise _http_error("post page", status)
                session.page_url = url
                body = await read_capped(response, _PAGE_CAP, upstream=NAME)
                return parse_post_page(body.decode("utf-8", "replace"), post_id)
        raise UpstreamError("too many redirects from the post page", upstream=NAME)

    async def _resolve(self, start: str, session: _Session) -> str:
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
                self._client, partial(self._request, url, session), self._retry, upstream=NAME
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

    def _request(self, url: httpx.URL, session: _Session, *, referer: bool = False) -> httpx.Request:
        headers: dict[str, str] = {}
        cookie = session.cookies.header_for(url)
        if cookie:
            headers["Cookie"] = cookie
        if referer:
            headers["Referer"] = str(session.page_url)
            headers["Accept"] = "*/*"
        return self._client.build_request("GET", url, headers=headers)

    async def _audio(
        self, url: str, item: WebItem, session: _Session, temp_dir: Path, limit: int | None, meter: Meter
    ) -> MediaFile:
        duration = item.post.music.duration if item.post.music else None
        return await self._file(
            [Source(url, "music")], session, temp_dir / "90-sound", limit, meter, FileRole.AUDIO, duration
        )

    async def _file(
        self,
        sources: Sequence[Source],
        session: _Session,
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
                size, mime, path = await self._download(source.url, session, stem, limit, meter, early, post)
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
        session: _Session,
        stem: Path,
        limit: int | None,
        meter: Meter,
        early: tuple[int, int, float] | None = None,
        post: Post | None = None,
    ) -> tuple[int, str, Path]:
        """GET one media URL with the session's cookies and Referer, spooling it next to `stem`."""
        if not is_allowed_url(start):
            raise UnsafeRedirect("a media URL outside TikTok", location=start, upstream=NAME)
        url = httpx.URL(start)
        for _ in range(_MAX_HOPS):
            async with open_stream(
                self._client,
                partial(self._request, url, session, referer=True),
                self._retry,
                upstream=NAME,
            ) as response:
                session.cookies.collect(response, url)
                status = response.status_code
                if status in (301, 302, 303, 307, 308):
                    url = self._next_hop(url, response)
                    continue
                if status not in (200, 206):
                    raise _http_error(f"media {url.host}", status)
                length = _int(response.headers.get("content-length"))
                if limit is not None and length is not None and length > limit:
                    raise TooLarge(size=length, limit=limit)
                mime = _mime(response, url)
                path = stem.with_suffix(extension_for(mime, ".bin"))
                meter.expect(length)
                with Spool(path, limit, meter) as spool, body_errors(NAME):
                    if early is not None and post is not None and length is not None and length > 0:
                        # Size, pixels and seconds known before the bytes: the upload may start now.
                        spool.offer(StreamInfo(length, mime, *early), post)
                    async for chunk in response.aiter_raw():
                        spool.write(chunk)
                    if length is not None and spool.size != length:
                        raise TruncatedStream(f"media ended at {spool.size} of {length} bytes", upstream=NAME)
                return spool.size, mime, path
        raise UpstreamError("too many redirects for a media URL", upstream=NAME)


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
    return UpstreamError(f"{what} answered HTTP {status}", upstream=NAME, status=status)
