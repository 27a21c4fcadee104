"""TikTok on loopback: post pages in the real page format, short links, and a CDN bound to the page's cookie.

One server answers every TikTok host; the `Host` header (kept by UPSTREAM_ROUTES routing) says which one:

- `www.tiktok.com`, `tiktok.com`, `m.tiktok.com`: `/@<user>/video|photo/<id>` post pages carrying
  `__UNIVERSAL_DATA_FOR_REHYDRATION__` and setting `tt_chain_token`; `/t/<code>` short links;
  `/v/<id>.html` and `/share/video/<id>` legacy forms; `/` the home page.
- `vm.tiktok.com`, `vt.tiktok.com`: `/<code>` short links (301 to the post page with share parameters; a dead
  code goes to `https://www.tiktok.com/?_r=1`).
- `v16-webapp-prime.tiktok.com` style hosts: video renditions, `playAddr` and `downloadAddr`. They answer 403
  without a `tt_chain_token` this emulator issued and a tiktok.com Referer, and honour Range.
- `*.tiktokcdn.com`: signed image variants (HEIC, WebP, JPEG), covers, and sounds; no cookie needed.

Tests count downloads with `downloads(post_id)` and read `media_log`; faults are queued with `fault_next`.

The front door, as real TikTok plays it in 2026 (`door`, or `POST /_control/door` with the same fields): a
proof-of-work challenge page (`cs`/`wci`/`rci`/`rs` elements, a random prefix and answer, verified here: a
wrong or replayed answer is challenged again) on the first visit of a session, on every Nth page, or always;
empty shells (a page without video detail); status 10204 for blocked client addresses (each sandbox proxy
connects from its own loopback address). H.265 renditions also list a `/media-video-hvc1/` URL that serves a
video-only copy, first, as the real pages do.

Every request's headers and client address are in `requests` (`Recorded.headers`, `.remote`): what the bot
looked like on the wire, and through which sandbox proxy (`sandbox.proxy`, one 127.0.0.x each) it came.
A returning visitor that sends back its `tt_chain_token` gets no new one. `serve_https(SandboxCA()...)` adds
an https listener with a certificate of its own (`sandbox.tls`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from aiohttp import web

from sandbox.base import Emulator
from sandbox.blobs import Blob, Pace
from sandbox.catalogue import CATALOGUE, Catalogue, FixturePost, FixtureUser, Rendition, Status, rounded
from sandbox.faults import GONE, Target, gone, stall

WEB_HOSTS = ("www.tiktok.com", "tiktok.com", "m.tiktok.com")
SHORT_HOSTS = ("vm.tiktok.com", "vt.tiktok.com")
VIDEO_HOSTS = ("v16-webapp-prime.tiktok.com", "v19-webapp-prime.tiktok.com")
IMAGE_HOSTS = ("p16-sign-va.tiktokcdn.com", "p19-sign-va.tiktokcdn.com")
MUSIC_HOST = "sf16-ies-music-va.tiktokcdn.com"
HOME = "https://www.tiktok.com/?_r=1"
EXPIRES = 1_900_000_000

STATUS_CODES: Mapping[Status, tuple[int, str]] = {
    Status.PRIVATE: (10216, ""),
    Status.PRIVATE_ACCOUNT: (10222, ""),
    Status.DELETED: (0, "item doesn't exist"),  # 10204 is an IP block (yt-dlp), not a deletion
    Status.REGION: (10231, ""),
}
_CODEC_TYPE = {"h264": "h264", "h265": "h265_hvc1", "bytevc2": "bytevc2"}
_URL_CODEC = {"h264": "h264", "h265": "bytevc1", "bytevc2": "bytevc2"}


@dataclass(slots=True)
class MediaHit:
    """One CDN request: what it asked for and how it was answered."""

    kind: str  # video, image, cover, music
    key: str  # the post id (music: the sound id)
    host: str
    path: str
    status: int
    cookie: bool
    referer: str
    range: str
    variant: str = ""  # gear, play, download; or the image extension
    token: str = ""  # the tt_chain_token sent
    challenge_cookie: bool = False  # whether a challenge answer cookie came along (it should not)
    finished: float = 0.0  # time.monotonic() when the last byte was handed to the socket (0: never)


@dataclass(slots=True)
class _Asset:
    blob: Blob
    mime: str
    needs_cookie: bool
    kind: str
    key: str
    variant: str = ""


@dataclass(slots=True)
class Door:
    """How the front door treats post-page visits."""

    challenge: str = "off"  # off | first (no session cookie yet) | every (every `every`th page) | always
    every: int = 5
    max_answer: int = 1_000_000  # the secret is random in 0..max_answer (the real range)
    rci: bool = True  # also ask for the waforiginalreid cookie (rci/rs elements)
    blocked: set[str] = field(default_factory=set)  # client addresses answered with status 10204
    empty_every: int = 0  # every Nth page served is an empty shell (0: never)

    CHALLENGE_MODES: ClassVar[tuple[str, ...]] = ("off", "first", "every", "always")


@dataclass(slots=True)
class _Pending:
    """A challenge handed out: its answer, the rs value it expects back, and whether it was used."""

    answer: int
    rs: str
    used: bool = False


@dataclass(slots=True)
class DoorLog:
    """What the door did, for tests and benchmarks."""

    challenged: int = 0
    passed: int = 0
    rejected: int = 0  # a wrong, replayed or unknown answer
    empty_shells: int = 0
    blocked: int = 0


class TikTokEmulator(Emulator):
    """TikTok web, short links and CDN for the fixture catalogue."""

    name = "tiktok"
    FAULTS: ClassVar[Mapping[str, str]] = {
        "slow": "the post page answers after `delay` seconds (default 3)",
        "challenge": "the post page is a proof-of-work challenge (solvable; verified on the next request)",
        "challenge_unsolvable": "the post page is a challenge whose answer lies outside 0..1,000,000",
        "empty_shell": "the post page carries rehydration data without the video detail",
        "ip_blocked": "the post page answers status 10204 (this address is blocked from the post)",
        "sigi": "the post page carries SIGI_STATE (the 2022-2023 format)",
        "next_data": "the post page carries __NEXT_DATA__ (the 2020-2021 format)",
        "page_403": "the post page answers 403",
        "page_500": "the post page answers 500",
        "login": "the post page redirects to /login",
        "no_cookie": "the post page sets no tt_chain_token",
        "foreign_media": "the post page points its media at https://evil.example (outside TikTok)",
        "cdn_403": "a video CDN request is refused even with the cookie",
        "cdn_500": "a video CDN request answers 500",
        "cdn_truncated": "a video CDN response breaks off halfway",
        "cdn_slow": "a video CDN response starts after `delay` seconds (default 3)",
        "cdn_redirect_evil": "a video CDN request redirects to https://evil.example",
    }
    PAGE_FAULTS = (
        "slow",
        "challenge",
        "challenge_unsolvable",
        "empty_shell",
        "ip_blocked",
        "sigi",
        "next_data",
        "page_403",
        "page_500",
        "login",
        "no_cookie",
        "foreign_media",
    )
    CDN_FAULTS = ("cdn_403", "cdn_500", "cdn_truncated", "cdn_slow", "cdn_redirect_evil")

    def __init__(self, catalogue: Catalogue | None = None) -> None:
        super().__init__()
        self.catalogue = catalogue or CATALOGUE
        self.issued_tokens: set[str] = set()
        self.media_log: list[MediaHit] = []
        # Seconds every CDN request waits before answering: a far-away CDN (benchmarks set it).
        self.media_latency = 0.0
        self.door = Door()
        self.door_log = DoorLog()
        self._pending: dict[str, _Pending] = {}
        self._page_count = 0
        self._served_pages = 0
        # Client addresses the video CDN refuses (403) whatever they send: a CDN edge that blocked an IP. With
        # sandbox proxies (one 127.0.0.x each) this blocks one proxy and not the others.
        self.cdn_refused: set[str] = set()
        self.cdn_mibps: float | None = None  # the CDN's pace (bench/relay.py --mibps); None: unpaced

    # --- what tests read ---

    def downloads(self, post_id: str, kind: str | None = None) -> int:
        """Answered CDN requests (200/206) for a post's video or images (or only `kind`)."""
        kinds = (kind,) if kind else ("video", "image")
        return sum(
            1 for h in self.media_log if h.key == post_id and h.kind in kinds and h.status in (200, 206)
        )

    def page_views(self, post_id: str) -> int:
        """Post page requests for a post id."""
        return sum(
            1 for r in self.requests if r.host in WEB_HOSTS and r.path.rstrip("/").endswith(f"/{post_id}")
        )

    def env(self) -> dict[str, str]:
        """Nothing of its own: the Sandbox routes TikTok's hosts here through UPSTREAM_ROUTES."""
        return {}

    def routed_hosts(self) -> list[str]:
        """Every TikTok host: web, short links and the CDNs."""
        return [
            *WEB_HOSTS,
            *SHORT_HOSTS,
            "*.tiktok.com",
            "*.tiktokv.com",
            "*.tiktokcdn.com",
            "*.tiktokcdn-us.com",
        ]

    # --- URLs the pages hand out ---

    def video_url(
        self, post: FixturePost, variant: str, host: str = VIDEO_HOSTS[0], *, hvc1: bool = False
    ) -> str:
        """A CDN URL for a rendition (by gear name), `play` or `download`; `hvc1`: the video-only copy."""
        hvc1_dir = "media-video-hvc1/" if hvc1 else ""
        return (
            f"https://{host}/video/tos/useast2a/tos-useast2a-ve-0068c001/{hvc1_dir}{post.id}/{variant}/"
            f"?a=1988&bti=ODszNWYuMDE6&ch=0&expire={EXPIRES}&mime_type=video_mp4&policy=2&tk=tt_chain_token"
        )

    @staticmethod
    def www_play_url(post: FixturePost, rendition: Rendition) -> str:
        """The `www.tiktok.com/aweme/v1/play/` URL real pages list last in every rendition's UrlList."""
        return (
            f"https://www.tiktok.com/aweme/v1/play/?faid=1988&file_id={rendition.gear}&is_play_url=1"
            f"&item_id={post.id}&line=0&ply_type=2&tk=tt_chain_token&video_id=v12044gd0000sandbox{post.id[-6:]}"
        )

    def image_url(self, post: FixturePost, index: int, ext: str, host: str = IMAGE_HOSTS[0]) -> str:
        """A signed URL for one variant of a photo post's image."""
        return (
            f"https://{host}/tos-maliva-i-photomode-us/{post.id}_{index}~tplv-photomode-image.{ext}"
            f"?x-expires={EXPIRES}&x-signature=sandbox%3D"
        )

    def cover_url(self, post: FixturePost) -> str:
        """The post's cover image."""
        return f"https://{IMAGE_HOSTS[0]}/obj/tos-maliva-p-0068/{post.id}~tplv-cover.jpeg?x-expires={EXPIRES}"

    def music_url(self, post: FixturePost) -> str:
        """The sound's playUrl."""
        return f"https://{MUSIC_HOST}/obj/ies-music-ttp-dup-us/{post.music_id}.mp3?mime_type=audio_mpeg"

    # --- media ---

    @staticmethod
    def rendition_blob(post: FixturePost, rendition: Rendition) -> Blob:
        """The bytes of one rendition (committed file, or synthesised to its size)."""
        if rendition.file:
            return Blob.of_file(rendition.file)
        return Blob.synthetic_mp4(
            f"{post.id}:{rendition.gear}:{rendition.codec}",
            rendition.size,
            rendition.width,
            rendition.height,
            post.duration,
        )

    @staticmethod
    def play_rendition(post: FixturePost) -> Rendition | None:
        """The rendition `playAddr` serves: the smallest H.264 one."""
        h264 = [r for r in post.renditions if r.codec == "h264"]
        return min(h264, key=lambda r: r.width * r.height) if h264 else None

    @staticmethod
    def best_rendition(post: FixturePost) -> Rendition | None:
        """The largest H.264 rendition (what TTSave serves)."""
        h264 = [r for r in post.renditions if r.codec == "h264"]
        return max(h264, key=lambda r: r.width * r.height) if h264 else None

    def _asset(self, host: str, path: str) -> _Asset | None:
        if host in VIDEO_HOSTS or host.endswith("-webapp-prime.tiktok.com"):
            match = re.fullmatch(r"/video/tos/[^/]+/[^/]+/(media-video-hvc1/)?(\d+)/([\w-]+)/?", path)
            post = self.catalogue.posts.get(match.group(2)) if match else None
            if match is None or post is None:
                return None
            variant = match.group(3)
            if match.group(1):  # the hvc1 copy: a video track alone, useless to a chat
                gear = next((r for r in post.renditions if r.gear == variant), None)
                if gear is None:
                    return None
                blob = Blob.synthetic(f"{post.id}:{variant}:hvc1-video-only", max(gear.size, 4096))
                return _Asset(blob, "video/mp4", True, "video", post.id, f"hvc1:{variant}")
            if variant == "play":
                rendition = self.play_rendition(post)
            elif variant == "download":
                rendition = self.play_rendition(post)
                if rendition is not None and not rendition.file:  # the watermarked copy differs
                    return _Asset(
                        Blob.synthetic(f"{post.id}:watermarked", rendition.size),
                        "video/mp4",
                        True,
                        "video",
                        post.id,
                        variant,
                    )
            else:
                rendition = next((r for r in post.renditions if r.gear == variant), None)
            if rendition is None:
                return None
            return _Asset(self.rendition_blob(post, rendition), "video/mp4", True, "video", post.id, variant)
        if host.endswith(".tiktokcdn.com") or host.endswith(".tiktokcdn-us.com"):
            image = re.fullmatch(r"/tos-maliva-i-photomode-us/(\d+)_(\d+)~tplv-photomode-image\.(\w+)", path)
            if image is not None:
                post = self.catalogue.posts.get(image.group(1))
                index, ext = int(image.group(2)), image.group(3)
                if post is None or not 1 <= index <= len(post.images):
                    return None
                if ext == "jpeg":
                    blob = Blob.of_file(post.images[index - 1])
                else:  # stand-ins: a client that picks these gets bytes no JPEG decoder accepts
                    blob = Blob.synthetic(f"{post.id}:{index}:{ext}", 4096)
                mime = {"jpeg": "image/jpeg", "heic": "image/heic", "webp": "image/webp"}.get(ext)
                return (
                    _Asset(blob, mime or "application/octet-stream", False, "image", post.id, ext)
                    if mime
                    else None
                )
            cover = re.fullmatch(r"/obj/tos-maliva-p-0068/(\d+)~tplv-cover\.jpeg", path)
            if cover is not None and cover.group(1) in self.catalogue.posts:
                return _Asset(Blob.of_file("photo1.jpg"), "image/jpeg", False, "cover", cover.group(1))
            music = re.fullmatch(r"/obj/ies-music-ttp-dup-us/(\d+)\.mp3", path)
            if music is not None:
                known = {p.music_id: p for p in self.catalogue.posts.values()}
                post = known.get(music.group(1))
                if post is not None:
                    return _Asset(Blob.of_file(post.music_file), "audio/mpeg", False, "music", music.group(1))
        return None

    # --- serving ---

    def routes(self, app: web.Application) -> None:
        """The door's control endpoints, then one catch-all dispatching on the Host header."""
        app.router.add_get("/_control/door", self._get_door)
        app.router.add_post("/_control/door", self._post_door)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)

    def set_door(
        self,
        *,
        challenge: str | None = None,
        every: int | None = None,
        max_answer: int | None = None,
        rci: bool | None = None,
        blocked: set[str] | None = None,
        empty_every: int | None = None,
    ) -> Door:
        """Change how the front door behaves (only the fields given)."""
        door = self.door
        if challenge is not None:
            if challenge not in Door.CHALLENGE_MODES:
                raise ValueError(f"challenge must be one of {', '.join(Door.CHALLENGE_MODES)}")
            door.challenge = challenge
        if every is not None:
            if every < 1:
                raise ValueError("every must be at least 1")
            door.every = every
        if max_answer is not None:
            if not 0 <= max_answer <= 1_000_000:
                raise ValueError("max_answer must be within 0..1000000")
            door.max_answer = max_answer
        if rci is not None:
            door.rci = rci
        if blocked is not None:
            door.blocked = set(blocked)
        if empty_every is not None:
            if empty_every < 0:
                raise ValueError("empty_every must be 0 or more")
            door.empty_every = empty_every
        return door

    def _door_json(self) -> dict[str, Any]:
        door = asdict(self.door)
        door["blocked"] = sorted(self.door.blocked)
        return {"door": door, "log": asdict(self.door_log)}

    async def _get_door(self, request: web.Request) -> web.Response:
        return web.json_response(self._door_json())

    async def _post_door(self, request: web.Request) -> web.Response:
        try:
            data: Any = await request.json()
            if not isinstance(data, dict):
                raise TypeError("body must be a JSON object")
            blocked = data.get("blocked")
            self.set_door(
                challenge=data.get("challenge"),
                every=None if data.get("every") is None else int(data["every"]),
                max_answer=None if data.get("max_answer") is None else int(data["max_answer"]),
                rci=None if data.get("rci") is None else bool(data["rci"]),
                blocked=None if blocked is None else {str(a) for a in blocked},
                empty_every=None if data.get("empty_every") is None else int(data["empty_every"]),
            )
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(self._door_json())

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        host = (request.headers.get("Host") or "").split(":")[0].lower()
        path = request.path
        if host in SHORT_HOSTS:
            return self._short_link(path.strip("/").split("/")[0], status=301)
        if host in WEB_HOSTS:
            return await self._web(request, host, path)
        asset = self._asset(host, path)
        if asset is not None:
            return await self._media(request, host, asset)
        raise web.HTTPNotFound(text="not found")

    async def _web(self, request: web.Request, host: str, path: str) -> web.StreamResponse:
        post_page = re.fullmatch(r"/@([\w.-]*)/(?:video|photo)/(\d+)/?", path)
        if post_page is not None:
            return await self._post_page(request, post_page.group(2))
        short = re.fullmatch(r"/t/(\w+)/?", path)
        if short is not None:
            return self._short_link(short.group(1), status=302)
        legacy = re.fullmatch(r"/v/(\d+)(?:\.html)?/?|/share/video/(\d+)/?", path)
        if legacy is not None:
            post_id = legacy.group(1) or legacy.group(2)
            post = self.catalogue.posts.get(post_id)
            author = post.author if post else "_"
            raise web.HTTPMovedPermanently(f"https://www.tiktok.com/@{author}/video/{post_id}")
        if path.rstrip("/") == "/aweme/v1/play":
            raise web.HTTPForbidden(text="")
        if path in ("", "/"):
            return web.Response(
                text="<html><head><title>TikTok - Make Your Day</title></head></html>",
                content_type="text/html",
            )
        if path.rstrip("/") == "/login":
            return web.Response(
                text="<html><head><title>Log in | TikTok</title></head></html>", content_type="text/html"
            )
        raise web.HTTPNotFound(text="page not found")

    def _short_link(self, code: str, *, status: int) -> web.StreamResponse:
        post_id = self.catalogue.short_links.get(code)
        post = self.catalogue.posts.get(post_id) if post_id else None
        if post is None:
            location = HOME
        else:
            kind = "photo" if post.is_photo else "video"
            location = (
                f"https://www.tiktok.com/@{post.author}/{kind}/{post.id}?_r=1&_t=ZM-8sandbox&is_from_webapp=1"
                f"&sender_device=pc&share_app_id=1233&share_item_id={post.id}&source=h5_m"
            )
        # The body is what cobalt reads; Location is what everyone else follows.
        return web.Response(
            status=status,
            headers={"Location": location},
            text=f'<a href="{location}">Moved Permanently</a>.',
            content_type="text/html",
        )

    async def _post_page(self, request: web.Request, post_id: str) -> web.StreamResponse:
        fault = self.faults.take(Target.of(request), self.PAGE_FAULTS)
        mode = fault.kind if fault else ""
        if mode == "slow" and not await stall(
            request, fault.delay if fault and fault.delay is not None else 3.0
        ):
            return gone()
        if mode == "page_403":
            raise web.HTTPForbidden(text="Access Denied")
        if mode == "page_500":
            raise web.HTTPInternalServerError(text="upstream connect error")
        if mode == "login":
            raise web.HTTPFound(f"https://www.tiktok.com/login?redirect_url=%2Fvideo%2F{post_id}")
        post = self.catalogue.posts.get(post_id)
        self._page_count += 1
        if mode in ("challenge", "challenge_unsolvable") or self._must_challenge(request):
            self.door_log.challenged += 1
            return web.Response(
                text=self.challenge_page(unsolvable=mode == "challenge_unsolvable"), content_type="text/html"
            )
        self._served_pages += 1
        address = request.remote or ""
        empty = mode == "empty_shell" or (
            self.door.empty_every > 0 and self._served_pages % self.door.empty_every == 0
        )
        if mode == "ip_blocked" or address in self.door.blocked:
            self.door_log.blocked += 1
            html = self.page_html(post_id, post, status=(10204, ""))
        elif empty:
            self.door_log.empty_shells += 1
            html = self.page_html(post_id, post, empty=True)
        else:
            # Real pages name the detail "webapp.reflow.video.detail" for mobile browsers.
            mobile = "Mobile" in request.headers.get("User-Agent", "")
            html = self.page_html(
                post_id,
                post,
                "sigi" if mode == "sigi" else "next" if mode == "next_data" else "reflow" if mobile else "",
            )
            if mode == "foreign_media":
                for media_host in (*VIDEO_HOSTS, *IMAGE_HOSTS, MUSIC_HOST):
                    html = html.replace(media_host, "evil.example")
        response = web.Response(text=html, content_type="text/html")
        # A returning visitor keeps its cookies: a new chain token goes only to a visitor without one.
        known = request.cookies.get("tt_chain_token", "") in self.issued_tokens
        if mode != "no_cookie" and not known:
            token = secrets.token_urlsafe(18)
            self.issued_tokens.add(token)
            response.set_cookie(
                "tt_chain_token",
                token,
                domain=".tiktok.com",
                path="/",
                max_age=15552000,
                secure=True,
                httponly=True,
            )
        if "ttwid" not in request.cookies:
            response.set_cookie(
                "ttwid",
                "1%7Csandbox%7C" + secrets.token_hex(8),
                domain=".tiktok.com",
                path="/",
                max_age=31536000,
                secure=True,
                httponly=True,
            )
        if "tt_csrf_token" not in request.cookies:
            response.set_cookie(
                "tt_csrf_token",
                secrets.token_urlsafe(12),
                path="/",
                secure=True,
                httponly=True,
                samesite="Lax",
            )
        return response

    # --- the door ---

    def challenge_page(self, *, unsolvable: bool = False) -> str:
        """A fresh challenge page (SlardarWAF style), its answer remembered for verification."""
        prefix = secrets.token_bytes(16)
        answer = secrets.randbelow(self.door.max_answer + 1)
        if unsolvable:
            answer = 1_000_001 + secrets.randbelow(1000)
        target = hashlib.sha256(prefix + str(answer).encode("ascii")).digest()
        challenge_id = secrets.token_hex(8)
        rs = secrets.token_urlsafe(12)
        self._pending[challenge_id] = _Pending(answer, rs if self.door.rci else "")
        data = {
            "v": {"a": _b64(prefix), "b": "sha256", "c": _b64(target)},
            "s": challenge_id,
            "e": EXPIRES,
            "d": "",
        }
        elements = f'<div id="cs" class="{_b64(json.dumps(data, separators=(",", ":")).encode())}"></div>'
        elements += '<div id="wci" class="_wafchallengeid"></div>'
        if self.door.rci:
            elements += f'<div id="rci" class="waforiginalreid"></div><div id="rs" class="{rs}"></div>'
        return (
            '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Please wait...</title></head><body>'
            f"{elements}<script>/* SlardarWAF: find d, set the cookies (Max-Age=1), reload */</script>"
            "</body></html>"
        )

    def _must_challenge(self, request: web.Request) -> bool:
        """Whether this page view gets the interstitial; an answer cookie is checked (and used up) here."""
        answer = request.cookies.get("_wafchallengeid")
        if answer is not None:
            if self._verify(answer, request.cookies.get("waforiginalreid", "")):
                self.door_log.passed += 1
                return False
            self.door_log.rejected += 1
            return True
        mode = self.door.challenge
        if mode == "always":
            return True
        if mode == "first":
            return request.cookies.get("tt_chain_token", "") not in self.issued_tokens
        if mode == "every":
            return self._page_count % self.door.every == 0
        return False

    def _verify(self, cookie: str, rci_value: str) -> bool:
        """A challenge cookie is good once: the right answer to a challenge this door handed out."""
        try:
            text = base64.b64decode(cookie + "=" * (-len(cookie) % 4), validate=True)
            data = json.loads(text)
            pending = self._pending.get(str(data["s"]))
            answer = base64.b64decode(str(data["d"]), validate=True).decode("ascii")
        except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
            return False
        if pending is None or pending.used or not answer.isdigit() or int(answer) != pending.answer:
            return False
        if pending.rs and rci_value != pending.rs:
            return False
        pending.used = True
        return True

    async def _media(self, request: web.Request, host: str, asset: _Asset) -> web.StreamResponse:
        if self.media_latency:
            await asyncio.sleep(self.media_latency)
        cookie = request.cookies.get("tt_chain_token", "")
        referer = request.headers.get("Referer", "")
        cookie_ok = cookie in self.issued_tokens
        hit = MediaHit(
            asset.kind,
            asset.key,
            host,
            request.path,
            0,
            cookie_ok,
            referer,
            request.headers.get("Range", ""),
            asset.variant,
            cookie,
            "_wafchallengeid" in request.cookies or "waforiginalreid" in request.cookies,
        )
        self.media_log.append(hit)
        fault = self.faults.take(Target.of(request), self.CDN_FAULTS) if asset.needs_cookie else None
        mode = fault.kind if fault else ""
        if asset.needs_cookie and request.remote in self.cdn_refused:
            hit.status = 403
            raise web.HTTPForbidden(text="Access Denied")
        if asset.needs_cookie and (not cookie_ok or not referer.startswith("https://www.tiktok.com/")):
            hit.status = 403
            raise web.HTTPForbidden(text="Access Denied")
        if mode == "cdn_403":
            hit.status = 403
            raise web.HTTPForbidden(text="Access Denied")
        if mode == "cdn_redirect_evil":
            hit.status = 302
            raise web.HTTPFound("https://evil.example/steal.mp4")
        if mode == "cdn_500":
            hit.status = 500
            raise web.HTTPInternalServerError(text="cdn error")
        if mode == "cdn_slow" and not await stall(
            request, fault.delay if fault and fault.delay is not None else 3.0
        ):
            hit.status = GONE
            return gone()
        size = asset.blob.size
        start, end, status = 0, size, 200
        spec = request.headers.get("Range")
        headers = {"Accept-Ranges": "bytes", "Content-Type": asset.mime, "Cache-Control": "max-age=3600"}
        if spec:
            parsed = _parse_range(spec, size)
            if parsed is None:
                hit.status = 416
                raise web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
            start, end = parsed
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        hit.status = status
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = end - start
        stop = start + (end - start) // 2 if mode == "cdn_truncated" else end
        try:
            await response.prepare(request)
            if request.method == "HEAD":
                return response
            pace, left = Pace(self.cdn_mibps), stop - start
            for chunk in asset.blob.chunks(start, stop):
                await response.write(chunk)
                left -= len(chunk)
                if not left and stop == end:
                    hit.finished = time.monotonic()
                await pace.sent(len(chunk))
            if mode == "cdn_truncated":
                # Announced length, half the bytes, then the connection goes: a dropped CDN edge.
                if request.transport is not None:
                    request.transport.close()
                return response
            await response.write_eof()
        except ConnectionError:
            pass  # the client stopped reading (a size limit, a timeout)
        return response

    # --- the page ---

    def page_html(
        self,
        post_id: str,
        post: FixturePost | None,
        style: str = "",
        *,
        status: tuple[int, str] | None = None,
        empty: bool = False,
    ) -> str:
        """The post page: `__UNIVERSAL_DATA_FOR_REHYDRATION__` (`reflow`: as mobile browsers get it), or the
        `sigi` / `next` legacy formats.

        `status` overrides the post's own (10204 for a blocked address); `empty` leaves out the video detail.
        """
        code, message = (
            STATUS_CODES[Status.DELETED] if post is None else STATUS_CODES.get(post.status, (0, ""))
        )
        if status is not None:
            code, message = status
        item = self.item_struct(post) if post is not None and code == 0 and not message else None
        title = _escape_html(post.description if post else "TikTok")
        if style == "sigi":
            author = self.catalogue.users.get(post.author) if post else None
            data: dict[str, Any] = {
                "AppContext": {"appContext": {"language": "en", "region": "US"}},
                "VideoPage": {"statusCode": code, "statusMsg": message},
                "ItemModule": {post_id: {**item, "author": item["author"]["uniqueId"]}} if item else {},
                "UserModule": {"users": {author.username: self.author(author)} if author else {}},
            }
            script = f'<script id="SIGI_STATE" type="application/json">{_script_json(data)}</script>'
        elif style == "next":
            page_props: dict[str, Any] = {"statusCode": code, "statusMsg": message}
            if item:
                page_props["itemInfo"] = {"itemStruct": item}
            data = {"props": {"pageProps": page_props}, "page": "/@[uniqueId]/video/[id]", "query": {}}
            script = f'<script id="__NEXT_DATA__" type="application/json">{_script_json(data)}</script>'
        else:
            detail: dict[str, Any] = {"statusCode": code, "statusMsg": message}
            if item:
                detail["itemInfo"] = {"itemStruct": item}
                detail["shareMeta"] = {
                    "title": f"TikTok · {item['author']['nickname']}",
                    "desc": item["desc"],
                }
            scope: dict[str, Any] = {
                "webapp.app-context": {"language": "en", "region": "US", "user": {}},
                "webapp.video-detail": detail,
                "seo.abtest": {
                    "canonical": f"https://www.tiktok.com/@{post.author if post else '_'}/video/{post_id}"
                },
            }
            if empty:  # the shell yt-dlp #17393 meets after a solved challenge: no video detail
                del scope["webapp.video-detail"]
            elif style == "reflow":
                scope["webapp.reflow.video.detail"] = scope.pop("webapp.video-detail")
            data = {"__DEFAULT_SCOPE__": scope}
            script = (
                '<script id="__UNIVERSAL_DATA_FOR_REHYDRATION__" type="application/json">'
                f"{_script_json(data)}</script>"
            )
        return (
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<title>{title} | TikTok</title></head><body><div id="app"></div>{script}'
            '<script src="https://lf16-tiktok-web.tiktokcdn-us.com/obj/main.js" async></script></body></html>'
        )

    def author(self, user: FixtureUser) -> dict[str, Any]:
        """An `author` object of the web schema."""
        return {
            "id": user.uid,
            "uniqueId": user.username,
            "nickname": user.nickname,
            "secUid": user.sec_uid,
            "signature": user.bio,
            "verified": user.verified,
            "privateAccount": user.private,
            "avatarThumb": f"https://{IMAGE_HOSTS[0]}/obj/avatar/{user.uid}~100x100.jpeg",
        }

    def item_struct(self, post: FixturePost) -> dict[str, Any]:
        """A post as the web page's `itemStruct` (camelCase, numbers as the real pages send them)."""
        user = self.catalogue.users.get(post.author) or FixtureUser(post.author, post.author, "", 0, 0, 0, 0)
        music_duration = 3
        item: dict[str, Any] = {
            "id": post.id,
            "desc": post.description,
            "createTime": str(post.created),
            "author": self.author(user),
            "authorStats": {
                "followerCount": user.followers,
                "followingCount": user.following,
                "heartCount": user.likes,
                "videoCount": user.videos,
            },
            "music": {
                "id": post.music_id,
                "title": post.music_title,
                "authorName": user.nickname,
                "original": True,
                "duration": music_duration,
                "album": "",
                "playUrl": self.music_url(post),
                "coverLarge": self.cover_url(post),
            },
            # Real pages round `stats` and give the exact counts as strings in `statsV2`.
            "stats": {
                "playCount": rounded(post.views),
                "diggCount": rounded(post.likes),
                "commentCount": rounded(post.comments),
                "shareCount": rounded(post.shares),
                "collectCount": str(rounded(post.saves)),
            },
            "statsV2": {
                "playCount": str(post.views),
                "diggCount": str(post.likes),
                "commentCount": str(post.comments),
                "shareCount": str(post.shares),
                "collectCount": str(post.saves),
            },
            "challenges": [{"id": str(1000 + i), "title": tag} for i, tag in enumerate(post.hashtags)],
            "textExtra": [{"hashtagName": tag, "type": 1} for tag in post.hashtags],
            "isContentClassified": post.status is Status.AGE,
            "locationCreated": post.region,
            "isAd": False,
        }
        if post.is_photo:
            item["video"] = {
                "duration": 0,
                "width": 0,
                "height": 0,
                "playAddr": "",
                "cover": self.cover_url(post),
            }
            item["imagePost"] = {
                "cover": {"imageURL": {"urlList": [self.cover_url(post)]}},
                "images": [
                    {
                        "imageURL": {
                            "urlList": [
                                self.image_url(post, i, "heic"),
                                self.image_url(post, i, "webp", IMAGE_HOSTS[1]),
                                self.image_url(post, i, "jpeg"),
                            ]
                        },
                        "imageWidth": 480,
                        "imageHeight": 640,
                    }
                    for i in range(1, len(post.images) + 1)
                ],
                "title": "",
            }
            return item
        if post.status is Status.AGE:
            return item  # an age-gated post reaches a visitor without its video (yt-dlp, cobalt)
        play = self.play_rendition(post)
        item["video"] = {
            "id": post.id,
            "width": post.width,
            "height": post.height,
            "duration": post.duration,
            "ratio": f"{min(post.width, post.height)}p",
            "format": "mp4",
            "codecType": "h264",
            "cover": self.cover_url(post),
            "originCover": self.cover_url(post),
            "dynamicCover": self.cover_url(post),
            "playAddr": self.video_url(post, "play") if play else "",
            "downloadAddr": self.video_url(post, "download") if play else "",
            "bitrateInfo": [self._bitrate_info(post, r) for r in post.renditions],
        }
        return item

    def _bitrate_info(self, post: FixturePost, rendition: Rendition) -> dict[str, Any]:
        blob = self.rendition_blob(post, rendition)
        height = min(rendition.width, rendition.height)
        key = f"v12044gd0000sandbox{post.id[-6:]}_{_URL_CODEC[rendition.codec]}_{height}p_{rendition.bitrate}"
        return {
            "Bitrate": rendition.bitrate,
            "CodecType": _CODEC_TYPE[rendition.codec],
            "GearName": rendition.gear,
            "QualityType": 10,
            "PlayAddr": {
                "DataSize": blob.size,
                "Width": rendition.width,
                "Height": rendition.height,
                "UrlKey": key,
                "Uri": f"v12044gd0000sandbox{post.id[-6:]}",
                # Real pages list an hvc1 copy (video-only or dead) first for H.265 renditions.
                "UrlList": (
                    [self.video_url(post, rendition.gear, VIDEO_HOSTS[0], hvc1=True)]
                    if rendition.codec == "h265"
                    else []
                )
                + [self.video_url(post, rendition.gear, h) for h in VIDEO_HOSTS]
                # Real lists end with a www.tiktok.com player URL (yt-dlp #11034: broken; answered 403 here).
                + [self.www_play_url(post, rendition)],
            },
        }


def _script_json(data: Any) -> str:
    # TikTok escapes what could end a <script> early; so must we, or a caption with "</script>" breaks it.
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return (
        text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").replace("/", "\\u002F")
    )


def _escape_html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _b64(data: bytes) -> str:
    # The page writes base64 without padding; clients pad it back (yt-dlp, gallery-dl).
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _parse_range(spec: str, size: int) -> tuple[int, int] | None:
    """A single `bytes=a-b` / `bytes=a-` / `bytes=-n` range as [start, end); None if unsatisfiable."""
    match = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", spec)
    if match is None or not (match.group(1) or match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if first:
        start = int(first)
        end = min(int(last) + 1, size) if last else size
    else:
        start, end = max(0, size - int(last)), size
    if start >= size or start >= end:
        return None
    return start, end
