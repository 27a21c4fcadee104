"""The yt-dlp backend: yt-dlp's TikTok extractor reads the post page, our own code downloads the media.

Why: yt-dlp ships TikTok fixes every few weeks; an operator takes them with `pip install -U yt-dlp`, no
release of ours needed. Only the extractor is borrowed (`allowed_extractors`, run in a worker thread). Every
request it makes goes through `BridgeRH`, a yt-dlp RequestHandler that sends it on the bot's own TikTok HTTP
client — so UPSTREAM_ROUTES, the TikTok allow-list (checked on every hop) and whatever transport, CA file or
proxies that client was built with apply to the extractor too. The media is then fetched by our streaming code
with the format's headers and the extractor's cookies, through the allow-list, the size limit and the spool.

yt-dlp gives a photo post's sound only: for a video the backend says so and the chain falls through.
"""

from __future__ import annotations

import asyncio
import io
import re
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from email.message import Message
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from services.download.models import (
    Download,
    FileRole,
    MediaFile,
    MediaKind,
    Progress,
    Quality,
    Want,
    extension_for,
)
from services.download.sessions import SessionPool
from services.download.spool import Meter, Spool
from services.download.streams import DOWNLOAD_RETRY, body_errors, open_stream
from services.download.web import STATUS_REASONS
from services.errors import (
    PostUnavailable,
    ServiceError,
    TooLarge,
    TruncatedStream,
    UnavailableReason,
    UnsafeRedirect,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
)
from services.health import Verdict, judge
from services.http import is_allowed_url
from services.links import LinkKind, TikTokLink, canonical_post_url
from services.metadata.models import Post
from services.retry import RetryPolicy

NAME = "ytdlp"
EXTRACTORS = ["TikTok"]  # yt-dlp's TikTokIE only: no generic extractor ever runs on a URL we were given
_PAGE_CAP = 8 * 1024 * 1024
_MAX_HOPS = 5
_REDIRECTS = (301, 302, 303, 307, 308)


class AmbiguousStatus(UpstreamError):
    """A page yt-dlp cannot judge: status 10204 (it says IP block; TikTok also uses it for deleted posts) or
    no item at all (deleted, or an empty shell); the next backend reads the page's statusMsg and decides."""

    neutral = True  # maybe only a deleted post: the breaker ignores it


class PhotoPostSoundOnly(UpstreamError):
    """yt-dlp reads a photo post as its sound only; the next backend serves the photos."""

    code = "unsupported_photo"
    neutral = True  # a limit of the extractor, not a fault of the upstream: the breaker ignores it


def yt_dlp_available() -> bool:
    """Whether the optional yt-dlp package is installed (`tiktok-bot[ytdlp]`)."""
    try:
        import yt_dlp  # noqa: F401
    except ImportError:
        return False
    return True


class _Refused(Exception):
    """A request the bridge will not send (a host off the allow-list)."""


