"""The download service: backend chain and fallback, single-flight, concurrency bound, temp-file lifetime."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx
import pytest

from sandbox.blobs import media_file
from sandbox.catalogue import Status
from sandbox.tiktok import TikTokEmulator
from sandbox.ttsave import TTSaveEmulator
from services.download.models import (
    Backend,
    Download,
    FileRole,
    MediaFile,
    MediaKind,
    Progress,
    Quality,
    Want,
)
from services.download.service import Attempt, DownloadService, Media, _Result, build_backends
from services.download.ttsave import TTSaveBackend
from services.download.web import WebBackend
from services.errors import (
    InvalidLink,
    LinkNotFound,
    NotConfigured,
    PostUnavailable,
    TooLarge,
    UnavailableReason,
    UpstreamError,
)
from services.links import LinkKind, TikTokLink
from tests.services.download.conftest import BIG, BY_STATUS, CLIP, MB, SLIDES, link, short


def leftovers(spool: Path) -> list[Path]:
    return sorted(spool.rglob("*"))


@pytest.fixture
def chain(ttsave_backend: TTSaveBackend, web: WebBackend) -> list[Backend]:
    """The production order: TTSave, then the web."""
    return [ttsave_backend, web]


async def test_served_by_the_first_backend(chain: list[Backend], spool: Path, tiktok: TikTokEmulator) -> None:
    service = DownloadService(chain, temp_root=spool)
    async with await service.fetch(link(CLIP)) as media:
        assert media.backend == "ttsave"
        assert media.kind is MediaKind.VIDEO
        assert [a.backend for a in media.attempts] == ["ttsave"] and media.attempts[0].error_code is None
        assert media.files[0].path.read_bytes() == media_file("clip.mp4")
        assert media.files[0].path.is_relative_to(spool)
        # TTSave says nothing of the video's size; the service reads it from the file.
        video = media.files[0]
        assert (video.width, video.height, video.duration) == (320, 568, 3.0)
    assert media.closed and leftovers(spool) == []
    assert tiktok.requests == []


async def test_falls_back_to_the_web_on_upstream_errors(
    chain: list[Backend], spool: Path, ttsave: TTSaveEmulator, tiktok: TikTokEmulator
) -> None:
    ttsave.fault_next("500", count=3)
    service = DownloadService(chain, temp_root=spool)
    async with await service.fetch(link(CLIP)) as media:
        assert media.backend == "web"
        assert [(a.backend, a.error_code) for a in media.attempts] == [
            ("ttsave", "upstream_error"),
            ("web", None),
        ]
        assert all(a.seconds >= 0 for a in media.attempts)
        assert media.post is not None and media.post.author == "sandbox.cook"  # the web reads metadata
    assert tiktok.downloads(CLIP) == 1 and leftovers(spool) == []


@pytest.mark.parametrize("mode", ["truncated", "reset", "html", "no_files"])
async def test_falls_back_on_every_ttsave_fault(
    chain: list[Backend], spool: Path, ttsave: TTSaveEmulator, mode: str
) -> None:
    ttsave.fault_next(mode)
    service = DownloadService(chain, temp_root=spool)
    async with await service.fetch(link(SLIDES)) as media:
        assert media.backend == "web" and media.kind is MediaKind.PHOTOS
        assert [a.backend for a in media.attempts] == ["ttsave", "web"]
    assert leftovers(spool) == []


async def test_slow_backend_times_out_and_falls_back(
    chain: list[Backend], spool: Path, ttsave: TTSaveEmulator
) -> None:
    ttsave.fault_next("slow", count=5, delay=2.0)
    service = DownloadService(chain, temp_root=spool, attempt_timeout=0.25)
    async with await service.fetch(link(CLIP)) as media:
        assert [(a.backend, a.error_code) for a in media.attempts] == [
            ("ttsave", "upstream_timeout"),
            ("web", None),
        ]
        assert 0.2 < media.attempts[0].seconds < 1.9  # it gave up before the slow answer came


async def test_too_large_falls_back_to_a_smaller_rendition(
    chain: list[Backend], spool: Path, tiktok: TikTokEmulator
) -> None:
    service = DownloadService(chain, temp_root=spool)
    async with await service.fetch(link(BIG), size_limit=50 * MB) as media:
        assert [(a.backend, a.error_code) for a in media.attempts] == [("ttsave", "too_large"), ("web", None)]
        assert media.files[0].size == 30 * MB
    assert leftovers(spool) == []


async def test_too_large_everywhere(chain: list[Backend], spool: Path) -> None:
    service = DownloadService(chain, temp_root=spool)
    with pytest.raises(TooLarge) as info:
        await service.fetch(link(BIG), size_limit=5 * MB)
    assert "ttsave" in " ".join(info.value.__notes__) and "web" in " ".join(info.value.__notes__)
    assert leftovers(spool) == []


async def test_no_fallback_after_a_verdict_about_the_post(
    ttsave_backend: TTSaveBackend, web: WebBackend, spool: Path, ttsave: TTSaveEmulator
) -> None:
    service = DownloadService([web, ttsave_backend], temp_root=spool)
    with pytest.raises(PostUnavailable) as info:
        await service.fetch(link(BY_STATUS[Status.PRIVATE]))
    assert info.value.reason is UnavailableReason.PRIVATE
    assert ttsave.served == []  # never asked
    assert "web" in info.value.__notes__[0]


async def test_the_chain_ends_on_the_webs_verdict(chain: list[Backend], spool: Path) -> None:
    service = DownloadService(chain, temp_root=spool)
    with pytest.raises(PostUnavailable) as info:
        await service.fetch(link(BY_STATUS[Status.REGION]))
    assert info.value.reason is UnavailableReason.REGION
    assert info.value.__notes__ == [info.value.__notes__[0]]
    assert "ttsave" in info.value.__notes__[0] and "unavailable:region" in info.value.__notes__[0]


async def test_every_backend_failing_leaves_no_files(
    chain: list[Backend], spool: Path, ttsave: TTSaveEmulator, tiktok: TikTokEmulator
) -> None:
    ttsave.fault_next("truncated")
    tiktok.fault_next("cdn_truncated", count=4)
    service = DownloadService(chain, temp_root=spool)
    with pytest.raises(UpstreamError) as info:
        await service.fetch(link(CLIP))
    assert info.value.code == "truncated"
    assert leftovers(spool) == []


@pytest.mark.parametrize("want", list(Want))
async def test_every_want_and_kind(chain: list[Backend], spool: Path, want: Want) -> None:
    service = DownloadService(chain, temp_root=spool)
    for post_id, kind in ((CLIP, MediaKind.VIDEO), (SLIDES, MediaKind.PHOTOS)):
        async with await service.fetch(link(post_id), want) as media:
            roles = [f.role for f in media.files]
            if want is Want.AUDIO:
                assert (media.kind, roles) == (MediaKind.AUDIO, [FileRole.AUDIO])
            elif kind is MediaKind.PHOTOS:
                assert (media.kind, roles) == (kind, [FileRole.PHOTO] * 3 + [FileRole.AUDIO])
            else:
                assert media.kind is kind
                assert roles == (
                    [FileRole.VIDEO, FileRole.AUDIO] if want is Want.ORIGINAL else [FileRole.VIDEO]
                )
    assert leftovers(spool) == []


# --- single-flight ---


@pytest.mark.parametrize("backend_name", ["ttsave", "web"])
async def test_ten_concurrent_fetches_download_once(
    chain: list[Backend], spool: Path, ttsave: TTSaveEmulator, tiktok: TikTokEmulator, backend_name: str
) -> None:
    service = DownloadService([b for b in chain if b.name == backend_name], temp_root=spool)
    medias = await asyncio.gather(*(service.fetch(link(CLIP)) for _ in range(10)))
    upstream = ttsave.downloads(CLIP) if backend_name == "ttsave" else tiktok.downloads(CLIP)
    assert upstream == 1
    paths = {m.files[0].path for m in medias}
    assert len(paths) == 1
    [path] = paths
    for media in medias[:9]:
        await media.aclose()
        assert path.exists()  # someone still holds it
    await medias[9].aclose()
    assert not path.exists() and leftovers(spool) == []


async def test_single_flight_key_includes_want_and_limit(
    web: WebBackend, spool: Path, tiktok: TikTokEmulator
) -> None:
    service = DownloadService([web], temp_root=spool)
    medias = await asyncio.gather(
        service.fetch(link(CLIP)),
        service.fetch(link(CLIP)),
        service.fetch(link(CLIP), Want.ORIGINAL),
        service.fetch(link(CLIP), size_limit=10 * MB),
    )
    assert tiktok.downloads(CLIP) == 3
    for media in medias:
        await media.aclose()
    assert leftovers(spool) == []


async def test_a_later_fetch_downloads_again(web: WebBackend, spool: Path, tiktok: TikTokEmulator) -> None:
    service = DownloadService([web], temp_root=spool)
    async with await service.fetch(link(CLIP)):
        pass
    async with await service.fetch(link(CLIP)):
        pass
    assert tiktok.downloads(CLIP) == 2


async def test_failure_is_shared_and_cleaned(web: WebBackend, spool: Path, tiktok: TikTokEmulator) -> None:
    tiktok.fault_next("no_cookie", count=3)  # every visitor session the web backend tries
    service = DownloadService([web], temp_root=spool)
    results = await asyncio.gather(*(service.fetch(link(CLIP)) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, UpstreamError) for r in results)
    assert tiktok.page_views(CLIP) == 3 and leftovers(spool) == []


async def test_a_waiter_giving_up_does_not_cancel_the_others(
    web: WebBackend, spool: Path, tiktok: TikTokEmulator
) -> None:
    tiktok.fault_next("slow", delay=0.3)
    service = DownloadService([web], temp_root=spool)
    impatient = asyncio.create_task(service.fetch(link(CLIP)))
    patient = asyncio.create_task(service.fetch(link(CLIP)))
    await asyncio.sleep(0.05)
    impatient.cancel()
    async with await patient as media:
        assert media.files[0].path.read_bytes() == media_file("clip.mp4")
    with pytest.raises(asyncio.CancelledError):
        await impatient
    assert tiktok.downloads(CLIP) == 1 and leftovers(spool) == []


async def test_everyone_giving_up_still_cleans_up(
    web: WebBackend, spool: Path, tiktok: TikTokEmulator
) -> None:
    tiktok.fault_next("slow", delay=0.3)
    service = DownloadService([web], temp_root=spool)
    waiter = asyncio.create_task(service.fetch(link(CLIP)))
    await asyncio.sleep(0.05)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    for _ in range(250):  # the download finishes on its own, then its files go
        if tiktok.downloads(CLIP) and not leftovers(spool):
            break
        await asyncio.sleep(0.02)
    assert tiktok.downloads(CLIP) == 1 and leftovers(spool) == []


# --- concurrency bound, with a backend that only counts ---


class CountingBackend:
    """A backend that writes one small file after a pause, counting how many run at once."""

    name = "counting"

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.seen: list[str | None] = []

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
        self.running += 1
        self.peak = max(self.peak, self.running)
        self.seen.append(link.post_id)
        try:
            await asyncio.sleep(0.05)
            path = temp_dir / "01-video.mp4"
            path.write_bytes(b"x" * 10)
            if progress is not None:
                progress(10, 10)
            return Download(MediaKind.VIDEO, (MediaFile(path, "video/mp4", 10, FileRole.VIDEO),))
        finally:
            self.running -= 1

    async def aclose(self) -> None:
        pass


async def test_concurrent_downloads_are_bounded(spool: Path) -> None:
    backend = CountingBackend()
    service = DownloadService([backend], max_concurrent=2, temp_root=spool)
    medias = await asyncio.gather(*(service.fetch(link(str(1000 + i))) for i in range(6)))
    assert backend.peak == 2 and len(backend.seen) == 6
    for media in medias:
        media.release()
    assert leftovers(spool) == []


async def test_temp_root_is_created(tmp_path: Path) -> None:
    root = tmp_path / "a" / "b"
    async with await DownloadService([CountingBackend()], temp_root=root).fetch(link(CLIP)) as media:
        assert media.files[0].path.is_relative_to(root)
    assert leftovers(root) == []


async def test_progress_reaches_the_caller(spool: Path, web: WebBackend) -> None:
    seen: list[tuple[int, int | None]] = []
    service = DownloadService([web], temp_root=spool)
    async with await service.fetch(
        link(BIG), size_limit=13 * MB, progress=lambda n, total: seen.append((n, total))
    ):
        pass
    assert seen[-1] == (12 * MB, 12 * MB)
    assert [n for n, _ in seen] == sorted(n for n, _ in seen)


async def test_a_backend_lying_about_its_files_is_an_upstream_error(spool: Path) -> None:
    class Liar(CountingBackend):
        name = "liar"

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
            return Download(
                MediaKind.VIDEO, (MediaFile(Path("/etc/hostname"), "video/mp4", 1, FileRole.VIDEO),)
            )

    service = DownloadService([Liar(), CountingBackend()], temp_root=spool)
    async with await service.fetch(link(CLIP)) as media:
        assert [(a.backend, a.error_code) for a in media.attempts] == [
            ("liar", "upstream_error"),
            ("counting", None),
        ]


async def test_a_crashing_backend_is_logged_and_skipped(
    spool: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Crasher(CountingBackend):
        name = "crasher"

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
            raise KeyError("a bug")

    service = DownloadService([Crasher(), CountingBackend()], temp_root=spool)
    with caplog.at_level(logging.INFO, logger="services.download"):
        async with await service.fetch(link(CLIP)) as media:
            assert media.attempts == [
                Attempt("crasher", media.attempts[0].seconds, "internal"),
                media.attempts[1],
            ]
    assert any(r.levelno == logging.ERROR and r.exc_info for r in caplog.records)
    assert {getattr(r, "backend", None) for r in caplog.records} == {"crasher", "counting"}


# --- links and configuration ---


async def test_short_links_go_through_the_resolver(
    spool: Path, web: WebBackend, tiktok: TikTokEmulator
) -> None:
    async def resolve(found: TikTokLink) -> TikTokLink:
        assert found.code == "ZMclip01"
        return link(CLIP)

    service = DownloadService([web], temp_root=spool, resolver=resolve)
    async with await service.fetch(short("ZMclip01")) as media:
        assert media.post is not None and media.post.id == CLIP
    assert not [r for r in tiktok.requests if r.host == "vm.tiktok.com"]


async def test_short_links_without_a_resolver(
    spool: Path, chain: list[Backend], ttsave: TTSaveEmulator
) -> None:
    ttsave.fault_next("500", count=3)
    service = DownloadService(chain, temp_root=spool)
    with pytest.raises(LinkNotFound):
        await service.fetch(short("ZMdead000"))
    assert leftovers(spool) == []


async def test_links_without_media(spool: Path) -> None:
    service = DownloadService([CountingBackend()], temp_root=spool)
    with pytest.raises(InvalidLink):
        await service.fetch(TikTokLink(LinkKind.USER, "https://www.tiktok.com/@someone", username="someone"))
    with pytest.raises(NotConfigured):
        await DownloadService([], temp_root=spool).fetch(link(CLIP))


async def test_build_backends(spool: Path) -> None:
    async with httpx.AsyncClient() as tiktok_client, httpx.AsyncClient() as ttsave_client:
        built = build_backends(
            ["web", "ttsave"],
            tiktok_client=tiktok_client,
            ttsave_client=ttsave_client,
            ttsave_url="http://x/api/v3",
        )
        assert [b.name for b in built] == ["web", "ttsave"]
        assert DownloadService(built).backend_names == ["web", "ttsave"]
        with pytest.raises(NotConfigured, match="bogus"):
            build_backends(["bogus"], tiktok_client=tiktok_client, ttsave_client=ttsave_client, ttsave_url="")


async def test_aclose_cancels_downloads_in_progress(
    web: WebBackend, spool: Path, tiktok: TikTokEmulator
) -> None:
    tiktok.fault_next("slow", delay=5.0)
    service = DownloadService([web], temp_root=spool)
    pending = asyncio.create_task(service.fetch(link(CLIP)))
    await asyncio.sleep(0.05)
    await service.aclose()
    with pytest.raises(asyncio.CancelledError):
        await pending
    assert leftovers(spool) == []


def test_media_repr_and_release_are_safe() -> None:
    released: list[int] = []
    result = _Result(Download(MediaKind.AUDIO, ()), "x", (), Path("/nonexistent"))
    media = Media(result, lambda: released.append(1))
    assert "audio from x" in repr(media)
    media.release()
    media.release()
    assert released == [1] and media.closed
