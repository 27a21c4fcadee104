"""Table tests for the model parsers: one per upstream shape, with the shapes' quirks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.metadata.models import (
    Comment,
    Music,
    Post,
    Profile,
    Stats,
    comment_from_research,
    created_from_id,
    hashtags_in,
    post_from_aweme,
    post_from_research,
    post_from_web,
    profile_from_mobile,
    profile_from_research,
    profile_from_web,
)

T = 1_668_195_932
WHEN = datetime.fromtimestamp(T, tz=UTC)

# --- EnsembleData / TikTok mobile "aweme" (snake_case) ---

AWEME_FULL: dict[str, Any] = {
    "aweme_id": "7165262254722534698",
    "desc": "caption #tag #more",
    "create_time": T,
    "region": "AT",
    "author": {"unique_id": "daviddobrik", "nickname": "David Dobrik", "sec_uid": "MS4w"},
    "statistics": {
        "play_count": 1200000,
        "digg_count": 250000,
        "comment_count": 1300,
        "share_count": 900,
        "collect_count": 5000,
    },
    "music": {"id": 7165262276234234, "title": "original sound", "author": "David Dobrik", "duration": 15},
    "video": {"duration": 15000, "width": 576, "height": 1024, "cover": {"url_list": ["https://c/1.jpeg"]}},
    "text_extra": [{"hashtag_name": "tag"}, {"hashtag_name": "more"}, {"user_id": "1"}],
}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            AWEME_FULL,
            Post(
                id="7165262254722534698",
                url="https://www.tiktok.com/@daviddobrik/video/7165262254722534698",
                author="daviddobrik",
                author_name="David Dobrik",
                description="caption #tag #more",
                created=WHEN,
                duration=15.0,
                width=576,
                height=1024,
                stats=Stats(views=1200000, likes=250000, comments=1300, shares=900, saves=5000),
                music=Music(
                    id="7165262276234234", title="original sound", author="David Dobrik", duration=15.0
                ),
                hashtags=("tag", "more"),
                cover="https://c/1.jpeg",
                region="AT",
            ),
            id="full",
        ),
        pytest.param(
            {"aweme_id": "1", "desc": "no extras #fromcaption"},
            Post(
                id="1",
                url="https://www.tiktok.com/@_/video/1",
                description="no extras #fromcaption",
                hashtags=("fromcaption",),
            ),
            id="sparse: hashtags from the caption, unknown author",
        ),
        pytest.param(
            {
                "aweme_id": "2",
                "statistics": {"play_count": "12", "digg_count": None, "comment_count": "x"},
                "video": {"duration": 0, "origin_cover": {"url_list": ["https://c/o.jpeg"]}},
                "music": {"mid": "55", "title": "t"},
            },
            Post(
                id="2",
                url="https://www.tiktok.com/@_/video/2",
                stats=Stats(views=12),
                music=Music(id="55", title="t"),
                cover="https://c/o.jpeg",
            ),
            id="numbers as strings, junk ignored, zero duration is unknown",
        ),
        pytest.param(
            {
                "aweme_id": "3",
                "author": {"unique_id": "travel_bug-1"},
                "image_post_info": {"images": [{"display_image": {}}, {"display_image": {}}]},
            },
            Post(
                id="3",
                url="https://www.tiktok.com/@travel_bug-1/video/3",
                author="travel_bug-1",
                is_photo=True,
                image_count=2,
            ),
            id="photo slideshow",
        ),
    ],
)
def test_post_from_aweme(raw: dict[str, Any], expected: Post) -> None:
    assert post_from_aweme(raw) == expected


# --- TikTok web / EnsembleData web (camelCase) ---


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            {
                "id": "10",
                "desc": "web #a",
                "createTime": str(T),
                "author": {"uniqueId": "cook", "nickname": "Cook"},
                "stats": {
                    "playCount": 5,
                    "diggCount": 4,
                    "commentCount": 3,
                    "shareCount": 2,
                    "collectCount": "1",
                },
                "video": {"duration": 7, "width": 720, "height": 1280, "cover": "https://c/w.jpeg"},
                "music": {"id": "9", "title": "song", "authorName": "Singer", "duration": 30},
                "challenges": [{"hashtagName": "a"}],
                "locationCreated": "GB",
            },
            Post(
                id="10",
                url="https://www.tiktok.com/@cook/video/10",
                author="cook",
                author_name="Cook",
                description="web #a",
                created=WHEN,
                duration=7.0,
                width=720,
                height=1280,
                stats=Stats(5, 4, 3, 2, 1),
                music=Music("9", "song", "Singer", 30.0),
                hashtags=("a",),
                cover="https://c/w.jpeg",
                region="GB",
            ),
            id="itemStruct",
        ),
        pytest.param(
            {"id": "11", "author": "someone", "statsV2": {"playCount": "100"}, "imagePost": {"images": [{}]}},
            Post(
                id="11",
                url="https://www.tiktok.com/@someone/video/11",
                author="someone",
                stats=Stats(views=100),
                is_photo=True,
                image_count=1,
            ),
            id="SIGI author string, statsV2, photo",
        ),
        pytest.param(
            {"id": "12", "textExtra": [{"hashtagName": "x"}], "desc": "#y"},
            Post(id="12", url="https://www.tiktok.com/@_/video/12", description="#y", hashtags=("x",)),
            id="textExtra wins over the caption",
        ),
    ],
)
def test_post_from_web(raw: dict[str, Any], expected: Post) -> None:
    assert post_from_web(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            {
                "user": {
                    "uniqueId": "zachking",
                    "nickname": "Zach King",
                    "signature": "bio",
                    "verified": True,
                    "avatarLarger": "https://a/l.jpeg",
                    "avatarMedium": "https://a/m.jpeg",
                    "privateAccount": False,
                },
                "stats": {
                    "followingCount": 214,
                    "followerCount": 26357770,
                    "heartCount": 1304183341,
                    "videoCount": 629,
                },
            },
            Profile(
                "zachking",
                "Zach King",
                True,
                "bio",
                "https://a/l.jpeg",
                26357770,
                214,
                1304183341,
                629,
                False,
            ),
            id="full",
        ),
        pytest.param(
            {"user": {"uniqueId": "p", "privateAccount": True, "avatarMedium": "m"}, "stats": {"heart": "7"}},
            Profile("p", avatar="m", likes=7, private=True),
            id="private, `heart` instead of heartCount, medium avatar",
        ),
        pytest.param({}, Profile(""), id="empty"),
    ],
)
def test_profile_from_web(raw: dict[str, Any], expected: Profile) -> None:
    assert profile_from_web(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            {
                "unique_id": "zachking",
                "nickname": "Zach King",
                "signature": "bio",
                "follower_count": 82000000,
                "following_count": 214,
                "aweme_count": 629,
                "total_favorited": "1304183341",
                "custom_verify": "Verified account",
                "avatar_larger": {"url_list": ["https://a/l.jpeg"]},
            },
            Profile("zachking", "Zach King", True, "bio", "https://a/l.jpeg", 82000000, 214, 1304183341, 629),
            id="full",
        ),
        pytest.param(
            {"unique_id": "s", "secret": 1, "custom_verify": "", "verification_type": 0},
            Profile("s", private=True),
            id="private, unverified",
        ),
    ],
)
def test_profile_from_mobile(raw: dict[str, Any], expected: Profile) -> None:
    assert profile_from_mobile(raw) == expected


# --- Research API ---


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            {
                "id": 7301444403200000001,
                "username": "sandbox.cook",
                "video_description": "Pasta #pasta",
                "create_time": T,
                "region_code": "US",
                "view_count": 10,
                "like_count": 9,
                "comment_count": 8,
                "share_count": 7,
                "favorites_count": 6,
                "music_id": 7000000000000000001,
                "hashtag_names": ["pasta", "cooking"],
                "video_duration": 3,
            },
            Post(
                id="7301444403200000001",
                url="https://www.tiktok.com/@sandbox.cook/video/7301444403200000001",
                author="sandbox.cook",
                description="Pasta #pasta",
                created=WHEN,
                duration=3.0,
                stats=Stats(10, 9, 8, 7, 6),
                music=Music(id="7000000000000000001"),
                hashtags=("pasta", "cooking"),
                region="US",
            ),
            id="all fields; ids as numbers",
        ),
        pytest.param(
            {"id": "5", "video_description": "only #this"},
            Post(
                id="5", url="https://www.tiktok.com/@_/video/5", description="only #this", hashtags=("this",)
            ),
            id="few fields requested",
        ),
    ],
)
def test_post_from_research(raw: dict[str, Any], expected: Post) -> None:
    assert post_from_research(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            {
                "display_name": "Cook",
                "bio_description": "bio",
                "avatar_url": "https://a",
                "is_verified": True,
                "follower_count": 1,
                "following_count": 2,
                "likes_count": 3,
                "video_count": 4,
            },
            Profile("cook", "Cook", True, "bio", "https://a", 1, 2, 3, 4),
            id="full",
        ),
        pytest.param({"is_private": True}, Profile("cook", private=True), id="is_private"),
    ],
)
def test_profile_from_research(raw: dict[str, Any], expected: Profile) -> None:
    assert profile_from_research(raw, "cook") == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(
            {
                "id": 7411205662439736097,
                "video_id": 7301444403200000001,
                "text": "nice",
                "like_count": 12,
                "reply_count": 3,
                "parent_comment_id": 7301444403200000001,
                "create_time": T,
            },
            Comment("7411205662439736097", "nice", "7301444403200000001", "7301444403200000001", 12, 3, WHEN),
            id="full",
        ),
        pytest.param({"id": "1"}, Comment("1"), id="sparse"),
    ],
)
def test_comment_from_research(raw: dict[str, Any], expected: Comment) -> None:
    assert comment_from_research(raw) == expected


@pytest.mark.parametrize(
    ("post_id", "expected"),
    [
        ("7301444403200000001", datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        (str((1_600_000_000 << 32) | 0xFFFFFFFF), datetime.fromtimestamp(1_600_000_000, tz=UTC)),
        ("123", None),  # top 32 bits are zero: no time in it
        ("not-a-number", None),
        ("", None),
    ],
)
def test_created_from_id(post_id: str, expected: datetime | None) -> None:
    assert created_from_id(post_id) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("#a #b #a", ("a", "b")),
        ("no tags", ()),
        ("#Café and #日本", ("Café", "日本")),
        ("mid#word", ("word",)),
    ],
)
def test_hashtags_in(text: str, expected: tuple[str, ...]) -> None:
    assert hashtags_in(text) == expected
