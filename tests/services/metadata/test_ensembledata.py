"""EnsembleDataClient against its emulator over loopback: endpoints, paging, units, errors, retries."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs

import httpx
import pytest

from sandbox.catalogue import CATALOGUE, T0, Status, post_id_at
from sandbox.ensembledata import EnsembleDataEmulator
from services.errors import (
    InvalidLink,
    NotFound,
    PostUnavailable,
    QuotaExceeded,
    ServiceError,
    UnavailableReason,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    UserNotFound,
)
from services.metadata.ensembledata import EnsembleDataClient, Subject, map_error, units_charged

CLIP = post_id_at(T0, 1)
SLIDES = post_id_at(T0 + 2 * 86_400, 3)


def url_of(post_id: str) -> str:
    return CATALOGUE.posts[post_id].url


def with_status(status: Status) -> str:
    return next(p.id for p in CATALOGUE.posts.values() if p.status is status)


def queries(emu: EnsembleDataEmulator, path: str) -> list[dict[str, list[str]]]:
    return [parse_qs(r.query) for r in emu.hits("/apis" + path)]


async def test_post_info(ed: EnsembleDataClient, ed_emu: EnsembleDataEmulator) -> None:
    got = await ed.post_info(url_of(CLIP))
    post = got.value
    assert (post.id, post.author, post.author_name) == (CLIP, "sandbox.cook", "Sandbox Cook")
    assert post.description == "Pasta in 30 seconds #pasta #cooking <b>&amp;</b>"
    assert post.created is not None and int(post.created.timestamp()) == T0
    assert post.duration == 3.0
    assert (post.stats.views, post.stats.likes, post.stats.comments) == (1_534_000, 240_100, 1_320)
    assert (post.stats.shares, post.stats.saves) == (905, 5_012)
    assert post.hashtags == ("pasta", "cooking")
    assert post.music is not None and post.music.title == "original sound"
    assert (got.units, got.requests) == (1, 1)
    [query] = queries(ed_emu, "/tt/post/info")
    assert query == {"token": [ed_emu.token], "url": [url_of(CLIP)]}


async def test_post_info_photo(ed: EnsembleDataClient) -> None:
    post = (await ed.post_info(url_of(SLIDES))).value
    assert post.is_photo and post.image_count == 3
    assert post.author == "travel_bug-1"
    assert post.music is not None and post.music.title == "Hill song"


async def test_multi_post_info_joins_ids_with_semicolons(
    ed: EnsembleDataClient, ed_emu: EnsembleDataEmulator
) -> None:
    deleted = with_status(Status.DELETED)
    ids = [CLIP, SLIDES, deleted, "1"]
    got = await ed.multi_post_info(ids)
    assert [p.id for p in got.value] == [CLIP, SLIDES]  # the gone ones are simply absent
    assert got.units == 1
    [query] = queries(ed_emu, "/tt/post/multi-info")
    assert query["ids"] == [";".join(ids)]


async def test_multi_post_info_refuses_over_100_ids_without_a_request(
    ed: EnsembleDataClient, ed_emu: EnsembleDataEmulator
) -> None:
    with pytest.raises(ValueError, match="100"):
        await ed.multi_post_info([str(i) for i in range(101)])
    assert ed_emu.requests == []
    assert (await ed.multi_post_info([])).value == ()
    assert ed_emu.requests == []


async def test_user_info_web_and_secuid_mobile_agree(
    ed: EnsembleDataClient, ed_emu: EnsembleDataEmulator
) -> None:
    web = await ed.user_info("sandbox.cook")
    mobile = await ed.user_info_from_secuid(CATALOGUE.users["sandbox.cook"].sec_uid)
    assert web.value == mobile.value
    assert web.value.followers == 1_234_567 and web.value.verified
    assert (web.units, mobile.units) == (1, 1)
    assert queries(ed_emu, "/tt/user/info-from-secuid")[0]["secUid"] == ["MS4wLjABAAAAcook"]


async def test_private_user_info_says_private(ed: EnsembleDataClient) -> None:
    assert (await ed.user_info("secret.agent")).value.private
    assert (await ed.user_info_from_secuid("MS4wLjABAAAAagent")).value.private


async def test_user_posts_pages_to_the_end(ed: EnsembleDataClient, ed_emu: EnsembleDataEmulator) -> None:
    listed = [p for p in CATALOGUE.posts.values() if p.author == "sandbox.cook" and p.status not in _HIDDEN]
    seen: list[str] = []
    cursor: str | None = None
    units = 0
    for _ in range(10):
        got = await ed.user_posts("sandbox.cook", depth=1, cursor=cursor)
        assert len(got.value.posts) <= 10
        seen.extend(p.id for p in got.value.posts)
        units += got.units
        cursor = got.value.next_cursor
        if cursor is None:
            break
    assert sorted(seen) == sorted(p.id for p in listed)
    assert len(seen) == len(set(seen)) == 29
    created = [CATALOGUE.posts[i].created for i in seen]
    assert created == sorted(created, reverse=True)  # newest first
    assert units == 3  # one unit per depth per page
    first_query = queries(ed_emu, "/tt/user/posts")[0]
    assert "start_cursor" not in first_query


async def test_user_posts_depth_is_chunks_of_ten(ed: EnsembleDataClient) -> None:
    got = await ed.user_posts("sandbox.cook", depth=2)
    assert len(got.value.posts) == 20 and got.units == 2 and got.value.next_cursor is not None


async def test_hashtag_posts_pages_to_the_end(ed: EnsembleDataClient, ed_emu: EnsembleDataEmulator) -> None:
    first = await ed.hashtag_posts("food")
    assert len(first.value.posts) == 20 and first.value.next_cursor == "20"
    second = await ed.hashtag_posts("food", int(first.value.next_cursor))
    assert len(second.value.posts) == 5 and second.value.next_cursor is None
    ids = [p.id for p in first.value.posts + second.value.posts]
    assert ids == CATALOGUE.hashtags["food"]
    assert [q.get("cursor") for q in queries(ed_emu, "/tt/hashtag/posts")] == [None, ["20"]]


async def test_hashtag_unknown_is_an_empty_page(ed: EnsembleDataClient) -> None:
    page = (await ed.hashtag_posts("nosuchtag")).value
    assert page.posts == () and page.next_cursor is None


@pytest.mark.parametrize(
    ("limit", "cursor", "count", "next_cursor", "pages"),
    [
        (10, 0, 10, "10", 1),  # stops inside the first page
        (20, 0, 20, "20", 1),  # a whole page: the upstream cursor
        (23, 0, 23, "23", 2),
        (50, 0, 25, None, 2),  # more than there is: stops at the end
        (10, 20, 5, None, 1),
        (3, 23, 2, None, 1),
    ],
)
async def test_first_posts_is_bounded(
    ed: EnsembleDataClient,
    ed_emu: EnsembleDataEmulator,
    limit: int,
    cursor: int,
    count: int,
    next_cursor: str | None,
    pages: int,
) -> None:
    got = await ed.first_posts("food", limit, cursor=cursor)
    assert len(got.value.posts) == count
    assert [p.id for p in got.value.posts] == CATALOGUE.hashtags["food"][cursor : cursor + count]
    assert got.value.next_cursor == next_cursor
    assert got.requests == pages == len(ed_emu.hits("/apis/tt/hashtag/posts"))
    assert got.units == pages


async def test_first_posts_max_pages(ed: EnsembleDataClient, ed_emu: EnsembleDataEmulator) -> None:
    got = await ed.first_posts("food", 25, max_pages=1)
    assert len(got.value.posts) == 20 and got.value.next_cursor == "20"
    assert len(ed_emu.hits("/apis/tt/hashtag/posts")) == 1


_HIDDEN = (Status.PRIVATE, Status.PRIVATE_ACCOUNT, Status.DELETED)


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (Status.PRIVATE_ACCOUNT, UnavailableReason.PRIVATE_ACCOUNT),  # 472
        (Status.PRIVATE, UnavailableReason.PRIVATE),  # 520
        (Status.REGION, UnavailableReason.REGION),  # 520
        (Status.DELETED, UnavailableReason.DELETED),  # 404
    ],
)
async def test_unavailable_posts(
    ed: EnsembleDataClient, ed_emu: EnsembleDataEmulator, status: Status, reason: UnavailableReason
) -> None:
    with pytest.raises(PostUnavailable) as info:
        await ed.post_info(url_of(with_status(status)))
    assert info.value.reason is reason
    assert info.value.upstream == "ensembledata"
    assert len(ed_emu.requests) == 1  # an answer, not a failure: 520 is not retried like other 5xx


async def test_unknown_post_is_gone(ed: EnsembleDataClient) -> None:
    with pytest.raises(PostUnavailable) as info:
        await ed.post_info("https://www.tiktok.com/@x/video/7301444403299999999")
    assert info.value.reason is UnavailableReason.DELETED


async def test_invalid_url_462(ed: EnsembleDataClient) -> None:
    with pytest.raises(InvalidLink, match="462"):
        await ed.post_info("https://example.com/@x/video/1")


async def test_unknown_user_473(ed: EnsembleDataClient) -> None:
    with pytest.raises(UserNotFound, match="473"):
        await ed.user_info("nobody.here")
    with pytest.raises(UserNotFound):
        await ed.user_info_from_secuid("MS4wLjABAAAAnobody")


async def test_private_user_posts_472(ed: EnsembleDataClient) -> None:
    with pytest.raises(PostUnavailable) as info:
        await ed.user_posts("secret.agent", depth=1)
    assert info.value.reason is UnavailableReason.PRIVATE_ACCOUNT


async def test_bad_token_491_is_not_retried(http: httpx.AsyncClient, ed_emu: EnsembleDataEmulator) -> None:
    client = EnsembleDataClient(http, "xxx", base_url=ed_emu.env()["ENSEMBLEDATA__URL"], backoff=0)
    with pytest.raises(UpstreamRejected) as info:
        await client.user_info("sandbox.cook")
    assert info.value.status == 491
    assert len(ed_emu.requests) == 1
    assert "xxx" not in str(info.value)


async def test_units_depleted_495(ed: EnsembleDataClient, ed_emu: EnsembleDataEmulator) -> None:
    ed_emu.units_balance = 2
    await ed.user_info("sandbox.cook")
    await ed.user_info("travel_bug-1")
    with pytest.raises(QuotaExceeded):
        await ed.user_info("sandbox.cook")
    assert len(ed_emu.requests) == 3  # not retried
    assert ed.units_spent == 2 and ed_emu.units_used == 2


@pytest.mark.parametrize("kind", ["429", "500", "502", "503", "reset"])
async def test_transient_failures_are_retried(
    ed: EnsembleDataClient, ed_emu: EnsembleDataEmulator, kind: str
) -> None:
    ed_emu.fault_next(kind, count=2)
    got = await ed.user_info("sandbox.cook")
    assert got.value.username == "sandbox.cook"
    assert len(ed_emu.hits("/apis/tt/user/info")) == 3
    assert got.units == 1  # the failures charged nothing


async def test_retries_run_out_as_upstream_error(
    ed: EnsembleDataClient, ed_emu: EnsembleDataEmulator
) -> None:
    ed_emu.fault_next("500", count=10)
    with pytest.raises(UpstreamError) as info:
        await ed.user_info("sandbox.cook")
    assert type(info.value) is UpstreamError and info.value.status == 500
    assert len(ed_emu.requests) == 4  # the first attempt and 3 retries


async def test_429_after_retries_is_upstream_error(
    ed: EnsembleDataClient, ed_emu: EnsembleDataEmulator
) -> None:
    ed_emu.fault_next("429", count=4)
    with pytest.raises(UpstreamError) as info:
        await ed.hashtag_posts("food")
    assert info.value.status == 429


async def test_read_timeout_is_not_retried(ed_emu: EnsembleDataEmulator) -> None:
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=0.1)) as http:
        client = EnsembleDataClient(http, ed_emu.token, base_url=ed_emu.env()["ENSEMBLEDATA__URL"], backoff=0)
        ed_emu.fault_next("slow", delay=0.3)
        with pytest.raises(UpstreamTimeout):
            await client.user_info("sandbox.cook")
    await asyncio.sleep(0.4)  # the emulator records a request when its (slow) answer is done
    assert len(ed_emu.requests) == 1  # it may have been charged: never asked twice


async def test_unreachable_is_retried_then_upstream_error_without_the_token(
    ed_emu: EnsembleDataEmulator,
) -> None:
    calls = 0

    class Counting(httpx.AsyncHTTPTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            nonlocal calls
            calls += 1
            return await super().handle_async_request(request)

    async with httpx.AsyncClient(transport=Counting()) as http:
        # Port 9 on loopback: nothing listens there.
        client = EnsembleDataClient(http, "secret-token", base_url="http://127.0.0.1:9/apis", backoff=0)
        with pytest.raises(UpstreamError) as info:
            await client.user_info("sandbox.cook")
    assert calls == 4
    assert "secret-token" not in str(info.value)


async def test_non_json_error_is_upstream_error(
    http: httpx.AsyncClient, ed_emu: EnsembleDataEmulator
) -> None:
    # The control path is no EnsembleData endpoint: its 405 text body stands in for a proxy's error page.
    client = EnsembleDataClient(http, ed_emu.token, base_url=ed_emu.base_url + "/_control", backoff=0)
    with pytest.raises(UpstreamError, match="without JSON"):
        await client.multi_post_info(["1"])


async def test_units_charged_header_is_cast() -> None:
    assert units_charged(httpx.Response(200, headers={"units_charged": "3"})) == 3
    assert units_charged(httpx.Response(200, headers={"units_charged": "2.0"})) == 2
    assert units_charged(httpx.Response(200)) == 0
    assert units_charged(httpx.Response(200, headers={"units_charged": "lots"})) == 0


@pytest.mark.parametrize(
    ("status", "subject", "error", "code"),
    [
        (462, Subject.POST, InvalidLink, "invalid_link"),
        (463, Subject.USER, UserNotFound, "user_not_found"),
        (473, Subject.USER, UserNotFound, "user_not_found"),
        (472, Subject.POST, PostUnavailable, "unavailable"),
        (520, Subject.POST, PostUnavailable, "unavailable"),
        (404, Subject.POST, PostUnavailable, "unavailable"),
        (404, Subject.USER, UserNotFound, "user_not_found"),
        (404, Subject.HASHTAG, NotFound, "not_found"),
        (491, Subject.USER, UpstreamRejected, "upstream_rejected"),
        (492, Subject.USER, UpstreamRejected, "upstream_rejected"),
        (493, Subject.USER, UpstreamRejected, "upstream_rejected"),
        (495, Subject.USER, QuotaExceeded, "quota_exceeded"),
        (464, Subject.POST, UpstreamRejected, "upstream_rejected"),
        (422, Subject.POST, UpstreamRejected, "upstream_rejected"),
        (418, Subject.POST, UpstreamRejected, "upstream_rejected"),
    ],
)
def test_map_error(status: int, subject: Subject, error: type[ServiceError], code: str) -> None:
    exc = map_error(status, "why", subject)
    assert type(exc) is error and exc.code == code
    assert str(status) in exc.message and "why" in exc.message


@pytest.mark.parametrize(
    ("detail", "reason"),
    [
        ("Post restricted: the post is private", UnavailableReason.PRIVATE),
        ("Post restricted in this region", UnavailableReason.REGION),
        ("Age restricted post", UnavailableReason.AGE),
        ("", UnavailableReason.REGION),
    ],
)
def test_520_reason_from_detail(detail: str, reason: UnavailableReason) -> None:
    exc = map_error(520, detail, Subject.POST)
    assert isinstance(exc, PostUnavailable) and exc.reason is reason
