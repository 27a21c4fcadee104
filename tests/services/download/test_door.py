"""TikTok's front door: the proof-of-work solver, the emulator's challenges, blocks, shells; formats."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import tempfile
from pathlib import Path

import httpx
import pytest

from bot.chat.errors import error_text
from bot.config import settings_from
from bot.upstreams import tiktok_sessions
from sandbox.blobs import media_file
from sandbox.catalogue import rounded
from sandbox.proxy import ForwardProxy
from sandbox.runner import Sandbox
from sandbox.tiktok import TikTokEmulator
from services.download.challenge import (
    Solver,
    answer_cookies,
    find_answer,
    read_challenge,
    solve_page,
)
from services.download.models import Quality, Want
from services.download.web import Codec, WebBackend, item_from_web, parse_post_page
from services.errors import ChallengeFailed, EmptyShell, IpBlocked, error_code
from services.metadata.models import post_from_web, profile_from_web
from tests.services.download.conftest import CLIP, HEVC, INSTANT, link


def b64(data: bytes, *, pad: bool = False) -> str:
    text = base64.b64encode(data).decode()
    return text if pad else text.rstrip("=")


def challenge_html(
    prefix: bytes, answer: int, *, rci: bool = True, extra: dict[str, object] | None = None
) -> str:
    """A challenge page as TikTok writes it, its target computed here with hashlib."""
    target = hashlib.sha256(prefix + str(answer).encode()).digest()
    data = {"v": {"a": b64(prefix), "b": "sha256", "c": b64(target)}, "s": "sig-1", "d": "", **(extra or {})}
    cs = b64(json.dumps(data).encode())
    html = f'<html><body><div class="x"></div><div id="cs" class="{cs}"></div>'
    html += '<p id="wci" class="_wafchallengeid"></p>'
    if rci:
        html += '<div class="waforiginalreid" id="rci"></div><div id="rs" class="rs-value=="></div>'
    return html + "<script>reload()</script></body></html>"


# --- the solver, against vectors computed independently ---


@pytest.mark.parametrize(
    ("prefix", "answer"), [(b"\x00" * 16, 0), (b"abc", 7), (b"sandbox-prefix", 123_456), (b"q", 1_000_000)]
)
def test_solver_finds_the_answer(prefix: bytes, answer: int) -> None:
    target = hashlib.sha256(prefix + str(answer).encode("ascii")).digest()
    assert find_answer(prefix, target) == answer


def test_solver_cookies() -> None:
    prefix = bytes(range(16))
    solution = solve_page(challenge_html(prefix, 4242, extra={"e": 1900000000}))
    assert solution is not None and solution.answer == 4242
    (name, value), (rci_name, rci_value) = solution.cookies
    assert (name, rci_name, rci_value) == ("_wafchallengeid", "waforiginalreid", "rs-value==")
    raw = base64.b64decode(value)
    assert b" " not in raw  # compact JSON
    data = json.loads(raw)
    assert base64.b64decode(data["d"]) == b"4242"
    # Every other field of C is kept as it was.
    target = hashlib.sha256(prefix + b"4242").digest()
    assert data == {
        "v": {"a": b64(prefix), "b": "sha256", "c": b64(target)},
        "s": "sig-1",
        "d": b64(b"4242", pad=True),
        "e": 1900000000,
    }


def test_solver_without_rci() -> None:
    solution = solve_page(challenge_html(b"p", 3, rci=False))
    assert solution is not None and [n for n, _ in solution.cookies] == ["_wafchallengeid"]


def test_not_a_challenge() -> None:
    assert solve_page("<html><body><div id='app'></div></body></html>") is None
    assert read_challenge('<script id="__UNIVERSAL_DATA_FOR_REHYDRATION__">{}</script>') is None


def test_unsolvable_and_malformed_challenges() -> None:
    prefix = b"p"
    target = hashlib.sha256(prefix + b"1000001").digest()  # outside the range a browser searches
    cs = b64(json.dumps({"v": {"a": b64(prefix), "c": b64(target)}}).encode())
    with pytest.raises(ChallengeFailed, match="no answer"):
        solve_page(f'<div id="cs" class="{cs}"></div><div id="wci" class="_wafchallengeid"></div>')
    with pytest.raises(ChallengeFailed, match="unreadable"):
        solve_page('<div id="cs" class="not base64 at all!"></div><div id="wci" class="w"></div>')
    short = b64(json.dumps({"v": {"a": "cA", "c": "cA"}}).encode())
    with pytest.raises(ChallengeFailed, match="SHA-256"):
        solve_page(f'<div id="cs" class="{short}"></div><div id="wci" class="w"></div>')
    with pytest.raises(ChallengeFailed, match="wci"):
        solve_page(f'<div id="cs" class="{cs}"></div>')


async def test_solver_counts_and_runs_off_the_loop() -> None:
    solver = Solver()
    challenge = read_challenge(challenge_html(b"loop", 600_000))
    assert challenge is not None
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    try:
        solution = await solver.solve(challenge)
    finally:
        task.cancel()
    assert solution.answer == 600_000
    assert ticks > 1  # the loop kept turning while the thread hashed
    assert (solver.met, solver.solved, solver.failed) == (1, 1, 0)
    assert answer_cookies(challenge, 600_000) == solution


# --- the emulator's door, verified server-side ---


async def test_a_wrong_or_replayed_answer_stays_challenged(
    tiktok: TikTokEmulator, tiktok_client: httpx.AsyncClient
) -> None:
    tiktok.set_door(challenge="always", max_answer=2000)
    url = f"https://www.tiktok.com/@_/video/{CLIP}"
    first = (await tiktok_client.get(url)).text
    challenge = read_challenge(first)
    assert challenge is not None and len(challenge.prefix) == 16
    good = solve_page(first)
    assert good is not None
    wrong = answer_cookies(challenge, good.answer + 1)
    again = await tiktok_client.get(url, headers={"Cookie": "; ".join(f"{n}={v}" for n, v in wrong.cookies)})
    assert read_challenge(again.text) is not None
    cookie = "; ".join(f"{n}={v}" for n, v in good.cookies)
    served = await tiktok_client.get(url, headers={"Cookie": cookie})
    assert read_challenge(served.text) is None and parse_post_page(served.text).item is not None
    replay = await tiktok_client.get(url, headers={"Cookie": cookie})
    assert read_challenge(replay.text) is not None
    # A challenge asks a fresh prefix every time.
    assert read_challenge(replay.text).prefix != challenge.prefix  # type: ignore[union-attr]
    assert (tiktok.door_log.passed, tiktok.door_log.rejected) == (1, 2)


async def test_the_rci_cookie_is_checked(tiktok: TikTokEmulator, tiktok_client: httpx.AsyncClient) -> None:
    tiktok.set_door(challenge="always", max_answer=100)
    url = f"https://www.tiktok.com/@_/video/{CLIP}"
    good = solve_page((await tiktok_client.get(url)).text)
    assert good is not None
    only_answer = f"{good.cookies[0][0]}={good.cookies[0][1]}"
    assert read_challenge((await tiktok_client.get(url, headers={"Cookie": only_answer})).text) is not None


async def test_a_download_through_an_always_challenging_door(
    web: WebBackend, tiktok: TikTokEmulator, spool: Path
) -> None:
    tiktok.set_door(challenge="always")  # the real range: up to a million hashes
    got = await web.fetch(link(CLIP), Want.VIDEO, None, spool)
    assert got.files[0].path.read_bytes() == media_file("clip.mp4")
    assert (tiktok.door_log.challenged, tiktok.door_log.passed, tiktok.door_log.rejected) == (1, 1, 0)
    assert (web.solver.met, web.solver.solved) == (1, 1)
    assert tiktok.page_views(CLIP) == 2
    # The answer cookies lived for the page request only.
    assert [(h.status, h.challenge_cookie) for h in tiktok.media_log if h.kind == "video"] == [(200, False)]


async def test_still_challenged_after_one_solve_is_a_failure(
    web: WebBackend, tiktok: TikTokEmulator, spool: Path
) -> None:
    tiktok.set_door(max_answer=50)
    tiktok.fault_next("challenge", count=6)  # the solved retry is challenged again, in every session
    with pytest.raises(ChallengeFailed, match="still challenged"):
        await web.fetch(link(CLIP), Want.VIDEO, None, spool)
    assert tiktok.page_views(CLIP) == 6  # three sessions, each one solve and no loop
    assert web.door_failures == {"challenge_failed": 3}
    assert tiktok.media_log == []


async def test_first_visit_challenges(web: WebBackend, tiktok: TikTokEmulator, spool: Path) -> None:
    tiktok.set_door(challenge="first", max_answer=1000)
    await web.fetch(link(CLIP), Want.VIDEO, None, spool)
    assert tiktok.door_log.challenged == 1 and tiktok.door_log.passed == 1


async def test_an_empty_shell_is_retried_in_a_fresh_session(
    web: WebBackend, tiktok: TikTokEmulator, spool: Path
) -> None:
    tiktok.fault_next("empty_shell")
    got = await web.fetch(link(CLIP), Want.VIDEO, None, spool)
    assert got.files and web.door_failures == {"empty_shell": 1}
    tiktok.fault_next("empty_shell", count=3)
    with pytest.raises(EmptyShell):
        await web.fetch(link(CLIP), Want.VIDEO, None, spool.parent)


async def test_a_blocked_address_is_a_block_not_a_deletion(
    web: WebBackend, tiktok: TikTokEmulator, spool: Path
) -> None:
    tiktok.set_door(blocked={"127.0.0.1"})
    with pytest.raises(IpBlocked):
        await web.fetch(link(CLIP), Want.VIDEO, None, spool)
    assert tiktok.door_log.blocked == 3 and tiktok.media_log == []


async def test_door_control_over_http(tiktok: TikTokEmulator) -> None:
    async with httpx.AsyncClient(base_url=tiktok.base_url) as client:
        answer = await client.post(
            "/_control/door", json={"challenge": "every", "every": 5, "blocked": ["127.0.0.2"]}
        )
        assert answer.status_code == 200 and answer.json()["door"]["blocked"] == ["127.0.0.2"]
        assert (await client.post("/_control/door", json={"challenge": "sometimes"})).status_code == 400
    assert tiktok.door.challenge == "every" and tiktok.door.every == 5


# --- formats ---


@pytest.mark.parametrize(
    ("quality", "variant", "height"),
    [(Quality.COMPATIBLE, "lowest_540_0", 960), (Quality.BEST, "normal_1080_0", 1920)],
)
async def test_quality_and_hvc1(
    web: WebBackend, tiktok: TikTokEmulator, spool: Path, quality: Quality, variant: str, height: int
) -> None:
    got = await web.fetch(link(HEVC), Want.VIDEO, None, spool, quality=quality)
    assert got.files[0].height == height
    assert [(h.variant, h.status) for h in tiktok.media_log if h.kind == "video"] == [(variant, 200)]
    # The page lists an hvc1 copy first for each H.265 rendition; it is never fetched.
    page = (await web.read_page(HEVC)).item
    assert page is not None and all("/media-video-hvc1/" not in u for r in page.renditions for u in r.urls)


async def test_best_never_takes_bytevc2(web: WebBackend, tiktok: TikTokEmulator, spool: Path) -> None:
    got = await web.fetch(link(CLIP), Want.VIDEO, None, spool, quality=Quality.BEST)
    # CLIP's largest is bytevc2 576x1024, then H.265 720x1280: best takes the H.265 one.
    assert [h.variant for h in tiktok.media_log if h.kind == "video"] == ["normal_720_0"]
    assert got.files[0].height == 1280


def test_formats_as_the_real_site_serves_them() -> None:
    item = item_from_web(
        {
            "id": "1",
            "isContentClassified": True,
            "video": {
                "playAddr": "https://www.tiktok.com/aweme/v1/play/?video_id=1",
                "bitrateInfo": [
                    {
                        "CodecType": "h265_hvc1",
                        "PlayAddr": {
                            "UrlKey": "v_bytevc1_1080p_1",
                            "Width": 1080,
                            "Height": 1920,
                            "UrlList": [
                                "https://v16-webapp-prime.tiktok.com/video/tos/a/b/media-video-hvc1/1/x/",
                                "https://v19-webapp-prime.tiktok.com/video/tos/a/b/1/x/",
                            ],
                        },
                    },
                    {
                        "CodecType": "h265_hvc1",
                        "PlayAddr": {"UrlList": ["https://v16-webapp-prime.tiktok.com/media-video-hvc1/2/"]},
                    },
                ],
            },
        }
    )
    assert [(r.codec, r.urls) for r in item.renditions] == [
        (Codec.H265, ("https://v19-webapp-prime.tiktok.com/video/tos/a/b/1/x/",))
    ]
    assert item.play_url is None  # on www.tiktok.com: dropped (yt-dlp #11034)
    assert item.age_restricted is False  # classified, but the video is there
    assert item_from_web({"id": "2", "isContentClassified": True}).age_restricted is True


# --- exact counters ---


def test_stats_v2_wins_over_rounded_stats() -> None:
    item = {
        "id": "1",
        "stats": {"playCount": 427700, "diggCount": 31300, "commentCount": 99},
        "statsV2": {"playCount": "427682", "diggCount": "31337", "commentCount": ""},
    }
    stats = post_from_web(item).stats
    assert (stats.views, stats.likes, stats.comments) == (427_682, 31_337, 99)  # an empty string: stats
    profile = profile_from_web(
        {
            "user": {"uniqueId": "a"},
            "stats": {"followerCount": 427700},
            "statsV2": {"followerCount": "427682"},
        }
    )
    assert profile.followers == 427_682
    assert rounded(427_682) == 427_700 and rounded(99) == 99


async def test_the_web_page_counts_are_exact(web: WebBackend, tiktok: TikTokEmulator, spool: Path) -> None:
    page = await web.read_page(HEVC)
    assert page.item is not None and page.item.post.stats.views == 427_682  # the page's `stats` says 427700


# --- 10204 per proxy ---


async def test_10204_on_one_proxy_is_served_through_another(sandbox: Sandbox) -> None:
    tiktok = sandbox.get(TikTokEmulator)
    tiktok.set_door(blocked={"127.0.0.2"})  # TikTok blocks the first proxy's address from the post
    async with ForwardProxy(source="127.0.0.2") as first, ForwardProxy(source="127.0.0.3") as second:
        config = settings_from({**sandbox.env(), "DOWNLOAD__PROXIES": f"{first.url},{second.url}"})
        pool = tiktok_sessions(config)
        web = WebBackend(sessions=pool, retry=INSTANT)
        try:
            spool = Path(tempfile.mkdtemp())
            got = await web.fetch(link(CLIP), Want.VIDEO, None, spool)
            assert got.files[0].path.read_bytes() == media_file("clip.mp4")
            assert first.count("www.tiktok.com") == 1 and first.count("v16-webapp-prime.tiktok.com") == 0
            assert second.count("www.tiktok.com") == 1 and second.count("v16-webapp-prime.tiktok.com") == 1
            assert pool.stats().benched == (f"http://127.0.0.1:{first.port}",)
            assert web.door_failures == {"ip_blocked": 1}
            # Both proxies blocked: the answer is the block, never "deleted".
            tiktok.set_door(blocked={"127.0.0.2", "127.0.0.3"})
            pool.egresses[0].benched_until = 0.0
            again = Path(tempfile.mkdtemp())
            with pytest.raises(IpBlocked) as info:
                await web.fetch(link(CLIP), Want.VIDEO, None, again)
            assert error_code(info.value) == "ip_blocked"
            assert "not a deleted post" in error_text(info.value, "en")
            assert "deleted" not in error_text(info.value, "en").replace("not a deleted post", "")
            assert tiktok.door_log.blocked == 3
        finally:
            await pool.aclose()
