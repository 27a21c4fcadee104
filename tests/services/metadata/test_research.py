"""ResearchClient against the Research API emulator: token life, quota, pacing, windows, paging, errors."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from urllib.parse import parse_qs

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox.catalogue import CATALOGUE, T0, Status, post_id_at
from sandbox.research import ResearchEmulator
from services.errors import (
    InvalidLink,
    NotFound,
    PostUnavailable,
    QuotaExceeded,
    UnavailableReason,
    UpstreamError,
    UpstreamRejected,
    UserNotFound,
)
from services.metadata.models import post_from_research
from services.metadata.research import (
    Cond,
    DailyQuota,
    Field,
    Op,
    Query,
    RateLimiter,
    ResearchClient,
    cond,
    date_windows,
    map_error,
)
from tests.services.metadata.conftest import NOW, FakeClock, FakeSleep

CLIP = post_id_at(T0, 1)
SLIDES = post_id_at(T0 + 2 * 86_400, 3)
COOK = Query(and_=(cond(Field.USERNAME, "sandbox.cook"),))
T0_DAY = datetime.fromtimestamp(T0, tz=UTC).date()


def data_hits(emu: ResearchEmulator) -> int:
    return len(emu.hits("/v2/research/"))


def token_hits(emu: ResearchEmulator) -> int:
    return len(emu.hits("/v2/oauth/token/"))


def client_for(emu: ResearchEmulator, http: httpx.AsyncClient, **kwargs: object) -> ResearchClient:
    options: dict[str, object] = {"backoff": 0, "now": lambda: NOW, "sleep": FakeSleep()}
    options.update(kwargs)
    return ResearchClient(http, emu.client_key, emu.client_secret, base_url=emu.base_url, **options)  # type: ignore[arg-type]


# --- the query builder ---


def test_query_builder() -> None:
    query = Query(
        and_=(cond(Field.HASHTAG_NAME, "pasta"), cond(Field.REGION_CODE, "US", "CA")),
        or_=(Cond(Field.CREATE_DATE, ("20231114",), Op.GTE),),
        not_=(cond(Field.USERNAME, "spam", op=Op.EQ), Cond(Field.VIDEO_LENGTH, ("SHORT",), Op.LT)),
    )
    assert query.as_json() == {
        "and": [
            {"operation": "EQ", "field_name": "hashtag_name", "field_values": ["pasta"]},
            {"operation": "IN", "field_name": "region_code", "field_values": ["US", "CA"]},
        ],
        "or": [{"operation": "GTE", "field_name": "create_date", "field_values": ["20231114"]}],
        "not": [
            {"operation": "EQ", "field_name": "username", "field_values": ["spam"]},
            {"operation": "LT", "field_name": "video_length", "field_values": ["SHORT"]},
        ],
    }
    assert Query(not_=(cond(Field.KEYWORD, "x"),)).as_json() == {
        "not": [{"operation": "EQ", "field_name": "keyword", "field_values": ["x"]}]
    }
    assert {op.value for op in Op} == {"EQ", "IN", "GT", "GTE", "LT", "LTE"}
    with pytest.raises(ValueError, match="at least one"):
        Query()
    with pytest.raises(ValueError, match="value"):
        cond(Field.USERNAME)


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (Query(and_=(cond(Field.HASHTAG_NAME, "travel"),)), {SLIDES, post_id_at(T0 + 3 * 86_400, 4)}),
        (
            Query(and_=(cond(Field.HASHTAG_NAME, "pasta", "travel"),)),
            {CLIP, SLIDES, post_id_at(T0 + 3 * 86_400, 4)},
        ),
        (
            Query(and_=(cond(Field.HASHTAG_NAME, "cooking"),), not_=(cond(Field.KEYWORD, "pasta"),)),
            {post_id_at(T0 + 86_400, 2)},
        ),
        (
            Query(or_=(cond(Field.VIDEO_ID, CLIP), cond(Field.MUSIC_ID, "7000000000000000002"))),
            {CLIP, SLIDES},
        ),
        (
            Query(
                and_=(
                    Cond(Field.CREATE_DATE, ("20231116",), Op.GTE),
                    Cond(Field.CREATE_DATE, ("20231117",), Op.LT),
                )
            ),
            {SLIDES},
        ),
        (Query(and_=(cond(Field.VIDEO_LENGTH, "LONG"),)), {post_id_at(T0 + 86_400, 2)}),
        (Query(and_=(cond(Field.USERNAME, "secret.agent"),)), set()),  # private: not in the public data
    ],
)
async def test_query_conditions_select_posts(
    research: ResearchClient, where: Query, expected: set[str]
) -> None:
    got = await research.videos(where, T0_DAY, T0_DAY + timedelta(days=10))
    assert {p.id for p in got.value} == expected


# --- date windows ---


@pytest.mark.parametrize(
    ("start", "end", "count"),
    [
        (date(2024, 1, 1), date(2024, 1, 1), 1),
        (date(2024, 1, 1), date(2024, 1, 30), 1),
        (date(2024, 1, 1), date(2024, 1, 31), 2),
        (date(2024, 1, 1), date(2024, 3, 30), 3),
        (date(2024, 1, 1), date(2024, 12, 31), 13),
    ],
)
def test_date_windows_count(start: date, end: date, count: int) -> None:
    assert len(date_windows(start, end)) == count


@given(st.dates(min_value=date(2016, 1, 1), max_value=date(2030, 1, 1)), st.integers(0, 800))
def test_date_windows_tile_the_range(start: date, days: int) -> None:
    end = start + timedelta(days=days)
    windows = date_windows(start, end)
    assert windows[0][0] == start and windows[-1][1] == end
    for (_, last), (first, _) in itertools.pairwise(windows):
        assert first == last + timedelta(days=1)  # no gap, no overlap
    assert all(a <= b and (b - a).days <= 29 for a, b in windows)


def test_date_windows_refuse_backwards() -> None:
    with pytest.raises(ValueError, match="before"):
        date_windows(date(2024, 2, 1), date(2024, 1, 1))


async def test_long_ranges_are_split_into_windows(
    research: ResearchClient, research_emu: ResearchEmulator
) -> None:
    start, end = T0_DAY - timedelta(days=75), T0_DAY + timedelta(days=10)
    got = await research.videos(COOK, start, end)
    assert len(got.value) == 29  # everything sandbox.cook has in public
    bodies = [b for path, b in research_emu.bodies if path.endswith("/video/query/")]
    spans = [(b["start_date"], b["end_date"]) for b in bodies]
    assert spans == [(a.strftime("%Y%m%d"), b.strftime("%Y%m%d")) for a, b in date_windows(start, end)]
    assert len(spans) == 3 == got.requests


async def test_a_window_over_30_days_is_refused_by_the_emulator(
    http: httpx.AsyncClient, research: ResearchClient, research_emu: ResearchEmulator
) -> None:
    token = await research.access_token()
    response = await http.post(
        research_emu.base_url + "/v2/research/video/query/",
        params={"fields": "id"},
        json={"query": COOK.as_json(), "start_date": "20240101", "end_date": "20240201"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_params"
    with pytest.raises(ValueError, match="30 days"):
        await research.query_videos(COOK, date(2024, 1, 1), date(2024, 2, 1))


# --- paging ---


async def test_pagination_by_cursor_and_search_id_to_the_end(
    research: ResearchClient, research_emu: ResearchEmulator
) -> None:
    got = await research.videos(COOK, T0_DAY, T0_DAY + timedelta(days=10), max_count=7)
    ids = [p.id for p in got.value]
    assert len(ids) == len(set(ids)) == 29
    assert got.requests == 5  # 7 + 7 + 7 + 7 + 1
    bodies = [b for _, b in research_emu.bodies]
    assert "search_id" not in bodies[0] and "cursor" not in bodies[0]
    assert [b["cursor"] for b in bodies[1:]] == [7, 14, 21, 28]
    assert len({b["search_id"] for b in bodies[1:]}) == 1


async def test_limit_stops_paging(research: ResearchClient) -> None:
    got = await research.videos(COOK, T0_DAY, T0_DAY + timedelta(days=10), max_count=7, limit=10)
    assert len(got.value) == 10 and got.requests == 2


async def test_expired_search_id_is_an_upstream_error(research: ResearchClient) -> None:
    with pytest.raises(UpstreamError, match="Search Id"):
        await research.query_videos(COOK, T0_DAY, T0_DAY, cursor=5, search_id="1234")


async def test_hashtag_posts_by_offset(research: ResearchClient) -> None:
    first = await research.hashtag_posts("food", limit=10)
    assert len(first.value.posts) == 10 and first.value.next_cursor == "10" and first.requests == 1
    last = await research.hashtag_posts("food", offset=20, limit=10)
    assert len(last.value.posts) == 5 and last.value.next_cursor is None
    middle = await research.hashtag_posts("food", offset=10, limit=10)
    ids = [p.id for p in first.value.posts + middle.value.posts + last.value.posts]
    assert sorted(ids) == sorted(CATALOGUE.hashtags["food"])


async def test_hashtag_posts_only_look_30_days_back(
    research_emu: ResearchEmulator, http: httpx.AsyncClient
) -> None:
    later = client_for(research_emu, http, now=lambda: NOW + timedelta(days=60))
    page = (await later.hashtag_posts("food")).value
    assert page.posts == () and page.next_cursor is None
    [(_, body)] = research_emu.bodies  # one window, one request
    assert body["end_date"] == (NOW + timedelta(days=60)).strftime("%Y%m%d")
    assert body["start_date"] == (NOW + timedelta(days=31)).strftime("%Y%m%d")


# --- lookups ---


async def test_post_by_id_queries_a_one_day_window(
    research: ResearchClient, research_emu: ResearchEmulator
) -> None:
    got = await research.post(CLIP)
    assert got.value.id == CLIP and got.value.author == "sandbox.cook"
    assert got.value.stats.views == 1_534_000 and got.value.hashtags == ("pasta", "cooking")
    assert got.requests == 1
    [(_, body)] = research_emu.bodies
    assert body["query"] == {"and": [{"operation": "EQ", "field_name": "video_id", "field_values": [CLIP]}]}
    assert (body["start_date"], body["end_date"]) == ("20231114", "20231115")


@pytest.mark.parametrize("status", [Status.PRIVATE, Status.PRIVATE_ACCOUNT, Status.DELETED])
async def test_hidden_posts_are_not_found(research: ResearchClient, status: Status) -> None:
    post_id = next(p.id for p in CATALOGUE.posts.values() if p.status is status)
    with pytest.raises(NotFound):
        await research.post(post_id)


@pytest.mark.parametrize("post_id", ["123", "abc", str((2_000_000_000 << 32) | 1)])
async def test_ids_without_a_plausible_time_send_nothing(
    research: ResearchClient, research_emu: ResearchEmulator, post_id: str
) -> None:
    with pytest.raises(InvalidLink):
        await research.post(post_id)
    assert research_emu.requests == []


async def test_user_info(research: ResearchClient, research_emu: ResearchEmulator) -> None:
    got = await research.user_info("sandbox.cook")
    assert got.value.username == "sandbox.cook" and got.value.nickname == "Sandbox Cook"
    assert (got.value.followers, got.value.likes, got.value.videos) == (1_234_567, 98_765_432, 42)
    assert got.value.verified and got.requests == 1
    [hit] = research_emu.hits("/v2/research/user/info/")
    assert "display_name" in hit.query


async def test_unknown_user_is_user_not_found(research: ResearchClient) -> None:
    with pytest.raises(UserNotFound, match="cannot find the user"):
        await research.user_info("nobody.here")


async def test_private_user_is_refused(research: ResearchClient) -> None:
    with pytest.raises(PostUnavailable) as info:
        await research.user_info("secret.agent")
    assert info.value.reason is UnavailableReason.PRIVATE_ACCOUNT


async def test_comments_page_to_the_end(research: ResearchClient) -> None:
    comments = []
    cursor = 0
    requests = 0
    while True:
        got = await research.video_comments(SLIDES, cursor=cursor, max_count=15)
        requests += got.requests
        comments.extend(got.value.comments)
        assert got.value.cursor is not None
        cursor = got.value.cursor
        if not got.value.has_more:
            break
    assert len(comments) == len({c.id for c in comments}) == CATALOGUE.posts[SLIDES].comments == 40
    assert requests == 3
    assert all(c.video_id == SLIDES for c in comments)


async def test_comments_stop_at_a_thousand(research: ResearchClient) -> None:
    got = await research.video_comments(CLIP, cursor=990)  # the clip has 1,320 comments
    assert len(got.value.comments) == 10 and not got.value.has_more


async def test_comments_of_an_unknown_post(research: ResearchClient) -> None:
    with pytest.raises(NotFound):
        await research.video_comments("7301444403299999999")


# --- the token ---


async def test_token_is_cached(research: ResearchClient, research_emu: ResearchEmulator) -> None:
    await research.user_info("sandbox.cook")
    await research.post(CLIP)
    await research.video_comments(CLIP)
    assert token_hits(research_emu) == 1
    [token_request] = research_emu.hits("/v2/oauth/token/")
    assert token_request.method == "POST"


async def test_token_is_refreshed_before_it_expires(
    research: ResearchClient, research_emu: ResearchEmulator, clock: FakeClock
) -> None:
    research_emu.token_ttl = 100
    await research.user_info("sandbox.cook")
    clock.advance(85)
    await research.user_info("sandbox.cook")
    assert token_hits(research_emu) == 1
    clock.advance(6)  # 91 s: inside the last tenth of its life
    await research.user_info("sandbox.cook")
    assert token_hits(research_emu) == 2
    assert data_hits(research_emu) == 3  # never a 401 on the way


async def test_token_is_refreshed_once_on_401(
    research: ResearchClient, research_emu: ResearchEmulator
) -> None:
    await research.user_info("sandbox.cook")
    research_emu.expire_tokens()  # revoked early: the client still believes in it
    got = await research.user_info("sandbox.cook")
    assert got.value.username == "sandbox.cook"
    assert got.requests == 2  # the 401 and the re-send
    assert token_hits(research_emu) == 2
    assert [r.status for r in research_emu.hits("/v2/research/")] == [200, 401, 200]


async def test_a_second_401_is_rejected_not_looped(
    research: ResearchClient, research_emu: ResearchEmulator
) -> None:
    research_emu.token_ttl = 0  # every token is born expired
    with pytest.raises(UpstreamRejected, match="access token"):
        await research.user_info("sandbox.cook")
    assert token_hits(research_emu) == 2 and data_hits(research_emu) == 2


async def test_bad_credentials(research_emu: ResearchEmulator, http: httpx.AsyncClient) -> None:
    client = ResearchClient(http, "key", "wrong", base_url=research_emu.base_url, backoff=0)
    with pytest.raises(UpstreamRejected, match="invalid_client") as info:
        await client.user_info("sandbox.cook")
    assert "wrong" not in str(info.value)
    assert data_hits(research_emu) == 0


# --- quota, pacing, retries ---


async def test_daily_quota_refuses_before_sending(
    research_emu: ResearchEmulator, http: httpx.AsyncClient
) -> None:
    today = [NOW]
    client = client_for(research_emu, http, daily_quota=2, now=lambda: today[0])
    await client.user_info("sandbox.cook")
    await client.user_info("travel_bug-1")
    sent = len(research_emu.requests)
    with pytest.raises(QuotaExceeded, match="00:00 UTC"):
        await client.user_info("sandbox.cook")
    assert len(research_emu.requests) == sent  # nothing was sent, not even a token request
    assert client.quota.remaining == 0
    today[0] = datetime(2023, 12, 1, 0, 0, 1, tzinfo=UTC)  # just past midnight UTC: a new day
    assert client.quota.remaining == 2
    await client.user_info("sandbox.cook")
    assert data_hits(research_emu) == 3


def test_daily_quota_resets_at_utc_midnight_not_local() -> None:
    tz = datetime.now(UTC).astimezone().tzinfo
    moments = [datetime(2024, 1, 1, 23, 59, tzinfo=UTC)]
    quota = DailyQuota(1, lambda: moments[0].astimezone(tz))
    quota.take()
    with pytest.raises(QuotaExceeded):
        quota.take()
    moments[0] = datetime(2024, 1, 2, 0, 0, tzinfo=UTC)
    quota.take()


async def test_upstream_quota_429_is_quota_exceeded_and_not_retried(
    research: ResearchClient, research_emu: ResearchEmulator
) -> None:
    research_emu.daily_quota = 0
    with pytest.raises(QuotaExceeded):
        await research.user_info("sandbox.cook")
    assert data_hits(research_emu) == 1
    research_emu.daily_quota = 1000
    research_emu.fault_next("429")
    with pytest.raises(QuotaExceeded):
        await research.user_info("sandbox.cook")
    assert data_hits(research_emu) == 2


async def test_500_is_retried(
    research: ResearchClient, research_emu: ResearchEmulator, sleep: FakeSleep
) -> None:
    research_emu.fault_next("500", count=2)
    got = await research.user_info("sandbox.cook")
    assert got.requests == 3 and data_hits(research_emu) == 3
    assert research.quota.used == 3  # every request sent counts against the quota


async def test_500_retries_run_out(research: ResearchClient, research_emu: ResearchEmulator) -> None:
    research_emu.fault_next("500", count=10)
    with pytest.raises(UpstreamError) as info:
        await research.user_info("sandbox.cook")
    assert info.value.status == 500 and data_hits(research_emu) == 4


async def test_400_is_not_retried(research: ResearchClient, research_emu: ResearchEmulator) -> None:
    with pytest.raises(UserNotFound):
        await research.user_info("nobody.here")
    assert data_hits(research_emu) == 1


async def test_requests_are_paced_by_qps(research_emu: ResearchEmulator, http: httpx.AsyncClient) -> None:
    clock = FakeClock()
    sleep = FakeSleep()  # does not move the clock: as if all requests were asked for at once
    client = client_for(research_emu, http, qps=5, clock=clock, sleep=sleep)
    for _ in range(3):
        await client.user_info("sandbox.cook")
    assert sleep.delays == pytest.approx([0.2, 0.4])


async def test_rate_limiter_spacing() -> None:
    clock = FakeClock(0.0)
    sleep = FakeSleep(clock)
    limiter = RateLimiter(2, clock, sleep)
    await limiter.wait()
    await limiter.wait()
    clock.advance(5)  # idle for a while: no debt carried over
    await limiter.wait()
    await limiter.wait()
    assert sleep.delays == pytest.approx([0.5, 0.5])
    with pytest.raises(ValueError, match="qps"):
        RateLimiter(0)


@pytest.mark.parametrize(
    ("status", "code", "message", "error"),
    [
        (429, "rate_limit_exceeded", "", QuotaExceeded),
        (400, "invalid_params", "user x is invalid: cannot find the user", UserNotFound),
        (400, "invalid_params", "API cannot return this user's information", PostUnavailable),
        (400, "invalid_params", "video_id 1 is invalid: cannot find the video", NotFound),
        (400, "invalid_params", "Search Id 1 is invalid or expired", UpstreamError),
        (400, "invalid_params", "bad date", UpstreamRejected),
        (401, "scope_not_authorized", "", UpstreamRejected),
        (401, "access_token_invalid", "", UpstreamRejected),
        (403, "something_else", "", UpstreamRejected),
    ],
)
def test_map_error(status: int, code: str, message: str, error: type[Exception]) -> None:
    assert type(map_error(status, code, message, "user")) is error


# --- payloads in the shapes TikTok documents ---

# TikTok's documented example answer to a video query, as JBGruber/traktok keeps it in
# tests/testthat/example_resp_q_videos.json: the id comes as `video_id`, and as a JSON number.
DOCUMENTED_VIDEOS = {
    "data": {
        "videos": [
            {
                "hashtag_names": ["avengers", "pov"],
                "region_code": "CA",
                "create_time": 1633823999,
                "effect_ids": ["0"],
                "video_id": 702874395068494965,
                "music_id": 703847506349838790,
                "video_description": "lol #pov #avengers",
                "view_count": 1050,
                "comment_count": 2,
            },
            {"video_description": "no id at all", "view_count": 3},
        ],
        "cursor": 100,
        "search_id": "7201388525814961198",
        "has_more": True,
    },
    "error": {"code": "ok", "message": "", "log_id": "20230113024658F0D7C5D6CA3A9B79C5B9"},
}


def test_the_documented_video_example_has_its_id_and_no_empty_one() -> None:
    first, no_id = DOCUMENTED_VIDEOS["data"]["videos"]  # type: ignore[index]
    post = post_from_research(first)
    assert post is not None
    assert post.id == "702874395068494965"
    assert post.url == "https://www.tiktok.com/@_/video/702874395068494965"
    assert (post.stats.views, post.stats.comments, post.hashtags) == (1050, 2, ("avengers", "pov"))
    assert post_from_research(no_id) is None


@pytest.mark.parametrize("key", ["favorites_count", "favourites_count"])
def test_saves_counter_in_either_spelling(key: str) -> None:
    post = post_from_research({"id": 5, key: 42})
    assert post is not None and post.stats.saves == 42


async def test_posts_come_with_their_ids_when_the_api_answers_in_the_documented_shape(
    research: ResearchClient, research_emu: ResearchEmulator
) -> None:
    research_emu.video_id_key = "video_id"
    research_emu.saves_key = "favourites_count"
    got = await research.post(CLIP)
    assert got.value.id == CLIP and got.value.stats.saves == CATALOGUE.posts[CLIP].saves
    page = (await research.hashtag_posts("food", limit=10)).value
    assert len(page.posts) == 10 and all(p.id and p.id in CATALOGUE.hashtags["food"] for p in page.posts)
    [hit, *_] = research_emu.hits("/v2/research/video/query/")
    # the codebook's spelling (item 22, "Favorites_count") is what is asked for
    assert "favorites_count" in parse_qs(hit.query)["fields"][0].split(",")


async def test_user_info_asks_for_is_private(
    research: ResearchClient, research_emu: ResearchEmulator
) -> None:
    await research.user_info("sandbox.cook")
    [hit] = research_emu.hits("/v2/research/user/info/")
    assert "is_private" in parse_qs(hit.query)["fields"][0].split(",")
