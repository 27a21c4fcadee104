"""TTSave API v3 on loopback: `POST /api/v3/download` answers real multipart/x-mixed-replace streams.

As documented (../shared/reference/ttsave-api.md): a JSON body `{url, download_content_type}`; success is a
multipart stream with a quoted base64 `Content-Meta`; errors are the documented JSON bodies.
`POST /api/v3/ping` answers `pong`. The stream is written in odd-sized pieces, so delimiters land across
chunk boundaries as they do on a real network. Faults (`fault_next`): slow, truncated, reset, 500, error,
no_files, bad_meta, 429, lf, html.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from aiohttp import web

from sandbox.base import Emulator
from sandbox.blobs import Blob, Pace
from sandbox.catalogue import CATALOGUE, Catalogue, FixturePost, Status
from sandbox.faults import GONE, Target, gone, stall
from sandbox.tiktok import TikTokEmulator

CONTENT_TYPES = ("VIDEO_ONLY", "ORIGINAL")
BOUNDARY = "ttsave_boundary_7MA4YWxkTrZu0gW"


@dataclass(slots=True)
class Served:
    """One /download request that named a post."""

    post_id: str
    content_type: str
    status: int
    fault: str = ""
    finished: float = 0.0  # time.monotonic() when the last byte of the stream was handed to the socket


@dataclass(frozen=True, slots=True)
class _Part:
    blob: Blob
    mime: str
    filename: str


class TTSaveEmulator(Emulator):
    """The TTSave download API for the fixture catalogue."""

    name = "ttsave"
    FAULTS: ClassVar[Mapping[str, str]] = {
        "slow": "the answer starts after `delay` seconds (default 3)",
        "truncated": "the stream ends cleanly halfway through the first part, with no closing delimiter",
        "reset": "the connection drops halfway through the first part",
        "500": 'HTTP 500 {"detail": "Failed to save the file"}',
        "error": 'HTTP 500 {"message": "Internal Server Error", "detail": "Error: ..."}',
        "no_files": 'HTTP 400 {"detail": "No files available for download"}',
        "bad_meta": "Content-Meta is not base64 JSON",
        "429": "HTTP 429 with Retry-After: 0",
        "lf": "the multipart framing uses bare LF line ends",
        "html": "HTTP 200 with an HTML page instead of a multipart stream",
    }

    def __init__(self, catalogue: Catalogue | None = None, *, chunk_size: int = 16381) -> None:
        super().__init__()
        self.catalogue = catalogue or CATALOGUE
        self.chunk_size = chunk_size
        self.served: list[Served] = []
        # Seconds every /download waits before answering: a far-away upstream (benchmarks set it).
        self.media_latency = 0.0
        self.mibps: float | None = None  # the stream's pace (bench/relay.py --mibps); None: unpaced

    def downloads(self, post_id: str) -> int:
        """Successful /download answers (streams begun) for a post."""
        return sum(1 for s in self.served if s.post_id == post_id and s.status == 200)

    def env(self) -> dict[str, str]:
        """TTSAVE__URL for the bot."""
        return {"TTSAVE__URL": f"{self.base_url}/api/v3"}

    def routes(self, app: web.Application) -> None:
        """The API (the control endpoints come with the base class)."""
        app.router.add_post("/api/v3/download", self._download)
        app.router.add_post("/api/v3/ping", self._ping)

    async def _ping(self, request: web.Request) -> web.Response:
        return web.Response(text="pong")

    def parts_for(self, post: FixturePost, content_type: str) -> list[_Part]:
        """The files TTSave sends for a post and content type."""
        sound = _Part(Blob.of_file(post.music_file), "audio/mpeg", "audio.mp3")
        if post.is_photo:
            if content_type == "VIDEO_ONLY":  # collages arrive rendered as a video
                return [_Part(Blob.of_file("clip.mp4"), "video/mp4", "slideshow.mp4")]
            images = [
                _Part(Blob.of_file(name), "image/jpeg", f"image_{i}.jpg")
                for i, name in enumerate(post.images, 1)
            ]
            return [*images, sound]
        best = TikTokEmulator.best_rendition(post)
        if best is None:
            return []
        video = _Part(TikTokEmulator.rendition_blob(post, best), "video/mp4", "video.mp4")
        return [video, sound] if content_type == "ORIGINAL" else [video]

    async def _download(self, request: web.Request) -> web.StreamResponse:
        try:
            body: Any = await request.json()
        except ValueError:
            return _validation_error(["body"], "value is not a valid dict", "type_error.dict")
        if not isinstance(body, dict):
            return _validation_error(["body"], "value is not a valid dict", "type_error.dict")
        for name in ("url", "download_content_type"):
            if name not in body:
                return _validation_error(["body", name], "field required", "value_error.missing")
        url, content_type = body["url"], body["download_content_type"]
        if not isinstance(url, str) or not url.strip():
            return web.json_response({"detail": "URL is required"}, status=400)
        if content_type not in CONTENT_TYPES:
            return web.json_response({"detail": "Invalid content type"}, status=400)
        post = self._post_for(url)
        fault = self.faults.take(Target.of(request))
        mode = fault.kind if fault else ""
        served = Served(post.id if post else url, content_type, 0, mode)
        self.served.append(served)
        if self.media_latency:
            await asyncio.sleep(self.media_latency)
        if mode == "slow" and not await stall(
            request, fault.delay if fault and fault.delay is not None else 3.0
        ):
            served.status = GONE
            return gone()
        if mode == "html":
            served.status = 200
            return web.Response(
                text="<html><body>Service temporarily unavailable</body></html>", content_type="text/html"
            )
        failure = _FAILURES.get(mode)
        if failure is not None:
            served.status = failure[0]
            headers = {"Retry-After": "0"} if mode == "429" else None
            return web.json_response(failure[1], status=failure[0], headers=headers)
        parts = self.parts_for(post, content_type) if post is not None and post.status is Status.OK else []
        if not parts:
            served.status = 400
            return web.json_response({"detail": "No files available for download"}, status=400)
        assert post is not None
        served.status = 200
        meta = json.dumps({"title": f"TikTok by @{post.author}", "desc": post.description}).encode()
        meta_header = "%%% not base64 %%%" if mode == "bad_meta" else f'"{base64.b64encode(meta).decode()}"'
        response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}",
                "Content-Meta": meta_header,
            },
        )
        response.enable_chunked_encoding()
        newline = b"\n" if mode == "lf" else b"\r\n"
        cut = parts[0].blob.size // 2 if mode in ("truncated", "reset") else None
        try:
            await response.prepare(request)
            pace = Pace(self.mibps)
            for piece in _rechunk(_stream(parts, newline, cut), self.chunk_size):
                await response.write(piece)
                await pace.sent(len(piece))
            served.finished = time.monotonic()
            if mode == "reset":
                if request.transport is not None:
                    request.transport.close()
                return response
            await response.write_eof()
        except ConnectionError:
            pass  # the client stopped reading (a size limit, a timeout): nothing more to say
        return response

    def _post_for(self, url: str) -> FixturePost | None:
        """The catalogue post a TikTok URL (post or short link) names."""
        match = re.search(r"/(?:video|photo)/(\d+)|/v/(\d+)", url)
        if match is not None:
            return self.catalogue.posts.get(match.group(1) or match.group(2))
        short = re.search(r"(?:v[mt]\.tiktok\.com/|tiktok\.com/t/)(\w+)", url)
        if short is not None:
            post_id = self.catalogue.short_links.get(short.group(1))
            return self.catalogue.posts.get(post_id) if post_id else None
        return None


_FAILURES: Mapping[str, tuple[int, dict[str, Any]]] = {
    "500": (500, {"detail": "Failed to save the file"}),
    "error": (500, {"message": "Internal Server Error", "detail": "Error: simulated failure in the sandbox"}),
    "no_files": (400, {"detail": "No files available for download"}),
    "429": (429, {"detail": "Too Many Requests"}),
}


def _validation_error(loc: list[str], msg: str, kind: str) -> web.Response:
    return web.json_response(
        {"message": "Validation Error", "detail": [{"loc": loc, "msg": msg, "type": kind}]}, status=422
    )


def _stream(parts: list[_Part], newline: bytes, cut: int | None) -> Iterator[bytes]:
    """The multipart body, piece by piece; with `cut`, it stops that far into the first part's data."""
    delimiter = b"--" + BOUNDARY.encode()
    for index, part in enumerate(parts):
        yield (newline if index else b"") + delimiter + newline
        yield b"Content-Type: " + part.mime.encode() + newline
        yield (
            b'Content-Disposition: attachment; filename="' + part.filename.encode() + b'"' + newline + newline
        )
        yield from part.blob.chunks(0, cut)
        if cut is not None:
            return
    yield newline + delimiter + b"--" + newline


def _rechunk(pieces: Iterator[bytes], size: int) -> Iterator[bytes | memoryview]:
    """Regroup pieces into writes of exactly `size` bytes (the last may be shorter); copies only at joins."""
    buffer = bytearray()
    for piece in pieces:
        view = memoryview(piece)
        if buffer:
            take = size - len(buffer)
            buffer += view[:take]
            view = view[take:]
            if len(buffer) < size:
                continue
            yield bytes(buffer)
            buffer.clear()
        while len(view) >= size:
            yield view[:size]
            view = view[size:]
        buffer += view
    if buffer:
        yield bytes(buffer)