def _bridge_class() -> Callable[..., Any]:
    """yt-dlp's RequestHandler subclass, built on first use so importing this module needs no yt-dlp."""
    from yt_dlp.networking import Response
    from yt_dlp.networking.common import RequestHandler
    from yt_dlp.networking.exceptions import HTTPError, TransportError

    class BridgeRH(RequestHandler):  # type: ignore[misc]
        """Sends yt-dlp's requests on the bot's own async HTTP client, from the extractor's worker thread."""

        RH_KEY = "TikTokBotBridge"
        RH_NAME = "tiktok-bot"
        _SUPPORTED_URL_SCHEMES = ("http", "https")
        _SUPPORTED_PROXY_SCHEMES = None  # proxies belong to the client underneath, not to yt-dlp
        _SUPPORTED_FEATURES = None

        def __init__(
            self,
            *,
            client: httpx.AsyncClient,
            loop: asyncio.AbstractEventLoop,
            refused: list[str],
            **kwargs: Any,
        ) -> None:
            super().__init__(**kwargs)
            self._client = client
            self._loop = loop
            self._refused = refused

        def _check_extensions(self, extensions: dict[str, Any]) -> None:
            super()._check_extensions(extensions)
            for name in ("cookiejar", "timeout", "legacy_ssl", "keep_header_casing", "impersonate"):
                extensions.pop(name, None)

        def _send(self, request: Any) -> Any:
            jar = self._get_cookiejar(request)
            headers = dict(self._get_headers(request))
            timeout = self._calculate_timeout(request)
            method, url, data = request.method, request.url, request.data
            for _ in range(_MAX_HOPS):
                if not is_allowed_url(url):
                    self._refused.append(url)
                    raise TransportError(msg=f"refused: {url} is not a TikTok URL")
                cookie = jar.get_cookie_header(url)
                sent = {k: v for k, v in headers.items() if k.lower() != "cookie"}
                if cookie:
                    sent["Cookie"] = cookie
                future = asyncio.run_coroutine_threadsafe(self._fetch(method, url, sent, data), self._loop)
                try:
                    status, reply_headers, body = future.result(timeout + 5)
                except Exception as exc:
                    future.cancel()
                    raise TransportError(cause=exc) from exc
                jar.extract_cookies(_CookieResponse(reply_headers), urllib.request.Request(url))  # noqa: S310 (no I/O)
                location = next((v for k, v in reply_headers if k.lower() == "location"), None)
                if status in _REDIRECTS and location:
                    url = str(httpx.URL(url).join(location))
                    if status in (301, 302, 303):
                        method, data = "GET", None
                    continue
                response = Response(io.BytesIO(body), url, _Headers(reply_headers), status)
                if not 200 <= status < 300:
                    raise HTTPError(response)
                return response
            raise TransportError(msg="too many redirects")

        async def _fetch(
            self, method: str, url: str, headers: dict[str, str], data: bytes | None
        ) -> tuple[int, list[tuple[str, str]], bytes]:
            request = self._client.build_request(method, url, headers=headers, content=data)
            response = await self._client.send(request, stream=True)
            try:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > _PAGE_CAP:
                        raise ValueError(f"over {_PAGE_CAP} bytes where a page was expected")
                return response.status_code, list(response.headers.multi_items()), bytes(body)
            finally:
                await response.aclose()

    return BridgeRH


class _Headers(dict[str, str]):
    """A header mapping that keeps repeated headers (Set-Cookie) as yt-dlp's Response adds them one by one."""

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        super().__init__()
        self._pairs = list(pairs)

    def items(self) -> Any:
        return iter(self._pairs)


class _CookieResponse:
    """What `http.cookiejar` reads Set-Cookie from."""

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self._message = Message()
        for name, value in pairs:
            self._message[name] = value

    def info(self) -> Message:
        return self._message


_STATUS = re.compile(r"status ?code:? ?(\d+)", re.IGNORECASE)


def error_for(message: str) -> ServiceError:
    """Our error for a yt-dlp extraction failure (its message is all it gives)."""
    code = _STATUS.search(message)
    if code and int(code.group(1)) in STATUS_REASONS:
        reason = STATUS_REASONS[int(code.group(1))]
        return PostUnavailable(reason, f"post unavailable: {reason.value} (yt-dlp: {message})", upstream=NAME)
    lowered = message.lower()
    if "ip address is blocked" in lowered:
        return AmbiguousStatus(f"yt-dlp: {message} (status 10204: blocked or deleted)", upstream=NAME)
    if code and int(code.group(1)) == 0:
        # No item and no error code: deleted (the page's statusMsg says so, which yt-dlp does not read) or an
        # empty shell after a challenge; the web backend reads the page and tells them apart.
        return AmbiguousStatus(f"yt-dlp: {message} (no item: deleted, or an empty page)", upstream=NAME)
    if "not be comfortable for some audiences" in lowered:
        return PostUnavailable(UnavailableReason.AGE, "post is age-restricted (login needed)", upstream=NAME)
    if "permission to view this post" in lowered or "private" in lowered:
        return PostUnavailable(
            UnavailableReason.PRIVATE, f"post unavailable: private ({message})", upstream=NAME
        )
    if "http error 404" in lowered:
        return PostUnavailable(UnavailableReason.DELETED, "post page not found", upstream=NAME)
    if "http error 403" in lowered or "requiring login" in lowered:
        return UpstreamRejected(f"yt-dlp was refused: {message}", upstream=NAME, status=403)
    if "timed out" in lowered or "first-byte" in lowered:
        return UpstreamTimeout(f"yt-dlp: {message}", upstream=NAME)
    return UpstreamError(f"yt-dlp could not read the post: {message}", upstream=NAME)


