"""The TTSave backend: `POST {base}/download` answers a multipart stream of the post's files.

We always ask for `ORIGINAL`: `VIDEO_ONLY` renders a slideshow as a video, and the bot sends slideshows as
albums. Parts the caller does not want are read past without being written.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from services.download.growing import StreamInfo, wants_streams
from services.download.models import (
    Download,
    FileRole,
    MediaFile,
    MediaKind,
    Progress,
    Quality,
    Want,
    mime_for,
    role_for,
)
from services.download.multipart import MultipartError, MultipartParser, PartData, PartEnd, PartStart
from services.download.probe import probe_leading
from services.download.spool import Meter, Spool, safe_name
from services.download.streams import DOWNLOAD_RETRY, body_errors, open_stream, read_capped
from services.errors import ServiceError, UpstreamError, UpstreamRejected
from services.links import TikTokLink, canonical_post_url
from services.metadata.models import Post
from services.retry import RetryPolicy

NAME = "ttsave"
ORIGINAL = "ORIGINAL"
VIDEO_ONLY = "VIDEO_ONLY"
_ERROR_BODY_CAP = 64 * 1024
_NO_FILES = "No files available for download"


@dataclass(frozen=True, slots=True)
class TTSaveMeta:
    """The decoded `Content-Meta` header."""

    title: str | None = None
    desc: str | None = None


def meta_from_header(value: str | None) -> TTSaveMeta | None:
    """Decode `Content-Meta` (base64 JSON, maybe quoted); None when absent or undecodable."""
    if not value:
        return None
    text = value.strip().strip('"').strip("'").strip()
    if not text:
        return None
    padded = text + "=" * (-len(text) % 4)
    data: Any = None
    for altchars in (None, b"-_"):  # the standard alphabet, then the URL-safe one
        try:
            data = json.loads(base64.b64decode(padded, altchars=altchars, validate=True).decode("utf-8"))
            break
        except (binascii.Error, ValueError, UnicodeDecodeError):
            continue
    if not isinstance(data, Mapping):
        return None
    title, desc = data.get("title"), data.get("desc")
    return TTSaveMeta(
        title=title if isinstance(title, str) and title else None,
        desc=desc if isinstance(desc, str) and desc else None,
    )


def error_for(status: int, body: bytes) -> ServiceError:
    """The ServiceError for a documented (or undocumented) TTSave error answer."""
    detail: Any = None
    message: Any = None
    try:
        data: Any = json.loads(body.decode("utf-8"))
        if isinstance(data, Mapping):
            detail, message = data.get("detail"), data.get("message")
    except (ValueError, UnicodeDecodeError):
        pass
    if isinstance(detail, list):  # a validation error lists the offending fields
        fields = [".".join(str(p) for p in d.get("loc", ())) for d in detail if isinstance(d, Mapping)]
        text = f"request rejected: {message or 'validation error'} ({', '.join(fields) or 'unknown field'})"
    else:
        text = str(detail or message or body[:200].decode("utf-8", "replace") or f"HTTP {status}")
    if status == 400 and detail == _NO_FILES:
        # TTSave could not fetch the post; the next backend may, and it can tell private from deleted.
        return UpstreamError(f"ttsave: {_NO_FILES.lower()}", upstream=NAME, status=status)
    if 400 <= status < 500 and status != 429:
        return UpstreamRejected(f"ttsave rejected the request: {text}", upstream=NAME, status=status)
    return UpstreamError(f"ttsave failed (HTTP {status}): {text}", upstream=NAME, status=status)


@dataclass(slots=True)
class _Part:
    role: FileRole
    mime: str
    spool: Spool
    # The first bytes of a video that may go out while it downloads, kept until its leading moov is read.
    prefix: bytearray | None = None
    expected: int | None = None  # the part's own Content-Length, when TTSave sends one


class _Parts:
    """Spools the parts a want needs, one at a time, from parser events."""

    def __init__(
        self, temp_dir: Path, want: Want, size_limit: int | None, meter: Meter, post: Post | None = None
    ) -> None:
        self._dir = temp_dir
        self._want = want
        self._limit = size_limit
        self._meter = meter
        self.post = post
        self._videos = 0
        self._current: _Part | None = None
        self.done: list[_Part] = []
        self._index = 0

    def handle(self, event: PartStart | PartData | PartEnd) -> None:
        """Act on one parser event."""
        if isinstance(event, PartData):
            if self._current is not None:
                self._current.spool.write(event.data)
                if self._current.prefix is not None:
                    self._probe(self._current, event.data)
        elif isinstance(event, PartStart):
            self._start(event)
        elif self._current is not None:
            self._current.spool.finish()
            self.done.append(self._current)
            self._current = None

    def _start(self, part: PartStart) -> None:
        self._index += 1
        mime = part.content_type or (mime_for(part.filename) if part.filename else None) or ""
        role = role_for(mime)
        if role is None or (self._want is Want.AUDIO and role is not FileRole.AUDIO):
            return  # read past it
        name = f"{self._index:02d}-{safe_name(part.filename or '', role.value)}"
        length = part.header("content-length")
        expected = int(length) if length and length.isdigit() else None
        self._current = _Part(
            role, mime, Spool(self._dir / name, self._limit, self._meter, expected=expected)
        )
        if role is FileRole.VIDEO:
            self._videos += 1
            # Only the first video of a lone-video request can go out while it downloads.
            if self._videos == 1 and self._want is Want.VIDEO and wants_streams():
                self._current.prefix = bytearray()
                self._current.expected = expected

    def _probe(self, part: _Part, data: bytes) -> None:
        """Offer the video as a growing file once its leading moov gave pixels and seconds (the size only when
        the part said its length)."""
        assert part.prefix is not None
        part.prefix += data
        info = probe_leading(part.prefix)
        if info is None:
            return
        part.prefix = None
        if info.width and info.height and info.duration:
            stream = StreamInfo(part.expected, part.mime, info.width, info.height, info.duration)
            part.spool.offer(stream, self.post)

    def abort(self) -> None:
        """Delete a part left half-written by a failure."""
        if self._current is not None:
            self._current.spool.abort()
            self._current = None


class TTSaveBackend:
    """Downloads through the TTSave multipart API."""

    name = NAME

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        *,
        retry: RetryPolicy | None = None,
        max_parts: int = 64,
    ) -> None:
        self._client = client
        self._base = base_url.rstrip("/")
        self._retry = retry or DOWNLOAD_RETRY
        self._max_parts = max_parts

    async def ping(self) -> bool:
        """Whether TTSave answers its health check with `pong`."""
        try:
            response = await self._client.post(f"{self._base}/ping")
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and response.text.strip().strip('"') == "pong"

    async def probe(self) -> bool:
        """The circuit breaker's health check: `/ping` (a backend without `probe` is probed by a request)."""
        return await self.ping()

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
        """Download the post's files through TTSave into `temp_dir` (always H.264: `quality` is moot)."""
        payload = {"url": link.url, "download_content_type": ORIGINAL}
        url = f"{self._base}/download"
        parts = _Parts(temp_dir, want, size_limit, Meter(progress))
        try:
            async with open_stream(
                self._client,
                lambda: self._client.build_request("POST", url, json=payload),
                self._retry,
                upstream=NAME,
            ) as response:
                if response.status_code != 200:
                    raise error_for(
                        response.status_code, await read_capped(response, _ERROR_BODY_CAP, upstream=NAME)
                    )
                parser = self._parser(response.headers.get("content-type", ""))
                meta = meta_from_header(response.headers.get("content-meta"))
                parts.post = _post(link, meta)
                with body_errors(NAME):
                    async for chunk in response.aiter_bytes():
                        for event in parser.feed(chunk):
                            parts.handle(event)
                        if parser.done:
                            break
                parser.close()
        except MultipartError as exc:
            exc.upstream = NAME
            raise
        finally:
            parts.abort()
        return _download(parts.done, want, _post(link, meta))

    def _parser(self, content_type: str) -> MultipartParser:
        try:
            return MultipartParser.from_content_type(content_type, max_parts=self._max_parts)
        except MultipartError:
            raise UpstreamError(
                f"ttsave answered {content_type or 'no content type'!r}, not a multipart stream",
                upstream=NAME,
            ) from None

    async def aclose(self) -> None:
        """Nothing to release: the HTTP client is shared and closed by its owner."""


