"""The TTSave backend against the TTSave emulator over loopback: every post kind, every fault mode."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import httpx
import pytest

from sandbox.blobs import Blob, media_file
from sandbox.catalogue import Status
from sandbox.tiktok import TikTokEmulator
from sandbox.ttsave import TTSaveEmulator
from services.download.models import FileRole, MediaKind, Want
from services.download.multipart import MultipartTruncated
from services.download.ttsave import TTSaveBackend, TTSaveMeta, error_for, meta_from_header
from services.errors import TooLarge, TruncatedStream, UpstreamError, UpstreamRejected, UpstreamTimeout
from services.http import make_client
from tests.services.download.conftest import ALBUM, BIG, BY_STATUS, CLIP, MB, SLIDES, link, post, short


def files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def test_video(ttsave_backend: TTSaveBackend, ttsave: TTSaveEmulator, spool: Path) -> None:
    got = await ttsave_backend.fetch(link(CLIP), Want.VIDEO, None, spool)
    assert got.kind is MediaKind.VIDEO
    [video] = got.files
    assert (video.role, video.mime, video.size) == (FileRole.VIDEO, "video/mp4", len(media_file("clip.mp4")))
    assert video.path.read_bytes() == media_file("clip.mp4")
    assert video.path.parent == spool and video.path.suffix == ".mp4"
    # ORIGINAL also brought the sound; a video request does not keep it.
    assert files_in(spool) == [video.path.name]
    assert got.post is not None and got.post.id == CLIP
    assert got.post.description == post(CLIP).description
    assert [(s.content_type, s.status) for s in ttsave.served] == [("ORIGINAL", 200)]


async def test_original_keeps_the_sound(ttsave_backend: TTSaveBackend, spool: Path) -> None:
    got = await ttsave_backend.fetch(link(CLIP), Want.ORIGINAL, None, spool)
    assert [f.role for f in got.files] == [FileRole.VIDEO, FileRole.AUDIO]
    assert got.files[1].path.read_bytes() == media_file("sound.mp3")
    assert got.files[1].mime == "audio/mpeg"


async def test_audio_only_writes_the_sound(ttsave_backend: TTSaveBackend, spool: Path) -> None:
    got = await ttsave_backend.fetch(link(CLIP), Want.AUDIO, None, spool)
    assert got.kind is MediaKind.AUDIO
    assert [(f.role, f.path.read_bytes()) for f in got.files] == [(FileRole.AUDIO, media_file("sound.mp3"))]
    assert files_in(spool) == [got.files[0].path.name]


@pytest.mark.parametrize("want", [Want.VIDEO, Want.ORIGINAL])
async def test_slideshow_is_photos_in_order_and_the_sound(
    ttsave_backend: TTSaveBackend, spool: Path, want: Want
) -> None:
    got = await ttsave_backend.fetch(link(SLIDES), want, None, spool)
    assert got.kind is MediaKind.PHOTOS
    assert [f.role for f in got.files] == [FileRole.PHOTO] * 3 + [FileRole.AUDIO]
    assert [f.path.read_bytes() for f in got.files[:3]] == [media_file(n) for n in post(SLIDES).images]
    assert all(f.mime == "image/jpeg" for f in got.files[:3])


async def test_twelve_photos(ttsave_backend: TTSaveBackend, spool: Path) -> None:
    got = await ttsave_backend.fetch(link(ALBUM), Want.VIDEO, None, spool)
    assert [f.role for f in got.files].count(FileRole.PHOTO) == 12
    assert [f.path.read_bytes() for f in got.files[:12]] == [media_file(n) for n in post(ALBUM).images]


async def test_short_link_is_passed_through(ttsave_backend: TTSaveBackend, spool: Path) -> None:
    got = await ttsave_backend.fetch(short("ZMclip01"), Want.VIDEO, None, spool)
    assert got.files[0].path.read_bytes() == media_file("clip.mp4")
    assert got.post is None  # no post id was known to hang the caption on


async def test_a_64_mb_video_arrives_intact(ttsave_backend: TTSaveBackend, spool: Path) -> None:
    got = await ttsave_backend.fetch(link(BIG), Want.VIDEO, None, spool)
    [video] = got.files
    best = TikTokEmulator.best_rendition(post(BIG))
    assert best is not None
    expected = TikTokEmulator.rendition_blob(post(BIG), best)
    assert video.size == expected.size == 64 * MB
    digest = hashlib.sha256()
    with video.path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    assert digest.hexdigest() == expected.sha256()


async def test_size_limit_aborts_mid_stream(ttsave_backend: TTSaveBackend, spool: Path) -> None:
    with pytest.raises(TooLarge) as info:
        await ttsave_backend.fetch(link(BIG), Want.VIDEO, 5 * MB, spool)
    assert info.value.limit == 5 * MB
    assert files_in(spool) == []


@pytest.mark.parametrize("status", list(BY_STATUS))
async def test_posts_ttsave_cannot_serve(
    ttsave_backend: TTSaveBackend, ttsave: TTSaveEmulator, spool: Path, status: Status
) -> None:
    with pytest.raises(UpstreamError, match="no files available") as info:
        await ttsave_backend.fetch(link(BY_STATUS[status]), Want.VIDEO, None, spool)
    assert info.value.status == 400
    assert len(ttsave.served) == 1  # a 400 is never retried


# --- fault modes ---


async def test_slow_once_is_retried(
    impatient_ttsave: TTSaveBackend, ttsave: TTSaveEmulator, spool: Path
) -> None:
    ttsave.fault_next("slow", delay=2.0)
    got = await impatient_ttsave.fetch(link(CLIP), Want.VIDEO, None, spool)
    assert got.files[0].size == len(media_file("clip.mp4"))
    assert [s.fault for s in ttsave.served] == ["slow", ""]


async def test_slow_every_time_is_a_timeout(
    impatient_ttsave: TTSaveBackend, ttsave: TTSaveEmulator, spool: Path
) -> None:
    ttsave.fault_next("slow", count=3, delay=2.0)
    with pytest.raises(UpstreamTimeout):
        await impatient_ttsave.fetch(link(CLIP), Want.VIDEO, None, spool)
    assert len(ttsave.served) == 3


async def test_truncated_stream(ttsave_backend: TTSaveBackend, ttsave: TTSaveEmulator, spool: Path) -> None:
    ttsave.fault_next("truncated")
    with pytest.raises(MultipartTruncated) as info:
        await ttsave_backend.fetch(link(CLIP), Want.VIDEO, None, spool)
    assert info.value.code == "truncated" and info.value.upstream == "ttsave"
    assert files_in(spool) == []  # the half-written part is gone


async def test_connection_reset_mid_stream(
    ttsave_backend: TTSaveBackend, ttsave: TTSaveEmulator, spool: Path
) -> None:
    ttsave.fault_next("reset")
    with pytest.raises(TruncatedStream):
        await ttsave_backend.fetch(link(BIG), Want.VIDEO, None, spool)
    assert files_in(spool) == []


@pytest.mark.parametrize(
    ("mode", "text"), [("500", "Failed to save the file"), ("error", "Error: simulated")]
)
async def test_server_errors_are_retried_then_reported(
    ttsave_backend: TTSaveBackend, ttsave: TTSaveEmulator, spool: Path, mode: str, text: str
) -> None:
    ttsave.fault_next(mode)
    await ttsave_backend.fetch(link(CLIP), Want.VIDEO, None, spool)  # one failure, then a good answer
    ttsave.fault_next(mode, count=3)
    with pytest.raises(UpstreamError, match=text) as info:
        await ttsave_backend.fetch(link(CLIP), Want.VIDEO, None, spool)
    assert info.value.status == 500
    assert [s.status for s in ttsave.served] == [500, 200, 500, 500, 500]


async def test_429_is_retried_after_its_delay(
    ttsave_backend: TTSaveBackend, ttsave: TTSaveEmulator, spool: Path
) -> None:
    ttsave.fault_next("429", count=2)
    got = await ttsave_backend.fetch(link(CLIP), Want.VIDEO, None, spool)
    assert got.files and [s.status for s in ttsave.served] == [429, 429, 200]


async def test_no_files(ttsave_backend: TTSaveBackend, ttsave: TTSaveEmulator, spool: Path) -> None:
    ttsave.fault_next("no_files")
    with pytest.raises(UpstreamError, match="no files available"):
        await ttsave_backend.fetch(link(CLIP), Want.VIDEO, None, spool)


async def test_bad_content_meta_means_no_metadata(
    ttsave_backend: TTSaveBackend, ttsave: TTSaveEmulator, spool: Path
) -> None:
    ttsave.fault_next("bad_meta")
    got = await ttsave_backend.fetch(link(CLIP), Want.VIDEO, None, spool)
    assert got.post is None
    assert got.files[0].path.read_bytes() == media_file("clip.mp4")


async def test_bare_lf_framing(ttsave_backend: TTSaveBackend, ttsave: TTSaveEmulator, spool: Path) -> None:
    ttsave.fault_next("lf")
    got = await ttsave_backend.fetch(link(SLIDES), Want.VIDEO, None, spool)
    assert [f.path.read_bytes() for f in got.files] == [
        *(media_file(n) for n in post(SLIDES).images),
        media_file("sound.mp3"),
    ]


async def test_html_instead_of_a_stream(
    ttsave_backend: TTSaveBackend, ttsave: TTSaveEmulator, spool: Path
) -> None:
    ttsave.fault_next("html")
    with pytest.raises(UpstreamError, match="not a multipart stream"):
        await ttsave_backend.fetch(link(CLIP), Want.VIDEO, None, spool)


async def test_ping(ttsave_backend: TTSaveBackend) -> None:
    assert await ttsave_backend.ping() is True


async def test_ping_of_nothing_is_false() -> None:
    async with make_client() as client:
        # Port 9 on loopback: nothing listens there, so the connection is refused at once.
        assert await TTSaveBackend(client, "http://127.0.0.1:9/api/v3").ping() is False


async def test_our_requests_are_valid(
    ttsave_backend: TTSaveBackend, ttsave: TTSaveEmulator, spool: Path
) -> None:
    await ttsave_backend.fetch(link(CLIP), Want.VIDEO, None, spool)
    async with httpx.AsyncClient(base_url=ttsave.base_url) as raw:
        missing = await raw.post("/api/v3/download", json={"download_content_type": "ORIGINAL"})
        empty = await raw.post("/api/v3/download", json={"url": "", "download_content_type": "ORIGINAL"})
        bad_type = await raw.post(
            "/api/v3/download", json={"url": link(CLIP).url, "download_content_type": "X"}
        )
    assert missing.status_code == 422 and missing.json()["message"] == "Validation Error"
    assert empty.json() == {"detail": "URL is required"}
    assert bad_type.json() == {"detail": "Invalid content type"}
    for answer in (missing, empty, bad_type):  # and the backend maps each to a rejection
        assert isinstance(error_for(answer.status_code, answer.content), UpstreamRejected)


# --- pure pieces ---


def b64(text: str, alphabet: str = "standard") -> str:
    raw = text.encode()
    return (base64.urlsafe_b64encode(raw) if alphabet == "urlsafe" else base64.b64encode(raw)).decode()


@pytest.mark.parametrize(
    ("header", "meta"),
    [
        (None, None),
        ("", None),
        ('""', None),
        (b64('{"title": "Title", "desc": "Description"}'), TTSaveMeta("Title", "Description")),
        (f'"{b64("{}")}"', TTSaveMeta()),
        ('  "' + b64('{"desc": "ü?>"}') + '" ', TTSaveMeta(None, "ü?>")),
        (b64('{"desc": "ü?>?"}', "urlsafe").rstrip("="), TTSaveMeta(None, "ü?>?")),
        ("Encoded Base64 json string", None),
        (b64("[1, 2]"), None),
        (b64("not json"), None),
        (b64('{"title": 5, "desc": ["x"]}'), TTSaveMeta()),
    ],
)
def test_meta_from_header(header: str | None, meta: TTSaveMeta | None) -> None:
    assert meta_from_header(header) == meta


@pytest.mark.parametrize(
    ("status", "body", "kind", "text"),
    [
        (400, b'{"detail": "URL is required"}', UpstreamRejected, "URL is required"),
        (400, b'{"detail": "Invalid content type"}', UpstreamRejected, "Invalid content type"),
        (400, b'{"detail": "No files available for download"}', UpstreamError, "no files available"),
        (500, b'{"detail": "Failed to save the file"}', UpstreamError, "Failed to save the file"),
        (500, b'{"message": "Internal Server Error", "detail": "Error: boom"}', UpstreamError, "Error: boom"),
        (
            422,
            b'{"message": "Validation Error", "detail": [{"loc": ["body", "url"], "msg": "field required"}]}',
            UpstreamRejected,
            "body.url",
        ),
        (502, b"<html>bad gateway</html>", UpstreamError, "bad gateway"),
        (429, b"", UpstreamError, "HTTP 429"),
    ],
)
def test_error_for(status: int, body: bytes, kind: type[UpstreamError], text: str) -> None:
    error = error_for(status, body)
    assert type(error) is kind
    assert text in str(error)
    assert error.upstream == "ttsave"


def test_blob_chunks_are_consistent() -> None:
    blob = Blob.synthetic("x", 200_000)
    whole = b"".join(blob.chunks())
    assert len(whole) == 200_000
    assert b"".join(blob.chunks(65_000, 140_001, chunk_size=999)) == whole[65_000:140_001]