def _extract(
    url: str, client: httpx.AsyncClient, loop: asyncio.AbstractEventLoop, refused: list[str], timeout: float
) -> tuple[dict[str, Any], Any]:
    """Run yt-dlp's TikTok extractor on `url` (in a worker thread); the info dict and the cookie jar."""
    from yt_dlp import YoutubeDL
    from yt_dlp.utils import DownloadError

    params = {
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "skip_download": True,
        "allowed_extractors": EXTRACTORS,
        "socket_timeout": timeout,
        "cachedir": False,
        "noplaylist": True,
        "logger": _QuietLogger(),
    }
    with YoutubeDL(params) as ydl:
        bridge = partial(_bridge_class(), client=client, loop=loop, refused=refused)
        # Only our handler: yt-dlp's own (urllib, requests, curl_cffi) would reach hosts by themselves.
        ydl.__dict__["_request_director"] = ydl.build_request_director([bridge])
        try:
            info = ydl.extract_info(url, download=False, process=True)
        except DownloadError as exc:
            raise error_for(str(exc.msg or exc).removeprefix("ERROR: ")) from None
        if not isinstance(info, Mapping):
            raise UpstreamError("yt-dlp returned nothing for the post", upstream=NAME)
        return dict(info), ydl.cookiejar


class _QuietLogger:
    """yt-dlp's messages go nowhere; failures come back as exceptions."""

    def debug(self, msg: str) -> None:
        """Drop."""

    def info(self, msg: str) -> None:
        """Drop."""

    def warning(self, msg: str) -> None:
        """Drop."""

    def error(self, msg: str) -> None:
        """Drop."""


def _codec_rank(fmt: Mapping[str, Any]) -> int:
    vcodec = str(fmt.get("vcodec") or "").lower()
    if "bytevc2" in vcodec:
        return -1  # no player outside the app decodes it
    if "h264" in vcodec or "avc" in vcodec:
        return 2
    return 1


def video_formats(
    formats: Sequence[Mapping[str, Any]], size_limit: int | None, quality: Quality = Quality.COMPATIBLE
) -> list[Mapping[str, Any]]:
    """Formats with video and sound, over the limit left out: `compatible` puts H.264 first, then resolution
    and bitrate; `best` puts resolution first (H.265 allowed; bytevc2 never)."""
    usable = [
        f
        for f in formats
        if f.get("url")
        and f.get("vcodec") != "none"
        and f.get("acodec") != "none"
        and _codec_rank(f) >= 0
        and (size_limit is None or not f.get("filesize") or int(f["filesize"]) <= size_limit)
    ]

    def key(f: Mapping[str, Any]) -> tuple[int, int, float, float]:
        area = (f.get("width") or 0) * (f.get("height") or 0)
        rest = (float(f.get("tbr") or 0), float(f.get("preference") or 0))
        if quality is Quality.BEST:
            return (area, _codec_rank(f), *rest)
        return (_codec_rank(f), area, *rest)

    return sorted(usable, key=key, reverse=True)


