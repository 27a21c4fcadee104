"""The TikTok and TTSave emulators speak their protocols: pages, cookies, Range, redirects, control API."""

from __future__ import annotations

import base64
import json
import random
import re
from collections.abc import AsyncIterator

import httpx
import pytest

from sandbox.blobs import media_file
from sandbox.catalogue import CATALOGUE, T0, post_id_at
from sandbox.faults import Target
from sandbox.runner import Sandbox, all_emulators
from sandbox.tiktok import HOME, TikTokEmulator
from sandbox.ttsave import BOUNDARY, TTSaveEmulator, _rechunk
from services.download.multipart import MultipartParser, PartData, PartStart
from services.http import make_client, parse_routes

CLIP = post_id_at(T0, 1)
BIG = post_id_at(T0 + 86_400, 2)
SLIDES = post_id_at(T0 + 2 * 86_400, 3)


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox([TikTokEmulator(), TTSaveEmulator()]) as running:
        yield running


@pytest.fixture
async def client(sandbox: Sandbox) -> AsyncIterator[httpx.AsyncClient]:
    """A routed client that follows nothing and keeps no cookies of its own between tests."""
    async with make_client(routes=parse_routes(sandbox.env()["UPSTREAM_ROUTES"]), browser=True) as routed:
        yield routed


def rehydration(html: str) -> dict[str, object]:
    match = re.search(
        r'<script id="__UNIVERSAL_DATA_FOR_REHYDRATION__" type="application/json">(.*?)</script>', html
    )
    assert match is not None
    data: dict[str, object] = json.loads(match.group(1))
    return data


def test_registered_in_the_sandbox() -> None:
    kinds = {type(e) for e in all_emulators()}
    assert {TikTokEmulator, TTSaveEmulator} <= kinds


async def test_sandbox_env(sandbox: Sandbox) -> None:
    env = sandbox.env()
    ttsave = sandbox.get(TTSaveEmulator)
    assert env["TTSAVE__URL"] == f"{ttsave.base_url}/api/v3"
    routes = json.loads(env["UPSTREAM_ROUTES"])
    tiktok = sandbox.get(TikTokEmulator)
    for host in ("www.tiktok.com", "vm.tiktok.com", "vt.tiktok.com", "m.tiktok.com", "*.tiktokcdn.com"):
        assert routes[host] == tiktok.base_url


async def test_post_page_format(client: httpx.AsyncClient) -> None:
    response = await client.get(f"https://www.tiktok.com/@_/video/{CLIP}")
    assert response.status_code == 200
    assert "</b>" not in response.text.split("<title>")[1]  # the caption's markup is escaped in the HTML too
    detail = rehydration(response.text)["__DEFAULT_SCOPE__"]["webapp.video-detail"]  # type: ignore[index]
    assert (detail["statusCode"], detail["statusMsg"]) == (0, "")
    item = detail["itemInfo"]["itemStruct"]
    assert item["id"] == CLIP and item["author"]["uniqueId"] == "sandbox.cook"
    assert item["desc"] == CATALOGUE.posts[CLIP].description
    video = item["video"]
    assert {r["CodecType"] for r in video["bitrateInfo"]} == {"h264", "h265_hvc1", "bytevc2"}
    first = video["bitrateInfo"][0]["PlayAddr"]
    assert set(first) >= {"UrlList", "DataSize", "Width", "Height", "UrlKey"}
    assert "bytevc2" in first["UrlKey"]
    assert video["playAddr"].startswith("https://v16-webapp-prime.tiktok.com/")
    assert "tk=tt_chain_token" in video["playAddr"]
    assert item["music"]["playUrl"].startswith("https://sf16-ies-music-va.tiktokcdn.com/")
    assert "\\u002F" in response.text  # URLs escaped the way TikTok escapes them
    cookie = response.headers["set-cookie"]
    assert "tt_chain_token=" in cookie and "Domain=.tiktok.com" in cookie


