"""Our parsers against payloads real upstreams sent (tests/fixtures/real, sources in its README).

Our emulators are written by us; these payloads were not. Each test checks what a user would see: the
post's id, author, caption and exact counts, the rendition picked, the sound's URL, why a post is unavailable.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from services.download.models import Quality
from services.download.web import (
    Codec,
    PostPage,
    check_page,
    image_source,
    parse_post_page,
    ranked_renditions,
    video_sources,
)
from services.errors import IpBlocked, PostUnavailable, UnavailableReason
from services.links import LinkKind, find_links, parse_link
from services.metadata.models import post_from_aweme, post_from_web, profile_from_mobile, profile_from_web

REAL = Path(__file__).resolve().parent.parent / "fixtures" / "real"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((REAL / name).read_text(encoding="utf-8"))
    return data


def universal_page(detail: dict[str, Any]) -> str:
    """A post page as TikTok serves it: the rehydration script among others."""
    scope = {"__DEFAULT_SCOPE__": {"webapp.app-context": {"language": "en"}, "webapp.video-detail": detail}}
    return (
        '<!DOCTYPE html><html lang="en"><head><title>TikTok</title></head><body>'
        '<script id="__UNIVERSAL_DATA_FOR_REHYDRATION__" type="application/json">'
        f"{json.dumps(scope, ensure_ascii=False)}</script>"
        '<script id="api-domains" type="application/json">{"tiktok":"www.tiktok.com"}</script></body></html>'
    )


def sigi_page(item: dict[str, Any]) -> str:
    """The same item as a 2022-23 SIGI_STATE page: the author named by uniqueId, the account in UserModule."""
    author = item["author"]
    state = {
        "ItemModule": {item["id"]: {**item, "author": author["uniqueId"]}},
        "UserModule": {"users": {author["uniqueId"]: author}},
        "VideoPage": {"statusCode": 0, "statusMsg": ""},
    }
    return f'<html><script id="SIGI_STATE" type="application/json">{json.dumps(state)}</script></html>'


ITEM_2025 = load("web_item_video_2025.json")["item"]
ITEM_2022 = load("web_item_video_2022.json")["item"]


# --- a 2025 video item: five renditions, 1080p only in H.265, stats and statsV2 ---


def test_2025_item_post_facts() -> None:
    page = parse_post_page(
        universal_page({"statusCode": 0, "statusMsg": "", "itemInfo": {"itemStruct": ITEM_2025}})
    )
    item = check_page(page)
    post = item.post
    assert page.source == "universal"
    assert post.id == "7513039993741397256"
    assert post.author == "zg.520" and post.author_name == "小邹旅行🇨🇳"
    assert post.url == "https://www.tiktok.com/@zg.520/video/7513039993741397256"
    assert post.description.startswith("高铁穿过莆田市湄洲湾跨海特大桥#china")
    assert post.hashtags == ("china", "中国高铁🚅")
    assert post.created == datetime.fromtimestamp(1749265942, tz=UTC)
    assert (post.duration, post.width, post.height) == (18.0, 576, 1024)
    assert (post.stats.views, post.stats.likes, post.stats.comments, post.stats.shares, post.stats.saves) == (
        1_900_000,
        68_300,
        1_502,
        2_528,
        5_012,
    )
    assert post.music is not None
    assert (post.music.title, post.music.author, post.music.duration) == (
        "原声 - Youmile",
        "HJS-Mechanical Equipment",
        17.0,
    )
    assert not post.is_photo and post.image_count == 0
    assert post.cover is not None and post.cover.startswith("https://p19-common-sign.tiktokcdn-us.com/")


def test_2025_item_renditions_and_sound() -> None:
    item = check_page(
        parse_post_page(universal_page({"statusCode": 0, "itemInfo": {"itemStruct": ITEM_2025}}))
    )
    # Five entries of bitrateInfo; CodecType "h265_hvc1" is H.265 although its URLs lack /media-video-hvc1/.
    assert [(r.codec, r.width, r.height, r.bitrate) for r in item.renditions] == [
        (Codec.H265, 1080, 1920, 873954),
        (Codec.H265, 720, 1280, 417322),
        (Codec.H264, 576, 1024, 404677),
        (Codec.H265, 576, 1024, 337533),
        (Codec.H264, 576, 1024, 161190),
    ]
    # Each UrlList holds a third URL on www.tiktok.com/aweme/v1/play/: never fetched (yt-dlp #11034).
    assert all(len(r.urls) == 2 for r in item.renditions)
    assert all("www.tiktok.com" not in u for r in item.renditions for u in r.urls)
    assert item.renditions[0].size == 2001466

    compatible = ranked_renditions(item, None)
    assert [(r.codec, r.bitrate) for r in compatible] == [(Codec.H264, 404677)]  # H.264 tops out at 576p here
    best = ranked_renditions(item, None, Quality.BEST)
    assert [(r.codec, r.height) for r in best] == [(Codec.H265, 1920), (Codec.H264, 1024)]
    # Under a 900 kB limit the 926,762-byte H.264 copy does not fit: the 369,147-byte one does.
    assert [r.size for r in ranked_renditions(item, 900_000)] == [369147]

    sources = video_sources(item, None)
    assert sources[0].url.startswith("https://v16-webapp-prime.us.tiktok.com/video/tos/alisg/")
    assert "okDJOZA4iAtpOyxEBY7oakriIOvBhCKDvVECE" in sources[0].url and sources[0].size == 926762
    assert sources[-1].label == "downloadAddr"  # watermarked: the last resort
    assert item.music_url is not None and "mime_type=audio_mpeg" in item.music_url
    assert item.music_url.startswith("https://v19.tiktokcdn-us.com/")


def test_2025_item_on_the_mobile_page_and_without_playaddr() -> None:
    # Mobile browsers get the same detail under "webapp.reflow.video.detail".
    detail = {"statusCode": 0, "itemInfo": {"itemStruct": ITEM_2025}}
    scope = {"__DEFAULT_SCOPE__": {"webapp.reflow.video.detail": detail}}
    html = f'<script id="__UNIVERSAL_DATA_FOR_REHYDRATION__">{json.dumps(scope)}</script>'
    assert check_page(parse_post_page(html)).post.id == "7513039993741397256"
    # Without bitrateInfo and the playAddr string, PlayAddrStruct still says where the video is.
    video = {
        k: v for k, v in ITEM_2025["video"].items() if k not in ("bitrateInfo", "playAddr", "downloadAddr")
    }
    item = check_page(
        parse_post_page(
            universal_page({"statusCode": 0, "itemInfo": {"itemStruct": {**ITEM_2025, "video": video}}})
        )
    )
    assert item.play_url == ITEM_2025["video"]["PlayAddrStruct"]["UrlList"][0]
    assert [s.label for s in video_sources(item, None)] == ["playAddr"]


def test_2025_item_hashtags_from_challenges_alone() -> None:
    # Real challenges carry the tag as `title`; without textExtra the caption's regex would cut "中国高铁🚅".
    item = {k: v for k, v in ITEM_2025.items() if k != "textExtra"}
    assert post_from_web(item).hashtags == ("china", "中国高铁🚅")


def test_2025_item_through_sigi_state() -> None:
    page = parse_post_page(sigi_page(ITEM_2025), "7513039993741397256")
    item = check_page(page)
    assert page.source == "sigi"
    assert (item.post.author, item.post.author_name) == ("zg.520", "小邹旅行🇨🇳")
    assert item.post.stats.likes == 68_300 and len(item.renditions) == 5


def test_2025_item_links_are_found() -> None:
    post = post_from_web(ITEM_2025)
    link = parse_link(post.url)
    assert link is not None and link.kind is LinkKind.POST and link.post_id == "7513039993741397256"
    assert link.username == "zg.520"
    # As a user pastes it: a share link with TikTok's tracking query, in a sentence.
    text = f"look {post.url}?is_from_webapp=1&sender_device=pc&web_id=7563057285290116614 wow"
    found = find_links(text)
    assert [(f.kind, f.post_id) for f in found] == [(LinkKind.POST, "7513039993741397256")]


# Links as real users and tools met them: Danbooru's TikTok source tests (a vt.tiktok.com code and where it
# redirected, profile links with share tracking), yt-dlp's TikTokIE tests and issue threads.
REAL_LINKS = [
    (
        "https://www.tiktok.com/@pyromannce/photo/7584709238878915858?_r=1&_t=ZS-93TCD3c5ooM",
        LinkKind.POST,
        "7584709238878915858",
    ),
    ("https://vt.tiktok.com/ZSa9V7ert/", LinkKind.SHORT, "ZSa9V7ert"),
    ("https://www.tiktok.com/t/ZSa9V7ert/", LinkKind.SHORT, "ZSa9V7ert"),
    ("https://www.tiktok.com/@ajmarekart?_t=ZM-8wmxRtoZXjq&_r=1", LinkKind.USER, "ajmarekart"),
    ("https://www.tiktok.com/@h.panda_12", LinkKind.USER, "h.panda_12"),
    (
        "https://www.tiktok.com/@leenabhushan/video/6748451240264420610?is_from_webapp=1&sender_device=pc",
        LinkKind.POST,
        "6748451240264420610",
    ),
    ("https://m.tiktok.com/v/6606727368545406213.html", LinkKind.POST, "6606727368545406213"),
    ("https://www.tiktok.com/embed/v2/7072160744656489730", LinkKind.POST, "7072160744656489730"),
    ("https://www.tiktok.com/@i/video/7635740819638488342", LinkKind.POST, "7635740819638488342"),
]


@pytest.mark.parametrize(("url", "kind", "key"), REAL_LINKS)
def test_real_links(url: str, kind: LinkKind, key: str) -> None:
    (link,) = find_links(f"глянь {url} !")
    assert link.kind is kind
    assert key in (link.post_id, link.code, link.username)


def test_a_photo_cdn_url_is_not_a_post_link() -> None:
    cdn = (
        "https://p16-common-sign.tiktokcdn-us.com/tos-useast5-i-photomode-tx/c997051aa88446328e44de163d83a30c"
        "~tplv-photomode-image.jpeg?dr=9616&x-expires=1774238400&x-signature=mnDyZBX35%2BTC4y8Uvno95%2FiewDU%3D"
    )
    assert find_links(cdn) == [] and parse_link(cdn) is None


# --- a 2022 item: int counters without statsV2, PlayAddr without Width/Height ---


def test_2022_item_without_statsv2_and_sizes() -> None:
    item = check_page(
        parse_post_page(universal_page({"statusCode": 0, "itemInfo": {"itemStruct": ITEM_2022}}))
    )
    post = item.post
    assert (post.id, post.author, post.description) == (
        "7112752507037715738",
        "lilygumi",
        "I love this song 🫣",
    )
    assert (post.stats.views, post.stats.likes, post.stats.comments, post.stats.shares) == (
        29700,
        4710,
        51,
        28,
    )
    assert post.stats.saves is None  # collectCount was not sent: not a zero
    assert post.music is not None and post.music.author == "bella & gemma"
    (rendition,) = item.renditions
    assert (rendition.codec, rendition.width, rendition.height, rendition.size) == (
        Codec.H264,
        None,
        None,
        1360126,
    )
    assert len(rendition.urls) == 2  # the same URL twice in UrlList
    sources = video_sources(item, None)
    assert len(sources) == 1  # rendition, playAddr and downloadAddr are one URL: fetched once
    assert (
        item.music_url
        == "https://sf16-ies-music-va.tiktokcdn.com/obj/musically-maliva-obj/7034890328813472517.mp3"
    )


# --- a photo post (slideshow) ---


def test_2023_image_post_images_in_order() -> None:
    image_post = load("web_image_post_2023.json")["imagePost"]
    # The imagePost is TikTok's; the item around it (id, author, sound) is ours.
    item_struct = {
        "id": "7200000000000000001",
        "author": {"uniqueId": "someone"},
        "music": {"playUrl": ITEM_2022["music"]["playUrl"], "title": "original sound"},
        "imagePost": image_post,
    }
    item = check_page(
        parse_post_page(universal_page({"statusCode": 0, "itemInfo": {"itemStruct": item_struct}}))
    )
    assert item.post.is_photo and item.post.image_count == 2
    assert [(i.width, i.height, len(i.urls)) for i in item.images] == [(1399, 1080, 2), (None, None, 1)]
    picked = [image_source(i) for i in item.images]
    assert [p.split("/")[3] for p in picked] == ["tos-useast5-i-photomode-tx"] * 2
    assert "f7cf550d212e450e8db0190589ba292e~tplv-photomode-image.jpeg" in picked[0]
    assert "7f496642d88540e3abb3c377629bd049" in picked[1]
    assert picked[0].startswith("https://p19-sign.tiktokcdn-us.com/")  # the page's "\u002F" are slashes
    assert item.music_url is not None and item.music_url.endswith(".mp3")


# --- webapp.user-detail userInfo (the shape EnsembleData /tt/user/info returns as data) ---


def test_user_detail_counts_are_exact_from_statsv2() -> None:
    detail = load("web_user_detail_2025.json")
    profile = profile_from_web(detail["userInfo"])
    assert (profile.username, profile.nickname) == ("zg.520", "小邹旅行🇨🇳")
    # stats says 427700 followers and 6.8M likes (rounded); statsV2 has the exact strings.
    assert profile.followers == 427_682
    assert profile.likes == 6_764_096
    assert (profile.following, profile.videos) == (176, 1605)
    assert not profile.verified and not profile.private
    assert profile.avatar is not None and "cropcenter:1080:1080" in profile.avatar


# --- the mobile app's aweme (what EnsembleData's post/hashtag/user-posts endpoints pass through) ---


def test_2021_aweme_post_facts() -> None:
    aweme = load("aweme_video_2021.json")["aweme"]
    post = post_from_aweme(aweme)
    assert (post.id, post.author, post.author_name) == ("6932229950720216325", "trulybeauty", "Truly Beauty")
    assert post.url == "https://www.tiktok.com/@trulybeauty/video/6932229950720216325"
    assert post.description == "Bye furry friend🐻 #skincare #beauty"
    assert post.hashtags == ("skincare", "beauty")
    assert post.created == datetime.fromtimestamp(1614035575, tz=UTC)
    assert post.duration == 27.002  # the app's durations are milliseconds
    assert (post.width, post.height, post.region) == (576, 1024, "US")
    assert (post.stats.views, post.stats.likes, post.stats.comments, post.stats.shares) == (
        16_509_966,
        1_256_636,
        21_992,
        56_460,
    )
    assert post.stats.saves is None  # no collect_count in this answer: unknown, not zero
    # music.id is a JSON number beyond 2**53: it must come out digit for digit.
    assert post.music is not None and post.music.id == "6800370846696212482"
    assert (post.music.title, post.music.author, post.music.duration) == (
        "Swaggy",
        "Fluorescent Canyon",
        60.0,
    )
    assert not post.is_photo and post.cover is not None and post.cover.startswith("https://p16-sign-va.")


def test_2021_aweme_author_and_share_link() -> None:
    aweme = load("aweme_video_2021.json")["aweme"]
    profile = profile_from_mobile(aweme["author"])
    assert (profile.username, profile.nickname, profile.private) == ("trulybeauty", "Truly Beauty", False)
    # The app's share link is the legacy m.tiktok.com/v/<id>.html form: a user may paste exactly that.
    link = parse_link(aweme["share_url"])
    assert link is not None and (link.kind, link.post_id) == (LinkKind.POST, "6932229950720216325")
    found = find_links(f"see {aweme['share_url']}")
    assert [(f.kind, f.post_id) for f in found] == [(LinkKind.POST, "6932229950720216325")]


# --- answers for posts that cannot be served ---

STATUSES = load("web_statuses.json")["answers"]


@pytest.mark.parametrize("answer", STATUSES, ids=[a["name"] for a in STATUSES])
def test_status_answers_are_classified(answer: dict[str, Any]) -> None:
    page = parse_post_page(universal_page(answer["detail"]))
    assert page.item is None
    expected = answer["expect"]
    if expected == "ip_blocked":
        with pytest.raises(IpBlocked):
            check_page(page)
    else:
        with pytest.raises(PostUnavailable) as info:
            check_page(page)
        assert info.value.reason is UnavailableReason(expected)


def test_a_status_page_is_not_an_item() -> None:
    page = PostPage(0, "item doesn't exist", None, "universal")
    with pytest.raises(PostUnavailable) as info:
        check_page(page)
    assert "item doesn't exist" in str(info.value)