def _post(link: TikTokLink, meta: TTSaveMeta | None) -> Post | None:
    """What TTSave tells about the post: only its caption (and the id we asked for)."""
    if meta is None or link.post_id is None:
        return None
    return Post(
        id=link.post_id,
        url=canonical_post_url(link.post_id, link.username),
        author=link.username,
        description=meta.desc or meta.title or "",
    )


def _download(parts: list[_Part], want: Want, post: Post | None) -> Download:
    """Choose the files a want gets from the parts received; delete the rest."""
    videos = [p for p in parts if p.role is FileRole.VIDEO]
    photos = [p for p in parts if p.role is FileRole.PHOTO]
    audio = [p for p in parts if p.role is FileRole.AUDIO]
    if want is Want.AUDIO:
        keep, kind = audio[:1], MediaKind.AUDIO
    elif videos:
        # A cover image next to a video is not a slideshow; the sound is a file of its own only when asked.
        keep, kind = videos[:1] + (audio[:1] if want is Want.ORIGINAL else []), MediaKind.VIDEO
    elif photos:
        keep, kind = photos + audio[:1], MediaKind.PHOTOS
    else:
        keep, kind = [], MediaKind.VIDEO
    kept = {id(p) for p in keep}
    for part in parts:
        if id(part) not in kept:
            part.spool.path.unlink(missing_ok=True)
    if not keep:
        wanted = "sound" if want is Want.AUDIO else "media"
        raise UpstreamError(f"ttsave sent no {wanted} parts", upstream=NAME)
    files = tuple(
        MediaFile(
            path=p.spool.path,
            mime=p.mime,
            size=p.spool.size,
            role=p.role,
            duration=post.duration if post is not None and p.role is FileRole.VIDEO else None,
        )
        for p in keep
    )
    return Download(kind=kind, files=files, post=post)
