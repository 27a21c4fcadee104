"""MetadataService over both emulators: provider order, fallback, the cache, hashtag paging, the factory."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from sandbox.catalogue import CATALOGUE, T0, Status, post_id_at
from sandbox.ensembledata import EnsembleDataEmulator
from sandbox.research import ResearchEmulator
from services.errors import (
    InvalidLink,
    NotConfigured,
    NotFound,
    PostUnavailable,
    QuotaExceeded,
    UnavailableReason,
    UpstreamError,
    UserNotFound,
)
from services.links import LinkKind, TikTokLink
from services.metadata.ensembledata import EnsembleDataClient
from services.metadata.models import Metered, Post
from services.metadata.research import ResearchClient
from services.metadata.service import (
    Answer,
    EnsembleDataProvider,
    MetadataProvider,
    MetadataService,
    ResearchProvider,
    build_providers,
)
from tests.services.metadata.conftest import FakeClock

CLIP = post_id_at(T0, 1)


def link(post_id: str = CLIP) -> TikTokLink:
    return TikTokLink(kind=LinkKind.POST, url=CATALOGUE.posts[post_id].url, post_id=post_id)


def status_post(status: Status) -> str:
    return next(p.id for p in CATALOGUE.posts.values() if p.status is status)


def ed_hits(emu: EnsembleDataEmulator) -> int:
    return len(emu.hits("/apis/tt/"))


def research_hits(emu: ResearchEmulator) -> int:
    return len(emu.hits("/v2/research/"))


@pytest.fixture
def providers(ed: EnsembleDataClient, research: ResearchClient) -> list[MetadataProvider]:
    return [EnsembleDataProvider(ed), ResearchProvider(research)]


@pytest.fixture
def service(providers: list[MetadataProvider], clock: FakeClock) -> MetadataService:
    return MetadataService(providers, cache_ttl=600, clock=clock)


async def test_post_from_the_first_provider(service: MetadataService, ed_emu: EnsembleDataEmulator) -> None:
    answer = await service.post(link())
    assert answer == Answer(answer.value, "ensembledata", units=1, requests=1, cached=False)
    assert answer.value.id == CLIP and answer.value.stats.likes == 240_100
    [hit] = ed_emu.hits("/apis/tt/post/info")
    assert hit.query.endswith("url=https://www.tiktok.com/@sandbox.cook/video/" + CLIP)


@pytest.mark.parametrize(
    ("url", "username", "sent"),
    [
        (
            "https://www.tiktok.com/@sandbox.cook/video/{id}?is_from_webapp=1",
            None,
            "@sandbox.cook/video/{id}",
        ),
        ("https://m.tiktok.com/v/{id}.html", None, "@_/video/{id}"),
        ("https://m.tiktok.com/v/{id}.html", "sandbox.cook", "@sandbox.cook/video/{id}"),
        ("https://evil.example/@sandbox.cook/video/{id}", None, "@_/video/{id}"),
    ],
)
async def test_ensembledata_gets_a_full_web_url(
    service: MetadataService, ed_emu: EnsembleDataEmulator, url: str, username: str | None, sent: str
) -> None:
    await service.post(
        TikTokLink(kind=LinkKind.POST, url=url.format(id=CLIP), post_id=CLIP, username=username)
    )
    [hit] = ed_emu.hits("/apis/tt/post/info")
    assert hit.query.endswith("url=https://www.tiktok.com/" + sent.format(id=CLIP))


async def test_repeat_is_cached_and_spends_nothing(
    service: MetadataService, ed_emu: EnsembleDataEmulator, clock: FakeClock
) -> None:
    first = await service.post(link())
    again = await service.post(link())
    assert again.value == first.value
    assert (again.provider, again.units, again.requests, again.cached) == ("ensembledata", 0, 0, True)
    assert ed_hits(ed_emu) == 1 and ed_emu.units_used == 1
    clock.advance(601)  # past the TTL: asked again
    fresh = await service.post(link())
    assert not fresh.cached and fresh.units == 1 and ed_hits(ed_emu) == 2


async def test_profile_and_hashtag_are_cached(service: MetadataService, ed_emu: EnsembleDataEmulator) -> None:
    await service.profile("sandbox.cook")
    assert (await service.profile("@Sandbox.Cook")).cached  # the same account, however it is written
    await service.hashtag("food")
    assert (await service.hashtag("#Food")).cached
    assert ed_hits(ed_emu) == 2


async def test_hashtag_pages_are_cached_per_tag_cursor_and_limit(
    service: MetadataService, ed_emu: EnsembleDataEmulator
) -> None:
    await service.hashtag("food", None, 10)
    await service.hashtag("food", "10", 10)
    await service.hashtag("food", None, 5)
    assert ed_hits(ed_emu) == 3
    assert (await service.hashtag("food", "10", 10)).cached
    assert (await service.hashtag("food", None, 5)).cached
    assert ed_hits(ed_emu) == 3


async def test_cache_ttl_zero_caches_nothing(
    providers: list[MetadataProvider], ed_emu: EnsembleDataEmulator
) -> None:
    service = MetadataService(providers, cache_ttl=0)
    await service.profile("sandbox.cook")
    assert not (await service.profile("sandbox.cook")).cached
    assert ed_hits(ed_emu) == 2


async def test_concurrent_asks_share_one_upstream_call(
    service: MetadataService, ed_emu: EnsembleDataEmulator
) -> None:
    answers = await asyncio.gather(*(service.profile("sandbox.cook") for _ in range(5)))
    assert ed_hits(ed_emu) == 1
    assert sorted(a.cached for a in answers) == [False, True, True, True, True]
    assert sum(a.units for a in answers) == 1


async def test_walk_hashtag_pages_to_the_end_with_small_cursors(service: MetadataService) -> None:
    ids: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        answer = await service.hashtag("food", cursor, 10)
        pages += 1
        ids.extend(p.id for p in answer.value.posts)
        cursor = answer.value.next_cursor
        if cursor is None:
            break
        # The cursor rides in Telegram callback data (at most 64 bytes) together with the tag.
        assert len(f"h:food:{cursor}".encode()) <= 64 and len(cursor) <= 6
    assert pages == 3
    assert ids == CATALOGUE.hashtags["food"]


@pytest.mark.parametrize("cursor", ["abc", "-1", "1" * 7, ""])
async def test_bad_cursor_sends_nothing(
    service: MetadataService, ed_emu: EnsembleDataEmulator, cursor: str
) -> None:
    if cursor == "":
        await service.hashtag("food", cursor)  # empty is the start
        assert ed_hits(ed_emu) == 1
        return
    with pytest.raises(NotFound):
        await service.hashtag("food", cursor)
    assert ed_emu.requests == []


@pytest.mark.parametrize(("limit", "sent"), [(0, 1), (-5, 1), (1000, 50)])
async def test_limit_is_clamped(service: MetadataService, limit: int, sent: int) -> None:
    page = (await service.hashtag("food", None, limit)).value
    assert len(page.posts) == min(sent, 25)


async def test_falls_back_on_upstream_error(
    service: MetadataService,
    ed_emu: EnsembleDataEmulator,
    research_emu: ResearchEmulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ed_emu.fault_next("500", count=4)
    answer = await service.post(link())
    assert (answer.provider, answer.units, answer.requests) == ("research", 0, 1)
    assert answer.value.id == CLIP
    assert ed_hits(ed_emu) == 4 and research_hits(research_emu) == 1
    assert (await service.post(link())).cached  # the fallback's answer is cached too
    [record] = [r for r in caplog.records if r.name == "services.metadata.service"]
    assert record.getMessage() == "metadata provider ensembledata failed (upstream_error), trying the next"
    assert (record.action, record.backend) == ("metadata.post", "ensembledata")  # type: ignore[attr-defined]


async def test_falls_back_on_quota_exceeded(
    service: MetadataService, ed_emu: EnsembleDataEmulator, research_emu: ResearchEmulator
) -> None:
    ed_emu.units_balance = 0
    answer = await service.profile("sandbox.cook")
    assert answer.provider == "research" and answer.value.followers == 1_234_567
    assert ed_hits(ed_emu) == 1
    # /healthz sees it: EnsembleData degraded (a fault counted), the Research API up and serving.
    ed, research = service.figures()
    assert (ed.backend, ed.requests, ed.successes, ed.status) == ("ensembledata", 1, 0, "degraded")
    assert (research.backend, research.requests, research.successes, research.share) == (
        "research",
        1,
        1,
        1.0,
    )
    assert research.status == "up"


async def test_not_found_is_an_answer_for_health(service: MetadataService) -> None:
    for _ in range(4):
        with pytest.raises(UserNotFound):
            await service.profile("nobody.here")
    ed = service.figures()[0]
    assert (ed.requests, ed.successes, ed.consecutive_faults, ed.status) == (4, 0, 0, "up")


async def test_falls_back_on_rejected_token(
    http: httpx.AsyncClient, research: ResearchClient, ed_emu: EnsembleDataEmulator
) -> None:
    bad = EnsembleDataClient(http, "expired-token", base_url=ed_emu.env()["ENSEMBLEDATA__URL"], backoff=0)
    service = MetadataService([EnsembleDataProvider(bad), ResearchProvider(research)])
    assert (await service.hashtag("food")).provider == "research"


async def test_no_fallback_on_not_found(
    service: MetadataService, ed_emu: EnsembleDataEmulator, research_emu: ResearchEmulator
) -> None:
    with pytest.raises(UserNotFound):
        await service.profile("nobody.here")
    assert ed_hits(ed_emu) == 1 and research_emu.requests == []


@pytest.mark.parametrize(
    ("status", "reason"),
    [(Status.PRIVATE, UnavailableReason.PRIVATE), (Status.DELETED, UnavailableReason.DELETED)],
)
async def test_no_fallback_on_unavailable(
    service: MetadataService, research_emu: ResearchEmulator, status: Status, reason: UnavailableReason
) -> None:
    with pytest.raises(PostUnavailable) as info:
        await service.post(link(status_post(status)))
    assert info.value.reason is reason
    assert research_emu.requests == []


async def test_failures_are_not_cached(service: MetadataService, ed_emu: EnsembleDataEmulator) -> None:
    with pytest.raises(UserNotFound):
        await service.profile("nobody.here")
    with pytest.raises(UserNotFound):
        await service.profile("nobody.here")
    assert ed_hits(ed_emu) == 2


async def test_all_providers_failing_raises_the_last_failure(
    service: MetadataService, ed_emu: EnsembleDataEmulator, research_emu: ResearchEmulator
) -> None:
    ed_emu.units_balance = 0
    research_emu.fault_next("500", count=4)
    with pytest.raises(UpstreamError) as info:
        await service.profile("sandbox.cook")
    assert info.value.upstream == "research"


async def test_research_first_when_configured_first(
    ed: EnsembleDataClient, research: ResearchClient, ed_emu: EnsembleDataEmulator
) -> None:
    service = MetadataService([ResearchProvider(research), EnsembleDataProvider(ed)])
    answer = await service.hashtag("food", None, 3)
    assert answer.provider == "research" and answer.requests == 1 and len(answer.value.posts) == 3
    assert ed_emu.requests == []


async def test_research_quota_falls_back_to_ensembledata(
    ed: EnsembleDataClient,
    research_emu: ResearchEmulator,
    http: httpx.AsyncClient,
    ed_emu: EnsembleDataEmulator,
) -> None:
    spent = ResearchClient(
        http,
        research_emu.client_key,
        research_emu.client_secret,
        base_url=research_emu.base_url,
        daily_quota=0,
    )
    service = MetadataService([ResearchProvider(spent), EnsembleDataProvider(ed)])
    answer = await service.post(link())
    assert answer.provider == "ensembledata"
    assert research_emu.requests == []  # the local quota refused before anything was sent


@pytest.mark.parametrize(
    "bad",
    [
        TikTokLink(kind=LinkKind.SHORT, url="https://vm.tiktok.com/ZMclip01/", code="ZMclip01"),
        TikTokLink(kind=LinkKind.POST, url="https://www.tiktok.com/@x/video/"),
        TikTokLink(kind=LinkKind.USER, url="https://www.tiktok.com/@x", username="x"),
    ],
)
async def test_post_needs_a_resolved_post_link(
    service: MetadataService, ed_emu: EnsembleDataEmulator, bad: TikTokLink
) -> None:
    with pytest.raises(InvalidLink):
        await service.post(bad)
    assert ed_emu.requests == []


@pytest.mark.parametrize("name", ["", "a b", "x" * 65, "semi;colon"])
async def test_bad_usernames_send_nothing(
    service: MetadataService, ed_emu: EnsembleDataEmulator, name: str
) -> None:
    with pytest.raises(UserNotFound):
        await service.profile(name)
    assert ed_emu.requests == []


async def test_a_provider_is_a_protocol(clock: FakeClock) -> None:
    class Fixed:
        name = "fixed"

        async def post(self, link: TikTokLink) -> Metered[Post]:
            return Metered(Post(id=link.post_id or "", url=link.url), units=7, requests=2)

        async def profile(self, username: str) -> Metered[object]:
            raise QuotaExceeded("spent")

        async def hashtag(self, tag: str, cursor: str | None, limit: int) -> Metered[object]:
            raise NotConfigured("no")

    service = MetadataService([Fixed()], clock=clock)  # type: ignore[list-item]
    answer = await service.post(link())
    assert (answer.provider, answer.units, answer.requests) == ("fixed", 7, 2)
    with pytest.raises(QuotaExceeded):
        await service.profile("x")


def test_service_needs_a_provider() -> None:
    with pytest.raises(NotConfigured):
        MetadataService([])


# --- the factory ---


async def test_build_providers_in_order_skipping_unconfigured(http: httpx.AsyncClient) -> None:
    both = {
        "client": http,
        "ed_token": "t",
        "ed_url": "http://ed",
        "research_key": "k",
        "research_secret": "s",
        "research_url": "http://r",
    }
    assert [p.name for p in build_providers(["research", "ensembledata"], **both)] == [
        "research",
        "ensembledata",
    ]  # type: ignore[arg-type]
    assert [p.name for p in build_providers(["ensembledata"], **both)] == ["ensembledata"]  # type: ignore[arg-type]
    no_ed = {**both, "ed_token": None}
    assert [p.name for p in build_providers(["ensembledata", "research"], **no_ed)] == ["research"]  # type: ignore[arg-type]
    half_research = {**both, "research_secret": ""}
    assert [p.name for p in build_providers(["ensembledata", "research"], **half_research)] == [
        "ensembledata"
    ]  # type: ignore[arg-type]
    with pytest.raises(NotConfigured, match="ENSEMBLEDATA__TOKEN"):
        build_providers(["ensembledata", "research"], **{**no_ed, "research_key": None})  # type: ignore[arg-type]
    with pytest.raises(NotConfigured):
        build_providers([], **both)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown"):
        build_providers(["tiktok"], **both)  # type: ignore[arg-type]


async def test_built_providers_work_against_the_emulators(
    http: httpx.AsyncClient, ed_emu: EnsembleDataEmulator, research_emu: ResearchEmulator
) -> None:
    env = {**ed_emu.env(), **research_emu.env()}
    providers = build_providers(
        ["ensembledata", "research"],
        client=http,
        ed_token=env["ENSEMBLEDATA__TOKEN"],
        ed_url=env["ENSEMBLEDATA__URL"],
        research_key=env["RESEARCH__CLIENT_KEY"],
        research_secret=env["RESEARCH__CLIENT_SECRET"],
        research_url=env["RESEARCH__URL"],
        qps=50,
        daily_quota=10,
        backoff=0,
    )
    service = MetadataService(providers)
    ed_emu.fault_next("503", count=4)
    answer = await service.profile("travel_bug-1")
    assert answer.provider == "research" and answer.value.nickname == "Travel Bug"