def audio_formats(formats: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Sound-only formats."""
    return [f for f in formats if f.get("url") and f.get("vcodec") == "none" and f.get("acodec") != "none"]


def _post(info: Mapping[str, Any], link: TikTokLink) -> Post:
    post_id = str(info.get("id") or link.post_id or "")
    author = info.get("uploader") or info.get("channel") or link.username
    return Post(
        id=post_id,
        url=canonical_post_url(post_id, author if isinstance(author, str) else None),
        author=author if isinstance(author, str) else None,
        author_name=info.get("creator") if isinstance(info.get("creator"), str) else None,
        description=str(info.get("description") or info.get("title") or ""),
        duration=float(info["duration"]) if isinstance(info.get("duration"), int | float) else None,
        width=info.get("width") if isinstance(info.get("width"), int) else None,
        height=info.get("height") if isinstance(info.get("height"), int) else None,
    )


class YtDlpBackend:
    """Downloads with yt-dlp's TikTok extractor for the page and our streaming code for the media."""

    name = NAME

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        retry: RetryPolicy | None = None,
        timeout: float = 20.0,
        sessions: SessionPool | None = None,
    ) -> None:
        self._client = client
        self._sessions = sessions  # with DOWNLOAD__PROXIES: each fetch goes out on one session's egress
        self._retry = retry or DOWNLOAD_RETRY
        self._timeout = timeout
        self.refused: list[str] = []  # URLs the extractor asked for that the allow-list refused

    async def fetch(
        self,
        link: TikTokLink,
        want: Want,
        size_limit: int | None,
        temp_dir: Path,
        progress: Progress | None = None,
        quality: Quality = Quality.COMPATIBLE,
    ) -> Download:
        """Extract the post's formats with yt-dlp, then stream the chosen one into `temp_dir`."""
        if link.kind is not LinkKind.POST or not link.post_id:
            raise UpstreamError(
                "the ytdlp backend takes post links (short links are resolved first)", upstream=NAME
            )
        if self._sessions is None:
            return await self._fetch(self._client, link, want, size_limit, temp_dir, progress, quality)
        session = self._sessions.acquire()
        ok = False
        try:
            download = await self._fetch(session.client, link, want, size_limit, temp_dir, progress, quality)
            ok = True
            return download
        except ServiceError as exc:
            ok = judge(exc) is Verdict.OK  # a private post is no fault of the session's egress
            raise
        finally:
            self._sessions.release(session, ok=ok)

    async def _fetch(
        self,
        client: httpx.AsyncClient,
        link: TikTokLink,
        want: Want,
        size_limit: int | None,
        temp_dir: Path,
        progress: Progress | None,
        quality: Quality,
    ) -> Download:
        assert link.post_id is not None
        url = canonical_post_url(link.post_id, link.username)
        loop = asyncio.get_running_loop()
        info, jar = await asyncio.to_thread(_extract, url, client, loop, self.refused, self._timeout)
        formats: list[Mapping[str, Any]] = [f for f in info.get("formats") or () if isinstance(f, Mapping)]
        post = _post(info, link)
        meter = Meter(progress)
        if want is Want.AUDIO:
            sound = audio_formats(formats)
            if not sound:
                raise UpstreamError("yt-dlp found no sound for the post", upstream=NAME)
            file = await self._first(
                client, sound, jar, temp_dir / "90-sound", size_limit, meter, FileRole.AUDIO
            )
            return Download(MediaKind.AUDIO, (file,), post)
        videos = video_formats(formats, size_limit, quality)
        if not videos:
            if formats and not any(f.get("vcodec") != "none" for f in formats):
                raise PhotoPostSoundOnly(
                    "yt-dlp gives only the sound of a photo post; the next backend serves the photos",
                    upstream=NAME,
                )
            raise UpstreamError("yt-dlp found no playable video format", upstream=NAME)
        video = await self._first(
            client, videos, jar, temp_dir / "01-video", size_limit, meter, FileRole.VIDEO
        )
        files = [video]
        if want is Want.ORIGINAL and (sound := audio_formats(formats)):
            files.append(
                await self._first(
                    client, sound, jar, temp_dir / "90-sound", size_limit, meter, FileRole.AUDIO
                )
            )
        return Download(MediaKind.VIDEO, tuple(files), post)

    async def aclose(self) -> None:
        """Nothing to release: the HTTP client is shared and closed by its owner."""

    async def _first(
        self,
        client: httpx.AsyncClient,
        formats: Sequence[Mapping[str, Any]],
        jar: Any,
        stem: Path,
        limit: int | None,
        meter: Meter,
        role: FileRole,
    ) -> MediaFile:
        """Download the first format that works; TooLarge or UnsafeRedirect win over other failures."""
        errors: list[ServiceError] = []
        for fmt in formats:
            try:
                size, mime, path = await self._download(client, fmt, jar, stem, limit, meter)
            except (UpstreamError, TooLarge, UnsafeRedirect) as exc:
                errors.append(exc)
                continue
            duration = fmt.get("duration")
            return MediaFile(
                path,
                mime,
                size,
                role,
                fmt.get("width") if role is FileRole.VIDEO else None,
                fmt.get("height") if role is FileRole.VIDEO else None,
                float(duration) if isinstance(duration, int | float) else None,
            )
        too_large = [e for e in errors if isinstance(e, TooLarge)]
        unsafe = [e for e in errors if isinstance(e, UnsafeRedirect)]
        raise too_large[0] if too_large else unsafe[0] if unsafe else errors[-1]

    async def _download(
        self,
        client: httpx.AsyncClient,
        fmt: Mapping[str, Any],
        jar: Any,
        stem: Path,
        limit: int | None,
        meter: Meter,
    ) -> tuple[int, str, Path]:
        """GET one format's URL with its headers and the extractor's cookies, spooling it next to `stem`."""
        url = httpx.URL(str(fmt["url"]))
        headers = {str(k): str(v) for k, v in (fmt.get("http_headers") or {}).items()}
        for _ in range(_MAX_HOPS):
            if not is_allowed_url(url):
                raise UnsafeRedirect("a media URL outside TikTok", location=str(url), upstream=NAME)
            cookie = jar.get_cookie_header(str(url))
            sent = {**headers, **({"Cookie": cookie} if cookie else {})}
            async with open_stream(
                client,
                partial(client.build_request, "GET", url, headers=sent),
                self._retry,
                upstream=NAME,
            ) as response:
                status = response.status_code
                if status in _REDIRECTS and response.headers.get("location"):
                    url = url.join(response.headers["location"])
                    continue
                if status not in (200, 206):
                    if status == 403 or (400 <= status < 500 and status != 429):
                        raise UpstreamRejected(
                            f"media {url.host} answered HTTP {status}", upstream=NAME, status=status
                        )
                    raise UpstreamError(
                        f"media {url.host} answered HTTP {status}", upstream=NAME, status=status
                    )
                declared = response.headers.get("content-length")
                length = int(declared) if declared and declared.isdigit() else None
                if limit is not None and length is not None and length > limit:
                    raise TooLarge(size=length, limit=limit)
                mime = _mime(response, fmt)
                path = stem.with_suffix(extension_for(mime, ".bin"))
                meter.expect(length)
                with Spool(path, limit, meter) as spool, body_errors(NAME):
                    async for chunk in response.aiter_raw():
                        spool.write(chunk)
                if length is not None and spool.size != length:
                    path.unlink(missing_ok=True)
                    raise TruncatedStream(f"media ended at {spool.size} of {length} bytes", upstream=NAME)
                return spool.size, mime, path
        raise UpstreamError("too many redirects for a media URL", upstream=NAME)


def _mime(response: httpx.Response, fmt: Mapping[str, Any]) -> str:
    declared = str(response.headers.get("content-type", "")).split(";")[0].strip().lower()
    if declared.startswith(("video/", "audio/", "image/")):
        return declared
    ext = str(fmt.get("ext") or "")
    return {"mp4": "video/mp4", "mp3": "audio/mpeg", "m4a": "audio/mp4"}.get(ext, declared or "video/mp4")