async def test_photo_page_has_heic_webp_and_jpeg(client: httpx.AsyncClient) -> None:
    response = await client.get(f"https://www.tiktok.com/@travel_bug-1/photo/{SLIDES}")
    item = rehydration(response.text)["__DEFAULT_SCOPE__"]["webapp.video-detail"]["itemInfo"]["itemStruct"]  # type: ignore[index]
    images = item["imagePost"]["images"]
    assert len(images) == 3
    assert [u.split("?")[0].rsplit(".", 1)[1] for u in images[0]["imageURL"]["urlList"]] == [
        "heic",
        "webp",
        "jpeg",
    ]
    assert item["video"]["duration"] == 0


async def test_cdn_wants_the_cookie_and_referer_and_honours_range(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    page = await client.get(f"https://www.tiktok.com/@_/video/{CLIP}")
    token = page.cookies.get("tt_chain_token") or re.search(
        r"tt_chain_token=([^;]+)", page.headers["set-cookie"]
    )
    assert token
    value = token if isinstance(token, str) else token.group(1)
    url = rehydration(page.text)["__DEFAULT_SCOPE__"]["webapp.video-detail"]["itemInfo"]["itemStruct"][
        "video"
    ][  # type: ignore[index]
        "playAddr"
    ]
    referer = {"Referer": "https://www.tiktok.com/"}
    without = await client.get(url, headers={**referer, "Cookie": "tt_chain_token=forged"})
    assert without.status_code == 403
    no_referer = await client.get(url, headers={"Cookie": f"tt_chain_token={value}"})
    assert no_referer.status_code == 403
    full = await client.get(url, headers={**referer, "Cookie": f"tt_chain_token={value}"})
    clip = media_file("clip.mp4")
    assert (full.status_code, full.content, full.headers["accept-ranges"]) == (200, clip, "bytes")
    part = await client.get(
        url, headers={**referer, "Cookie": f"tt_chain_token={value}", "Range": "bytes=10-19"}
    )
    assert (part.status_code, part.content, part.headers["content-range"]) == (
        206,
        clip[10:20],
        f"bytes 10-19/{len(clip)}",
    )
    tail = await client.get(
        url, headers={**referer, "Cookie": f"tt_chain_token={value}", "Range": "bytes=-5"}
    )
    assert tail.content == clip[-5:]
    bad = await client.get(
        url, headers={**referer, "Cookie": f"tt_chain_token={value}", "Range": "bytes=999999-"}
    )
    assert bad.status_code == 416
    tiktok = sandbox.get(TikTokEmulator)
    assert [h.status for h in tiktok.media_log] == [403, 403, 200, 206, 206, 416]
    assert tiktok.downloads(CLIP) == 3


async def test_large_renditions_are_synthesised_and_streamed(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    tiktok = sandbox.get(TikTokEmulator)
    page = await client.get(f"https://www.tiktok.com/@_/video/{BIG}")
    value = re.search(r"tt_chain_token=([^;]+)", page.headers["set-cookie"])
    assert value is not None
    post = CATALOGUE.posts[BIG]
    url = tiktok.video_url(post, "adapt_2160_1")
    headers = {"Referer": "https://www.tiktok.com/", "Cookie": f"tt_chain_token={value.group(1)}"}
    async with client.stream("GET", url, headers=headers) as response:
        assert response.headers["content-length"] == str(64 * 1000 * 1000)
        first = await anext(response.aiter_raw())
    blob = TikTokEmulator.rendition_blob(post, post.renditions[0])
    assert first == b"".join(blob.chunks(0, len(first)))
    ranged = await client.get(url, headers={**headers, "Range": "bytes=63999990-"})
    assert ranged.content == b"".join(blob.chunks(63_999_990))


@pytest.mark.parametrize(
    ("url", "status", "target"),
    [
        ("https://vm.tiktok.com/ZMclip01/", 301, f"https://www.tiktok.com/@sandbox.cook/video/{CLIP}?"),
        ("https://vt.tiktok.com/ZTslide01", 301, f"https://www.tiktok.com/@travel_bug-1/photo/{SLIDES}?"),
        ("https://www.tiktok.com/t/ZSbig0001/", 302, f"https://www.tiktok.com/@sandbox.cook/video/{BIG}?"),
        ("https://vm.tiktok.com/ZMdead000/", 301, HOME),
        ("https://vm.tiktok.com/NoSuchCode/", 301, HOME),
        (
            "https://m.tiktok.com/v/" + CLIP + ".html",
            301,
            f"https://www.tiktok.com/@sandbox.cook/video/{CLIP}",
        ),
    ],
)
async def test_short_links(client: httpx.AsyncClient, url: str, status: int, target: str) -> None:
    response = await client.get(url)
    assert response.status_code == status
    assert response.headers["location"].startswith(target)
    if target != HOME and "/t/" not in url and "/v/" not in url:
        assert "share_item_id=" in response.headers["location"]
        assert response.text.startswith('<a href="https://www.tiktok.com/@')


async def test_fault_control_over_http(client: httpx.AsyncClient, sandbox: Sandbox) -> None:
    tiktok = sandbox.get(TikTokEmulator)
    async with httpx.AsyncClient(base_url=tiktok.base_url) as control:
        queued = await control.post("/_control/faults", json={"kind": "page_500", "count": 2})
        assert queued.json()["queued"] == [{"kind": "page_500", "count": 2}]
        unknown = await control.post("/_control/faults", json={"kind": "nonsense"})
        assert unknown.status_code == 400 and "page_500" in unknown.json()["kinds"]
        assert (await control.post("/_control/faults", json={"mode": "page_500"})).status_code == 400
        assert (await client.get(f"https://www.tiktok.com/@_/video/{CLIP}")).status_code == 500
        listed = await control.get("/_control/faults")
        assert listed.json()["queued"][0]["count"] == 1
        assert (await control.delete("/_control/faults")).json() == {"queued": []}
        assert (await client.get(f"https://www.tiktok.com/@_/video/{CLIP}")).status_code == 200
        log = (await control.get("/_control/requests")).json()["requests"]
        assert [(r["host"], r["status"]) for r in log] == [("www.tiktok.com", 500), ("www.tiktok.com", 200)]


def test_fault_names_are_checked() -> None:
    emu = TTSaveEmulator()
    with pytest.raises(ValueError, match="unknown fault"):
        emu.fault_next("explode")
    with pytest.raises(ValueError, match="count"):
        emu.fault_next("500", count=0)
    emu.fault_next("500", count=2)
    assert emu.faults.take(Target(), ["slow"]) is None
    assert emu.faults.take(Target(), ["500"]) is not None and emu.faults.queued[0].count == 1


async def test_ttsave_stream(sandbox: Sandbox) -> None:
    ttsave = sandbox.get(TTSaveEmulator)
    async with httpx.AsyncClient(base_url=ttsave.env()["TTSAVE__URL"]) as api:
        assert (await api.post("/ping")).text == "pong"
        response = await api.post(
            "/download",
            json={"url": f"https://www.tiktok.com/@x/video/{SLIDES}", "download_content_type": "ORIGINAL"},
        )
    assert response.headers["content-type"] == f"multipart/x-mixed-replace; boundary={BOUNDARY}"
    meta = response.headers["content-meta"]
    assert meta.startswith('"') and meta.endswith('"')  # quoted, as the provider documents it
    decoded = json.loads(base64.b64decode(meta.strip('"')))
    assert decoded["desc"] == CATALOGUE.posts[SLIDES].description
    parser = MultipartParser.from_content_type(response.headers["content-type"])
    events = parser.feed(response.content)
    parser.close()
    starts = [e for e in events if isinstance(e, PartStart)]
    assert [(s.filename, s.content_type) for s in starts] == [
        ("image_1.jpg", "image/jpeg"),
        ("image_2.jpg", "image/jpeg"),
        ("image_3.jpg", "image/jpeg"),
        ("audio.mp3", "audio/mpeg"),
    ]
    body = b"".join(e.data for e in events if isinstance(e, PartData))
    assert body == b"".join(media_file(n) for n in ["photo1.jpg", "photo2.jpg", "photo3.jpg", "sound.mp3"])
    assert ttsave.downloads(SLIDES) == 1


async def test_ttsave_video_only_renders_slideshows(sandbox: Sandbox) -> None:
    ttsave = sandbox.get(TTSaveEmulator)
    async with httpx.AsyncClient(base_url=ttsave.env()["TTSAVE__URL"]) as api:
        response = await api.post(
            "/download",
            json={"url": "https://vt.tiktok.com/ZTslide01/", "download_content_type": "VIDEO_ONLY"},
        )
    assert b'filename="slideshow.mp4"' in response.content and b"image/jpeg" not in response.content


@pytest.mark.parametrize(
    ("mode", "status", "body"),
    [
        ("500", 500, {"detail": "Failed to save the file"}),
        (
            "error",
            500,
            {"message": "Internal Server Error", "detail": "Error: simulated failure in the sandbox"},
        ),
        ("no_files", 400, {"detail": "No files available for download"}),
        ("429", 429, {"detail": "Too Many Requests"}),
    ],
)
async def test_ttsave_error_bodies(sandbox: Sandbox, mode: str, status: int, body: dict[str, object]) -> None:
    ttsave = sandbox.get(TTSaveEmulator)
    ttsave.fault_next(mode)
    async with httpx.AsyncClient(base_url=ttsave.env()["TTSAVE__URL"]) as api:
        response = await api.post(
            "/download",
            json={"url": f"https://www.tiktok.com/@x/video/{CLIP}", "download_content_type": "ORIGINAL"},
        )
    assert (response.status_code, response.json()) == (status, body)


async def test_ttsave_validation(sandbox: Sandbox) -> None:
    ttsave = sandbox.get(TTSaveEmulator)
    async with httpx.AsyncClient(base_url=ttsave.env()["TTSAVE__URL"]) as api:
        missing = await api.post("/download", json={"url": "https://vm.tiktok.com/ZMclip01/"})
        not_json = await api.post("/download", content=b"url=x")
    assert missing.json() == {
        "message": "Validation Error",
        "detail": [
            {"loc": ["body", "download_content_type"], "msg": "field required", "type": "value_error.missing"}
        ],
    }
    assert not_json.status_code == 422


@pytest.mark.parametrize("size", [1, 7, 64, 16381])
def test_ttsave_rechunk_regroups_into_exact_writes(size: int) -> None:
    rng = random.Random(size)
    for _ in range(200):
        pieces = [rng.randbytes(rng.randrange(0, 3 * size + 5)) for _ in range(rng.randrange(0, 8))]
        out = [bytes(p) for p in _rechunk(iter(pieces), size)]
        assert b"".join(out) == b"".join(pieces)
        assert all(len(piece) == size for piece in out[:-1])
        assert not out or 0 < len(out[-1]) <= size


async def test_the_www_player_url_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.get(f"https://www.tiktok.com/@_/video/{CLIP}")
    item = rehydration(response.text)["__DEFAULT_SCOPE__"]["webapp.video-detail"]["itemInfo"]["itemStruct"]  # type: ignore[index]
    last = item["video"]["bitrateInfo"][0]["PlayAddr"]["UrlList"][-1]
    assert last.startswith("https://www.tiktok.com/aweme/v1/play/?") and f"item_id={CLIP}" in last
    assert (await client.get(last)).status_code == 403


async def test_a_mobile_browser_gets_the_reflow_scope(client: httpx.AsyncClient) -> None:
    iphone = (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/26.0 Mobile/15E148 Safari/604.1"
    )
    response = await client.get(f"https://www.tiktok.com/@_/video/{CLIP}", headers={"User-Agent": iphone})
    scope = rehydration(response.text)["__DEFAULT_SCOPE__"]
    assert "webapp.video-detail" not in scope  # type: ignore[operator]
    assert scope["webapp.reflow.video.detail"]["itemInfo"]["itemStruct"]["id"] == CLIP  # type: ignore[index]
