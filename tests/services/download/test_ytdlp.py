"""The ytdlp backend against the sandbox's TikTok emulator: yt-dlp's own extractor (which we did not write)
reads the emulator's pages through UPSTREAM_ROUTES, and our code downloads the media under the allow-list."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from sandbox.blobs import media_file
from sandbox.catalogue import Status
from sandbox.tiktok import TikTokEmulator
from services.download.models import FileRole, MediaKind, Quality, Want
from services.download.service import DownloadService, build_backends
from services.download.web import WebBackend
from services.download.ytdlp import YtDlpBackend, error_for, video_formats
from services.errors import PostUnavailable, TooLarge, UnavailableReason, UnsafeRedirect, UpstreamError
from services.health import BreakerState
from tests.services.download.conftest import BY_STATUS, CLIP, INSTANT, SLIDES, link, post

pytest.importorskip("yt_dlp")


@pytest.fixture
def ytdlp(tiktok_client: httpx.AsyncClient) -> YtDlpBackend:
    """The ytdlp backend on the routed TikTok client, retries without waiting."""
    return YtDlpBackend(tiktok_client, retry=INSTANT)


async def test_serves_a_video_read_by_yt_dlp(
    ytdlp: YtDlpBackend, tiktok: TikTokEmulator, spool: Path
) -> None:
    got = await ytdlp.fetch(link(CLIP), Want.VIDEO, None, spool)
    assert got.kind is MediaKind.VIDEO
    (video,) = got.files
    assert video.role is FileRole.VIDEO and video.mime == "video/mp4"
    assert video.path.read_bytes() == media_file("clip.mp4") and video.path.parent == spool
    assert got.post is not None and got.post.author == "sandbox.cook"
    assert got.post.description == post(CLIP).description
    # yt-dlp asked the emulated www.tiktok.com (through the routes); the CDN got the page's cookie.
    page = [r for r in tiktok.requests if r.host == "www.tiktok.com"]
    assert [r.path for r in page] == [f"/@_/video/{CLIP}"]
    assert tiktok.downloads(CLIP) == 1
    assert ytdlp.refused == []


async def test_original_adds_the_sound(ytdlp: YtDlpBackend, spool: Path) -> None:
    got = await ytdlp.fetch(link(CLIP), Want.ORIGINAL, None, spool)
    assert [f.role for f in got.files] == [FileRole.VIDEO, FileRole.AUDIO]
    assert got.files[1].path.read_bytes() == media_file(post(CLIP).music_file)


async def test_photo_post_gives_only_the_sound_and_the_chain_falls_through(
    ytdlp: YtDlpBackend, web: WebBackend, spool: Path
) -> None:
    service = DownloadService([ytdlp, web], temp_root=spool)
    try:
        async with await service.fetch(link(SLIDES)) as media:
            assert media.backend == "web" and media.kind is MediaKind.PHOTOS
            assert [(a.backend, a.error_code) for a in media.attempts] == [
                ("ytdlp", "unsupported_photo"),
                ("web", None),
            ]
        # A photo post says nothing about yt-dlp's health.
        assert service.health("ytdlp").breaker.consecutive == 0
        assert service.health("ytdlp").breaker.state is BreakerState.CLOSED
        # The sound alone is what yt-dlp can give for it.
        async with await service.fetch(link(SLIDES), Want.AUDIO) as media:
            assert media.backend == "ytdlp" and media.kind is MediaKind.AUDIO
            assert media.files[0].path.read_bytes() == media_file(post(SLIDES).music_file)
    finally:
        await service.aclose()


async def test_a_media_url_off_the_allow_list_is_refused(
    ytdlp: YtDlpBackend, tiktok: TikTokEmulator, spool: Path
) -> None:
    tiktok.fault_next("foreign_media")
    with pytest.raises(UnsafeRedirect) as info:
        await ytdlp.fetch(link(CLIP), Want.VIDEO, None, spool)
    assert "evil.example" in info.value.location
    assert tiktok.media_log == []  # nothing was fetched, from TikTok or elsewhere
    assert not any(spool.iterdir())  # noqa: ASYNC240


async def test_a_cdn_redirect_off_the_allow_list_is_not_followed(
    ytdlp: YtDlpBackend, tiktok: TikTokEmulator, spool: Path
) -> None:
    tiktok.fault_next("cdn_redirect_evil", count=10)
    with pytest.raises(UnsafeRedirect) as info:
        await ytdlp.fetch(link(CLIP), Want.VIDEO, None, spool)
    assert info.value.location == "https://evil.example/steal.mp4"


@pytest.mark.parametrize(
    ("status", "reason", "ytdlp_code"),
    [
        (Status.PRIVATE, UnavailableReason.PRIVATE, "unavailable:private"),
        (Status.PRIVATE_ACCOUNT, UnavailableReason.PRIVATE, "unavailable:private"),
        (Status.REGION, UnavailableReason.REGION, "unavailable:region"),
        (Status.AGE, UnavailableReason.AGE, "unavailable:age"),
        # yt-dlp sees no item and no error code; the web backend reads the statusMsg and says deleted.
        (Status.DELETED, UnavailableReason.DELETED, "upstream_error"),
    ],
)
async def test_unavailable_posts_never_open_the_breaker(
    ytdlp: YtDlpBackend,
    web: WebBackend,
    spool: Path,
    status: Status,
    reason: UnavailableReason,
    ytdlp_code: str,
) -> None:
    service = DownloadService([ytdlp, web], temp_root=spool, breaker_failures=1)
    try:
        for _ in range(3):
            with pytest.raises(PostUnavailable) as info:
                await service.fetch(link(BY_STATUS[status]))
            assert info.value.reason in (reason, UnavailableReason.PRIVATE_ACCOUNT)
            notes = "".join(info.value.__notes__)
            assert notes.startswith("attempts: ytdlp ") and ytdlp_code in notes
        assert service.health("ytdlp").breaker.state is BreakerState.CLOSED
        assert service.health("ytdlp").requests == 3
    finally:
        await service.aclose()


async def test_size_limit(ytdlp: YtDlpBackend, spool: Path) -> None:
    with pytest.raises(TooLarge):
        await ytdlp.fetch(link(CLIP), Want.VIDEO, 1000, spool)
    assert not any(spool.iterdir())  # noqa: ASYNC240


async def test_a_page_fault_is_an_upstream_error(
    ytdlp: YtDlpBackend, tiktok: TikTokEmulator, spool: Path
) -> None:
    tiktok.fault_next("page_500", count=10)
    with pytest.raises(UpstreamError):
        await ytdlp.fetch(link(CLIP), Want.VIDEO, None, spool)


def test_build_backends_knows_ytdlp(tiktok_client: httpx.AsyncClient) -> None:
    (backend,) = build_backends(
        ["ytdlp"], tiktok_client=tiktok_client, ttsave_client=tiktok_client, ttsave_url=""
    )
    assert isinstance(backend, YtDlpBackend)


def test_format_order_prefers_h264_and_drops_bytevc2_and_sound_only() -> None:
    formats = [
        {"url": "a", "vcodec": "h265", "acodec": "aac", "width": 1080, "height": 1920},
        {"url": "b", "vcodec": "h264", "acodec": "aac", "width": 720, "height": 1280, "filesize": 5},
        {"url": "c", "vcodec": "bytevc2", "acodec": "aac", "width": 1080, "height": 1920},
        {"url": "d", "vcodec": "none", "acodec": "mp3"},
        {"url": "e", "vcodec": "h264", "acodec": "aac", "width": 1080, "height": 1920, "filesize": 50},
    ]
    assert [f["url"] for f in video_formats(formats, None)] == ["e", "b", "a"]
    assert [f["url"] for f in video_formats(formats, 10)] == ["b", "a"]
    assert [f["url"] for f in video_formats(formats, None, Quality.BEST)] == ["e", "a", "b"]


def test_extractor_messages_become_our_errors() -> None:
    private = error_for("[TikTok] 1: This post is private (status code 10216)")
    assert isinstance(private, PostUnavailable) and private.reason is UnavailableReason.PRIVATE
    assert type(error_for("[TikTok] 1: Unable to download webpage: HTTP Error 500")) is UpstreamError
