"""The TikTok web backend against the TikTok emulator over loopback, and its pure pieces."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import pytest

from sandbox.blobs import media_file
from sandbox.catalogue import Status
from sandbox.tiktok import TikTokEmulator
from services.download.cookies import SessionCookies
from services.download.models import FileRole, MediaKind, Want
from services.download.web import (
    Codec,
    Image,
    PostPage,
    Rendition,
    WebBackend,
    WebItem,
    check_page,
    codec_of,
    image_source,
    parse_post_page,
    video_sources,
)
from services.errors import (
    CdnRejected,
    ChallengeFailed,
    EmptyShell,
    IpBlocked,
    LinkNotFound,
    LoginWall,
    PostUnavailable,
    TooLarge,
    TruncatedStream,
    UnavailableReason,
    UnsafeRedirect,
    UpstreamError,
    UpstreamRejected,
    UpstreamServerError,
)
from services.metadata.models import Post
from tests.services.download.conftest import ALBUM, BIG, BY_STATUS, CLIP, MB, SLIDES, link, post, short


def files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def video_hits(tiktok: TikTokEmulator) -> list[tuple[str, int]]:
    return [(h.variant, h.status) for h in tiktok.media_log if h.kind == "video"]


async def test_video_with_metadata(web: WebBackend, tiktok: TikTokEmulator, spool: Path) -> None:
    got = await web.fetch(link(CLIP), Want.VIDEO, None, spool)
    assert got.kind is MediaKind.VIDEO
    [video] = got.files
    assert video.path.read_bytes() == media_file("clip.mp4")
    assert (video.mime, video.width, video.height, video.duration) == ("video/mp4", 320, 568, 3.0)
    p = got.post
    assert p is not None
    assert (p.id, p.author, p.author_name) == (CLIP, "sandbox.cook", "Sandbox Cook")
    assert p.description == "Pasta in 30 seconds #pasta #cooking <b>&amp;</b>"  # survived the page's escaping
    assert (p.stats.views, p.stats.likes, p.stats.saves) == (1_534_000, 240_100, 5_012)
    assert p.hashtags == ("pasta", "cooking")
    assert (p.width, p.height, p.duration) == (320, 568, 3.0)
    assert p.cover is not None and "tiktokcdn.com" in p.cover
    # The H.264 rendition, never bytevc2 and not the larger H.265 one; with the page's cookie and Referer.
    [hit] = [h for h in tiktok.media_log if h.kind == "video"]
    assert (hit.variant, hit.status, hit.cookie) == ("lowest_540_0", 200, True)
    assert hit.referer == f"https://www.tiktok.com/@_/video/{CLIP}"
    assert tiktok.page_views(CLIP) == 1


async def test_the_page_is_always_the_video_form(
    web: WebBackend, tiktok: TikTokEmulator, spool: Path
) -> None:
    await web.fetch(link(SLIDES), Want.VIDEO, None, spool)
    [page] = [r for r in tiktok.requests if r.host == "www.tiktok.com"]
    assert page.path == f"/@_/video/{SLIDES}"


async def test_original_adds_the_sound(web: WebBackend, spool: Path) -> None:
    got = await web.fetch(link(CLIP), Want.ORIGINAL, None, spool)
    assert [(f.role, f.mime) for f in got.files] == [
        (FileRole.VIDEO, "video/mp4"),
        (FileRole.AUDIO, "audio/mpeg"),
    ]
    assert got.files[1].path.read_bytes() == media_file("sound.mp3")
    assert got.files[1].path.suffix == ".mp3" and got.files[1].duration == 3.0


async def test_audio(web: WebBackend, tiktok: TikTokEmulator, spool: Path) -> None:
    got = await web.fetch(link(CLIP), Want.AUDIO, None, spool)
    assert got.kind is MediaKind.AUDIO
    assert [f.path.read_bytes() for f in got.files] == [media_file("sound.mp3")]
    assert tiktok.downloads(CLIP) == 0  # no video was fetched for it


@pytest.mark.parametrize(("post_id", "count"), [(SLIDES, 3), (ALBUM, 12)])
async def test_photos_prefer_jpeg_and_keep_order(
    web: WebBackend, tiktok: TikTokEmulator, spool: Path, post_id: str, count: int
) -> None:
    got = await web.fetch(link(post_id), Want.VIDEO, None, spool)
    assert got.kind is MediaKind.PHOTOS
    assert [f.role for f in got.files] == [FileRole.PHOTO] * count + [FileRole.AUDIO]
    assert [f.path.read_bytes() for f in got.files[:count]] == [media_file(n) for n in post(post_id).images]
    assert {(f.mime, f.width, f.height) for f in got.files[:count]} == {("image/jpeg", 480, 640)}
    assert {h.variant for h in tiktok.media_log if h.kind == "image"} == {"jpeg"}
    assert tiktok.downloads(post_id, "image") == count
    assert got.post is not None and got.post.is_photo and got.post.image_count == count


async def test_renditions_by_size_limit(web: WebBackend, tiktok: TikTokEmulator, spool: Path) -> None:
    big = post(BIG)
    got = await web.fetch(link(BIG), Want.VIDEO, None, spool)
    assert (got.files[0].size, got.files[0].width, got.files[0].height) == (64 * MB, 2160, 3840)
    expected = TikTokEmulator.rendition_blob(big, big.renditions[0])
    assert sha256(got.files[0].path) == expected.sha256()
    (spool / "second").mkdir()
    got = await web.fetch(link(BIG), Want.VIDEO, 50 * MB, spool / "second")
    assert (got.files[0].size, got.files[0].height) == (30 * MB, 1920)
    assert video_hits(tiktok) == [("adapt_2160_1", 200), ("normal_1080_0", 200)]


async def test_nothing_fits(web: WebBackend, tiktok: TikTokEmulator, spool: Path) -> None:
    with pytest.raises(TooLarge) as info:
        await web.fetch(link(BIG), Want.VIDEO, 5 * MB, spool)
    assert info.value.limit == 5 * MB and info.value.size == 6 * MB
    # No rendition fits; playAddr and downloadAddr are refused by their Content-Length, unread.
    assert [h.variant for h in tiktok.media_log] == ["play", "download"]
    assert files_in(spool) == []


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (Status.PRIVATE, UnavailableReason.PRIVATE),
        (Status.PRIVATE_ACCOUNT, UnavailableReason.PRIVATE_ACCOUNT),
        (Status.DELETED, UnavailableReason.DELETED),
        (Status.REGION, UnavailableReason.REGION),
        (Status.AGE, UnavailableReason.AGE),
    ],
)
async def test_unavailable_posts(
    web: WebBackend, tiktok: TikTokEmulator, spool: Path, status: Status, reason: UnavailableReason
) -> None:
    with pytest.raises(PostUnavailable) as info:
        await web.fetch(link(BY_STATUS[status]), Want.VIDEO, None, spool)
    assert info.value.reason is reason
    assert tiktok.media_log == []


async def test_unknown_post_is_deleted(web: WebBackend, spool: Path) -> None:
    with pytest.raises(PostUnavailable) as info:
        await web.fetch(link("7000000000000000000"), Want.VIDEO, None, spool)
    assert info.value.reason is UnavailableReason.DELETED


@pytest.mark.parametrize("code", ["ZMclip01", "ZTslide01"])
async def test_short_links(web: WebBackend, tiktok: TikTokEmulator, spool: Path, code: str) -> None:
    got = await web.fetch(short(code), Want.VIDEO, None, spool)
    assert got.files
    assert got.post is not None and got.post.id == tiktok.catalogue.short_links[code]


async def test_www_t_short_link(web: WebBackend, spool: Path) -> None:
    got = await web.fetch(short("ZMclip01", host="www.tiktok.com/t"), Want.VIDEO, None, spool)
    assert got.post is not None and got.post.id == CLIP


async def test_dead_short_link(web: WebBackend, spool: Path) -> None:
    with pytest.raises(LinkNotFound):
        await web.fetch(short("ZMdead000"), Want.VIDEO, None, spool)


# --- cookies ---


async def test_the_cdn_needs_the_page_cookie(web: WebBackend, tiktok: TikTokEmulator, spool: Path) -> None:
    tiktok.fault_next("no_cookie", count=3)  # every visitor session of the attempt
    with pytest.raises(CdnRejected) as info:
        await web.fetch(link(CLIP), Want.VIDEO, None, spool)
    assert info.value.status == 403
    assert {(h.cookie, h.status) for h in tiktok.media_log} == {(False, 403)}
    assert tiktok.page_views(CLIP) == 3
    assert files_in(spool) == []


async def test_a_cdn_refusal_is_retried_in_a_fresh_session(
    web: WebBackend, tiktok: TikTokEmulator, spool: Path
) -> None:
    tiktok.fault_next("no_cookie")
    got = await web.fetch(link(CLIP), Want.VIDEO, None, spool)
    assert got.files[0].path.read_bytes() == media_file("clip.mp4")
    assert tiktok.page_views(CLIP) == 2
    assert web.door_failures == {"cdn_rejected": 1}


async def test_a_warm_session_is_reused(
    web: WebBackend, tiktok: TikTokEmulator, tiktok_client: httpx.AsyncClient, spool: Path
) -> None:
    other = spool.parent / "other"
    other.mkdir()
    await web.fetch(link(CLIP), Want.VIDEO, None, other)
    await web.fetch(link(CLIP), Want.VIDEO, None, spool)
    first, second = (h.token for h in tiktok.media_log if h.kind == "video")
    assert first == second and tiktok.issued_tokens == {first}  # the second visit set no new tt_chain_token
    pages = [r for r in tiktok.requests if r.path.endswith(CLIP)]
    assert "tt_chain_token" not in pages[0].headers.get("cookie", "")
    assert f"tt_chain_token={first}" in pages[1].headers["cookie"]  # the emulator saw it sent back
    assert web.sessions.stats().created == 1
    assert list(tiktok_client.cookies.jar) == []  # the shared client keeps nothing between users


def test_session_cookies_scope() -> None:
    jar = SessionCookies()
    page = httpx.URL("https://www.tiktok.com/@_/video/1")
    response = httpx.Response(
        200,
        headers=[
            ("Set-Cookie", "tt_chain_token=abc; Domain=.tiktok.com; Path=/; Secure; HttpOnly"),
            ("Set-Cookie", "host_only=1; Path=/"),
            ("Set-Cookie", "evil=1; Domain=.evil.example"),
            ("Set-Cookie", "gone=1; Domain=.tiktok.com; Max-Age=0"),
            ("Set-Cookie", "old=1; Domain=.tiktok.com; Expires=Thu, 01 Jan 1970 00:00:00 GMT"),
        ],
    )
    jar.collect(response, page)
    assert jar.names() == ["host_only", "tt_chain_token"]
    assert jar.header_for(httpx.URL("https://v16-webapp-prime.tiktok.com/video/x")) == "tt_chain_token=abc"
    assert jar.header_for(httpx.URL("http://v16-webapp-prime.tiktok.com/video/x")) is None  # Secure
    assert jar.header_for(httpx.URL("https://p16-sign-va.tiktokcdn.com/x.jpeg")) is None
    assert jar.header_for(page) == "tt_chain_token=abc; host_only=1"
    jar.collect(
        httpx.Response(200, headers={"Set-Cookie": "tt_chain_token=x; Domain=tiktok.com; Max-Age=0"}), page
    )
    assert jar.names() == ["host_only"]


# --- page faults ---


@pytest.mark.parametrize("mode", ["sigi", "next_data"])
async def test_legacy_page_formats(web: WebBackend, tiktok: TikTokEmulator, spool: Path, mode: str) -> None:
    tiktok.fault_next(mode)
    got = await web.fetch(link(CLIP), Want.VIDEO, None, spool)
    assert got.files[0].path.read_bytes() == media_file("clip.mp4")
    assert got.post is not None and (got.post.author, got.post.author_name) == (
        "sandbox.cook",
        "Sandbox Cook",
    )


@pytest.mark.parametrize(("mode", "source"), [("", "universal"), ("sigi", "sigi"), ("next_data", "next")])
async def test_read_page(web: WebBackend, tiktok: TikTokEmulator, mode: str, source: str) -> None:
    if mode:
        tiktok.fault_next(mode)
    page = await web.read_page(BIG)
    assert (page.source, page.status_code) == (source, 0)
    assert page.item is not None and page.item.post.duration == 95.0
    assert [(r.codec, r.size) for r in page.item.renditions] == [
        (Codec.H264, n * MB) for n in (64, 30, 12, 6)
    ]


@pytest.mark.parametrize("mode", ["sigi", "next_data"])
async def test_legacy_formats_carry_status(
    web: WebBackend, tiktok: TikTokEmulator, spool: Path, mode: str
) -> None:
    tiktok.fault_next(mode)
    with pytest.raises(PostUnavailable) as info:
        await web.fetch(link(BY_STATUS[Status.PRIVATE]), Want.VIDEO, None, spool)
    assert info.value.reason is UnavailableReason.PRIVATE


@pytest.mark.parametrize(
    ("mode", "error", "text"),
    [
        ("challenge_unsolvable", ChallengeFailed, "no answer"),
        ("empty_shell", EmptyShell, "no video detail"),
        ("ip_blocked", IpBlocked, "10204"),
        ("page_403", UpstreamRejected, "403"),
        ("login", LoginWall, "login"),
    ],
)
async def test_page_failures(
    web: WebBackend, tiktok: TikTokEmulator, spool: Path, mode: str, error: type[Exception], text: str
) -> None:
    tiktok.fault_next(mode, count=3)  # every visitor session of the attempt
    with pytest.raises(error, match=text):
        await web.fetch(link(CLIP), Want.VIDEO, None, spool)
    assert tiktok.media_log == []


async def test_page_500_is_retried(web: WebBackend, tiktok: TikTokEmulator, spool: Path) -> None:
    tiktok.fault_next("page_500", count=2)
    assert (await web.fetch(link(CLIP), Want.VIDEO, None, spool)).files
    tiktok.fault_next("page_500", count=9)  # three tries in each of three sessions
    with pytest.raises(UpstreamServerError) as info:
        await web.fetch(link(CLIP), Want.VIDEO, None, spool)
    assert info.value.status == 500


# --- CDN faults ---


async def test_cdn_403_moves_to_the_mirror(web: WebBackend, tiktok: TikTokEmulator, spool: Path) -> None:
    tiktok.fault_next("cdn_403")
    got = await web.fetch(link(CLIP), Want.VIDEO, None, spool)
    assert got.files[0].path.read_bytes() == media_file("clip.mp4")
    assert [(h.host, h.status) for h in tiktok.media_log] == [
        ("v16-webapp-prime.tiktok.com", 403),
        ("v19-webapp-prime.tiktok.com", 200),
    ]


async def test_cdn_403_everywhere(web: WebBackend, tiktok: TikTokEmulator, spool: Path) -> None:
    tiktok.fault_next("cdn_403", count=12)
    with pytest.raises(CdnRejected) as info:
        await web.fetch(link(CLIP), Want.VIDEO, None, spool)
    assert info.value.status == 403
    # Both mirrors of the rendition, then playAddr, then the watermarked downloadAddr; in each of 3 sessions.
    assert [h.variant for h in tiktok.media_log] == ["lowest_540_0", "lowest_540_0", "play", "download"] * 3


async def test_cdn_truncated(web: WebBackend, tiktok: TikTokEmulator, spool: Path) -> None:
    tiktok.fault_next("cdn_truncated", count=10)
    with pytest.raises(TruncatedStream):
        await web.fetch(link(BIG), Want.VIDEO, 20 * MB, spool)
    assert files_in(spool) == []
    tiktok.clear_faults()
    tiktok.fault_next("cdn_truncated")
    got = await web.fetch(link(BIG), Want.VIDEO, 20 * MB, spool)
    assert got.files[0].size == 12 * MB


async def test_cdn_500_is_retried(web: WebBackend, tiktok: TikTokEmulator, spool: Path) -> None:
    tiktok.fault_next("cdn_500")
    got = await web.fetch(link(CLIP), Want.VIDEO, None, spool)
    assert got.files and [h.status for h in tiktok.media_log] == [500, 200]


async def test_media_outside_tiktok_is_never_fetched(
    web: WebBackend, tiktok: TikTokEmulator, spool: Path
) -> None:
    tiktok.fault_next("foreign_media")
    with pytest.raises(UnsafeRedirect):
        await web.fetch(link(CLIP), Want.VIDEO, None, spool)
    assert tiktok.media_log == []


async def test_cdn_redirect_outside_tiktok(web: WebBackend, tiktok: TikTokEmulator, spool: Path) -> None:
    tiktok.fault_next("cdn_redirect_evil", count=10)
    with pytest.raises(UnsafeRedirect) as info:
        await web.fetch(link(CLIP), Want.VIDEO, None, spool)
    assert info.value.location == "https://evil.example/steal.mp4"


# --- pure pieces ---


def rendition(codec: Codec, size: int | None, height: int, url: str, bitrate: int = 1) -> Rendition:
    return Rendition((url,), codec, size, height * 9 // 16, height, bitrate)


def item(*renditions: Rendition, play: str | None = "play", download: str | None = "dl") -> WebItem:
    return WebItem(Post(id="1", url="u"), renditions=renditions, play_url=play, download_url=download)


@pytest.mark.parametrize(
    ("web_item", "limit", "urls"),
    [
        (
            item(rendition(Codec.H264, 10, 540, "a"), rendition(Codec.H264, 30, 1080, "b")),
            None,
            ["b", "play", "dl"],
        ),
        (
            item(rendition(Codec.H264, 10, 540, "a"), rendition(Codec.H264, 30, 1080, "b")),
            20,
            ["a", "play", "dl"],
        ),
        (
            item(rendition(Codec.H265, 10, 1080, "hevc"), rendition(Codec.H264, 10, 540, "avc")),
            None,
            ["avc", "play", "dl"],
        ),
        (
            item(rendition(Codec.H265, 10, 1080, "hevc"), rendition(Codec.H264, 50, 540, "avc")),
            20,
            ["hevc", "play", "dl"],
        ),
        (item(rendition(Codec.BYTEVC2, 1, 2160, "vc2")), None, ["play", "dl"]),
        (item(rendition(Codec.H264, None, 720, "unknown-size")), 5, ["unknown-size", "play", "dl"]),
        (
            item(rendition(Codec.H264, 10, 720, "x", 1), rendition(Codec.H264, 12, 720, "y", 2)),
            None,
            ["y", "play", "dl"],
        ),
        (item(rendition(Codec.H264, 10, 720, "play")), None, ["play", "dl"]),
        (item(play=None, download=None), None, []),
        (item(play=None), 1, ["dl"]),
    ],
)
def test_video_sources(web_item: WebItem, limit: int | None, urls: list[str]) -> None:
    assert [s.url for s in video_sources(web_item, limit)] == urls


@pytest.mark.parametrize(
    ("codec_type", "url_key", "codec"),
    [
        ("h264", "v0_h264_540p_1", Codec.H264),
        ("h265_hvc1", "v0_bytevc1_720p_1", Codec.H265),
        ("", "v0_bytevc1_1080p_1", Codec.H265),
        ("bytevc2", "v0_bytevc2_540p_1", Codec.BYTEVC2),
        ("h264", "v0_bytevc2_540p_1", Codec.BYTEVC2),
        ("", "", Codec.UNKNOWN),
    ],
)
def test_codec_of(codec_type: str, url_key: str, codec: Codec) -> None:
    assert codec_of(codec_type, url_key) is codec


def test_image_source_prefers_jpeg() -> None:
    heic = "https://p16-sign-va.tiktokcdn.com/a~tplv.heic?x=1"
    webp = "https://p16-sign-va.tiktokcdn.com/a~tplv.webp?x=1"
    jpeg = "https://p16-sign-va.tiktokcdn.com/a~tplv.jpeg?x=1"
    assert image_source(Image((heic, webp, jpeg), None, None)) == jpeg
    assert image_source(Image((heic, webp), None, None)) == heic


def page(scope: dict[str, object]) -> str:
    data = json.dumps({"__DEFAULT_SCOPE__": scope}).replace("/", "\\u002F")
    script = f'<script id="__UNIVERSAL_DATA_FOR_REHYDRATION__" type="application/json">{data}</script>'
    return f"<html>{script}</html>"


def test_parse_page_statuses() -> None:
    ok = parse_post_page(
        page({"webapp.video-detail": {"statusCode": 0, "itemInfo": {"itemStruct": {"id": "5"}}}})
    )
    assert ok.status_code == 0 and ok.item is not None and ok.item.post.id == "5"
    gone = parse_post_page(
        page({"webapp.video-detail": {"statusCode": 10204, "statusMsg": "item doesn't exist"}})
    )
    assert gone.item is None and gone.status_msg == "item doesn't exist"
    with pytest.raises(UpstreamError, match="no video detail"):
        parse_post_page(page({"webapp.app-context": {}}))
    with pytest.raises(UpstreamError, match="no post data"):
        parse_post_page("<html><body>nothing here</body></html>")


@pytest.mark.parametrize(
    ("status", "message", "error"),
    [
        (10221, "", UnavailableReason.DELETED),
        (0, "item doesn't exist", UnavailableReason.DELETED),
        (12345, "", None),
        (0, "", None),
    ],
)
def test_check_page(status: int, message: str, error: UnavailableReason | None) -> None:
    if error is None:
        with pytest.raises(UpstreamError):
            check_page(PostPage(status, message, None, "universal"))
    else:
        with pytest.raises(PostUnavailable) as info:
            check_page(PostPage(status, message, None, "universal"))
        assert info.value.reason is error


async def test_a_deleted_post_is_one_page_view_not_a_block(
    web: WebBackend, tiktok: TikTokEmulator, spool: Path
) -> None:
    # A post TikTok says is gone ("item doesn't exist") is a verdict: asking again from another session or
    # proxy would not change it, nor bench the proxy.
    deleted = BY_STATUS[Status.DELETED]
    with pytest.raises(PostUnavailable) as info:
        await web.fetch(link(deleted), Want.VIDEO, None, spool)
    assert info.value.reason is UnavailableReason.DELETED
    assert tiktok.page_views(deleted) == 1


async def test_the_www_player_url_of_a_rendition_is_never_fetched(
    web: WebBackend, tiktok: TikTokEmulator, spool: Path
) -> None:
    # Real UrlLists end with a www.tiktok.com/aweme/v1/play/ URL (yt-dlp #11034: broken); the emulator lists
    # it too and refuses it.
    await web.fetch(link(CLIP), Want.VIDEO, None, spool)
    listed = tiktok.item_struct(post(CLIP))["video"]["bitrateInfo"]
    assert all(
        r["PlayAddr"]["UrlList"][-1].startswith("https://www.tiktok.com/aweme/v1/play/") for r in listed
    )
    assert not [r for r in tiktok.requests if r.path.startswith("/aweme/")]
