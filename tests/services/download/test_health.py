"""Circuit breakers and the first-byte limit: the state machine on a stepped clock, then the chain against the
sandbox over loopback (TTSave black-holed, refused, coming back; private and deleted posts)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bot.config import settings_from
from sandbox.catalogue import Status
from sandbox.runner import Sandbox
from sandbox.ttsave import TTSaveEmulator
from services.download.service import DownloadService
from services.download.streams import DOWNLOAD_RETRY
from services.download.ttsave import TTSaveBackend
from services.download.web import WebBackend
from services.errors import (
    PostUnavailable,
    TooLarge,
    UnavailableReason,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from services.health import BreakerState, CircuitBreaker, Verdict, judge
from services.http import HttpOptions, make_client
from services.retry import RetryPolicy
from tests.services.download.conftest import BY_STATUS, CLIP, INSTANT, link


class Clock:
    """A clock the test steps by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- the state machine ---


def test_opens_after_n_consecutive_faults_and_a_success_resets_the_count() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=3, cooldown=30, clock=clock)
    breaker.record(Verdict.FAULT)
    breaker.record(Verdict.FAULT)
    breaker.record(Verdict.OK)
    breaker.record(Verdict.FAULT)
    breaker.record(Verdict.FAULT)
    assert breaker.state is BreakerState.CLOSED and breaker.allow()
    breaker.record(Verdict.FAULT)
    assert breaker.state is BreakerState.OPEN and not breaker.allow()
    assert breaker.retry_in() == 30


def test_half_open_lets_one_probe_through_then_closes_or_opens_again() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=1, cooldown=30, clock=clock)
    breaker.record(Verdict.FAULT)
    clock.now += 29.9
    assert not breaker.allow()
    clock.now += 0.1
    assert breaker.allow()  # the probe
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.allow()  # everyone else still skips
    breaker.record(Verdict.FAULT)
    assert breaker.state is BreakerState.OPEN and not breaker.allow()
    clock.now += 30
    assert breaker.allow()
    breaker.record(Verdict.OK)
    assert breaker.state is BreakerState.CLOSED and breaker.allow()


def test_a_probe_that_never_reports_does_not_leave_the_backend_skipped_forever() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=1, cooldown=30, clock=clock)
    breaker.record(Verdict.FAULT)
    clock.now += 30
    assert breaker.allow()  # the probe request... which is then cancelled and never records
    clock.now += 29
    assert not breaker.allow()
    clock.now += 1
    assert breaker.allow()  # a cool-down later, another request probes
    breaker.record(Verdict.OK)
    assert breaker.state is BreakerState.CLOSED


def test_a_backend_with_a_probe_is_never_probed_by_a_user_request() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=3, cooldown=30, clock=clock, has_probe=True)
    # Silence or a refused connection: straight to half-open, and the owner is told to probe.
    assert breaker.record(Verdict.UNREACHABLE) is True
    assert breaker.state is BreakerState.HALF_OPEN and not breaker.allow()
    breaker.probe_result(False)
    assert breaker.state is BreakerState.OPEN
    clock.now += 30
    assert not breaker.allow()  # requests still skip...
    assert breaker.probe_due() is True  # ...while the probe runs, once
    assert breaker.probe_due() is False
    breaker.probe_result(True)
    assert breaker.state is BreakerState.CLOSED and breaker.allow()
    # A 5xx is only counted: the server answers, so the probe would say nothing new.
    assert breaker.record(Verdict.FAULT) is False and breaker.state is BreakerState.CLOSED


def test_a_ping_that_answers_while_downloads_hang_still_opens_after_n() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=3, cooldown=30, clock=clock, has_probe=True)
    for _ in range(2):
        assert breaker.record(Verdict.UNREACHABLE) is True  # a hang; the ping is asked...
        breaker.probe_result(True)  # ...and answers
        assert breaker.state is BreakerState.CLOSED
    breaker.record(Verdict.UNREACHABLE)  # the third hang in a row: open, whatever the ping says
    assert breaker.state is BreakerState.OPEN and breaker.retry_in() == 30
    clock.now += 30
    assert breaker.probe_due()
    breaker.probe_result(True)
    breaker.record(Verdict.UNREACHABLE)  # still hanging: open again at once, one user per cool-down
    assert breaker.state is BreakerState.OPEN
    breaker.record(Verdict.OK)  # a download served: the count starts over
    assert breaker.state is BreakerState.CLOSED and breaker.consecutive == 0


@pytest.mark.parametrize(
    ("exc", "verdict"),
    [
        (None, Verdict.OK),
        (PostUnavailable(UnavailableReason.PRIVATE), Verdict.OK),
        (PostUnavailable(UnavailableReason.DELETED), Verdict.OK),
        (TooLarge(size=2, limit=1), Verdict.OK),
        (UpstreamError("no files", status=400), Verdict.OK),
        (UpstreamRejected("not found", status=404), Verdict.OK),
        (UpstreamRejected("blocked", status=403), Verdict.FAULT),
        (UpstreamError("HTTP 500", status=500), Verdict.FAULT),
        (UpstreamError("HTTP 429", status=429), Verdict.FAULT),
        (UpstreamError("not multipart"), Verdict.FAULT),
        (UpstreamTimeout("silent"), Verdict.UNREACHABLE),
        (UpstreamUnreachable("refused"), Verdict.UNREACHABLE),
        (RuntimeError("our bug"), Verdict.OK),
    ],
)
def test_what_counts_as_an_upstream_fault(exc: BaseException | None, verdict: Verdict) -> None:
    assert judge(exc) is verdict


# --- against the sandbox ---


@pytest.fixture
async def black_hole() -> AsyncIterator[str]:
    """A TTSave URL whose server accepts connections, reads nothing and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/api/v3"
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


@pytest.fixture
def refused() -> str:
    """A TTSave URL on a loopback port nobody listens on: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/api/v3"


FIRST_BYTE = 1.0  # the production default is 10 s (bench/breaker.py measures that); the shape is the same


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    while CLIENTS:
        await CLIENTS.pop().aclose()


CLIENTS: list[httpx.AsyncClient] = []


def chain(
    ttsave_url: str,
    web: WebBackend,
    spool: Path,
    clock: Clock | None = None,
    *,
    first_byte: float = FIRST_BYTE,
    retry: RetryPolicy = INSTANT,
) -> DownloadService:
    client = make_client(options=HttpOptions(read_timeout=60.0, first_byte_timeout=first_byte))
    CLIENTS.append(client)
    ttsave = TTSaveBackend(client, ttsave_url, retry=retry)
    return DownloadService(
        [ttsave, web],
        temp_root=spool,
        probe_timeout=first_byte,
        clock=clock or time.monotonic,
    )


Row = tuple[float, str, list[tuple[str, str | None]], list[float]]


async def ten_links(service: DownloadService) -> list[Row]:
    """Ten downloads in a row: time taken, who served, the attempt list and each attempt's seconds."""
    rows = []
    for _ in range(10):
        started = time.monotonic()
        async with await service.fetch(link(CLIP)) as media:
            rows.append(
                (
                    time.monotonic() - started,
                    media.backend,
                    [(a.backend, a.error_code) for a in media.attempts],
                    [a.seconds for a in media.attempts],
                )
            )
    return rows


async def test_black_holed_ttsave_costs_one_first_byte_limit_then_nothing(
    black_hole: str, web: WebBackend, spool: Path, sandbox: Sandbox
) -> None:
    service = chain(black_hole, web, spool)
    try:
        rows = await ten_links(service)
    finally:
        await service.aclose()
    assert all(row[1] == "web" for row in rows)
    first, rest = rows[0], rows[1:]
    assert first[2] == [("ttsave", "upstream_timeout"), ("web", None)]
    # One first-byte limit, not the 60 s read timeout nor three tries of it.
    assert FIRST_BYTE * 0.9 <= first[0] < FIRST_BYTE * 4
    for seconds, _, attempts, _ in rest:
        assert attempts == [("ttsave", "circuit_open"), ("web", None)]
        assert seconds < FIRST_BYTE * 0.9  # the web's own speed: nobody waited for TTSave again
    health = service.health("ttsave")
    assert health.requests == 1 and health.skipped == 9
    assert health.breaker.state in (BreakerState.HALF_OPEN, BreakerState.OPEN)


async def test_refused_ttsave_opens_after_the_first_link(
    refused: str, web: WebBackend, spool: Path, sandbox: Sandbox
) -> None:
    service = chain(refused, web, spool)
    try:
        started = time.monotonic()
        rows = await ten_links(service)
        total = time.monotonic() - started
        await service.wait_probes()
        assert service.health("ttsave").breaker.state is BreakerState.OPEN
    finally:
        await service.aclose()
    assert rows[0][2] == [("ttsave", "upstream_error"), ("web", None)]
    assert all(r[2] == [("ttsave", "circuit_open"), ("web", None)] for r in rows[1:])
    assert total < 5.0  # generous under load; the bench measures the real figure


@pytest.mark.parametrize("dead", ["black_hole", "refused"])
async def test_issue_targets_with_the_production_defaults(
    dead: str, black_hole: str, refused: str, web: WebBackend, spool: Path, sandbox: Sandbox
) -> None:
    """Issue 14's targets with DOWNLOAD__FIRST_BYTE_TIMEOUT=10 and the production retry policy: black-holed,
    the first link pays at most the 10 s limit and the next nine nothing; refused, ≤ 2 s over ten links."""
    defaults = settings_from({}).download
    assert (defaults.first_byte_timeout, defaults.breaker_failures) == (10.0, 3)
    url = black_hole if dead == "black_hole" else refused
    service = chain(url, web, spool, first_byte=defaults.first_byte_timeout, retry=DOWNLOAD_RETRY)
    try:
        rows = await ten_links(service)
    finally:
        await service.aclose()
    ttsave_seconds = [row[3][0] for row in rows]  # TTSave is first in every attempt list
    assert all(s == 0.0 for s in ttsave_seconds[1:])  # links 2-10: skipped at once
    if dead == "black_hole":
        assert 9.0 <= ttsave_seconds[0] <= 10.0 + 1.0  # the limit, plus the scheduler's slack
    else:
        assert sum(ttsave_seconds) <= 2.0  # 3 tries, 0.5 s and 1 s apart, then open


async def test_ping_answers_but_downloads_hang_costs_n_links_then_nothing(
    ttsave: TTSaveEmulator, web: WebBackend, spool: Path
) -> None:
    ttsave.fault_next("slow", count=100, delay=FIRST_BYTE * 5)  # /download stalls; /ping still answers pong
    service = chain(f"{ttsave.base_url}/api/v3", web, spool)
    try:
        rows = []
        for _ in range(10):
            rows.extend(await ten_links_once(service))
            await service.wait_probes()  # let each ping land, the worst case for the count
    finally:
        await service.aclose()
    paid = [row for row in rows if row[2][0] == ("ttsave", "upstream_timeout")]
    assert len(paid) == 3  # DOWNLOAD__BREAKER_FAILURES, though every ping said pong
    assert all(row[2][0] == ("ttsave", "circuit_open") for row in rows[3:])
    assert len(ttsave.hits("/api/v3/ping")) == 2  # asked after the first two silences; the third opened it


async def ten_links_once(service: DownloadService) -> list[Row]:
    """One download, as a `ten_links` row."""
    started = time.monotonic()
    async with await service.fetch(link(CLIP)) as media:
        return [
            (
                time.monotonic() - started,
                media.backend,
                [(a.backend, a.error_code) for a in media.attempts],
                [a.seconds for a in media.attempts],
            )
        ]


async def test_half_open_recovery_when_ttsave_comes_back(
    web: WebBackend, spool: Path, sandbox: Sandbox
) -> None:
    clock = Clock()
    emu = TTSaveEmulator()
    await emu.start()
    port = emu.port
    await emu.stop()  # refused from now on
    service = chain(f"http://127.0.0.1:{port}/api/v3", web, spool, clock)
    try:
        async with await service.fetch(link(CLIP)) as media:
            assert media.backend == "web"
        await service.wait_probes()
        breaker = service.health("ttsave").breaker
        assert breaker.state is BreakerState.OPEN
        await emu.start(port=port)  # back
        async with await service.fetch(link(CLIP)) as media:  # still cooling down: skipped
            assert (media.attempts[0].backend, media.attempts[0].error_code) == ("ttsave", "circuit_open")
        assert emu.requests == []
        clock.now += 30
        async with await service.fetch(link(CLIP)) as media:  # the probe starts; this user does not wait
            assert media.backend == "web"
        await service.wait_probes()
        assert breaker.state is BreakerState.CLOSED
        assert [r.path for r in emu.requests] == ["/api/v3/ping"]
        async with await service.fetch(link(CLIP)) as media:
            assert media.backend == "ttsave"
    finally:
        await service.aclose()
        await emu.stop()


@pytest.mark.parametrize("status", [Status.PRIVATE, Status.DELETED])
async def test_private_and_deleted_posts_never_open_a_breaker(
    ttsave_backend: TTSaveBackend,
    web: WebBackend,
    spool: Path,
    ttsave: TTSaveEmulator,
    status: Status,
) -> None:
    service = DownloadService([ttsave_backend, web], temp_root=spool, breaker_failures=2)
    try:
        for _ in range(5):
            with pytest.raises(PostUnavailable):
                await service.fetch(link(BY_STATUS[status]))
    finally:
        await service.aclose()
    for name in ("ttsave", "web"):
        health = service.health(name)
        assert health.breaker.state is BreakerState.CLOSED and health.breaker.consecutive == 0
        assert health.requests == 5
    assert len(ttsave.served) == 5  # TTSave was asked every time


async def test_start_up_probe_opens_a_dead_ttsave_before_any_user_pays(
    black_hole: str, web: WebBackend, spool: Path, sandbox: Sandbox
) -> None:
    service = chain(black_hole, web, spool)
    try:
        service.start_probes()
        await service.wait_probes()
        assert service.health("ttsave").breaker.state is BreakerState.OPEN
        started = time.monotonic()
        async with await service.fetch(link(CLIP)) as media:
            assert (media.attempts[0].backend, media.attempts[0].error_code) == ("ttsave", "circuit_open")
        assert time.monotonic() - started < FIRST_BYTE * 0.9
    finally:
        await service.aclose()


async def test_every_backend_open_is_one_clear_error(refused: str, spool: Path, sandbox: Sandbox) -> None:
    client = make_client(options=HttpOptions(first_byte_timeout=FIRST_BYTE))
    service = DownloadService([TTSaveBackend(client, refused, retry=INSTANT)], temp_root=spool)
    try:
        with pytest.raises(UpstreamError):
            await service.fetch(link(CLIP))
        await service.wait_probes()
        with pytest.raises(UpstreamError, match="circuit open") as caught:
            await service.fetch(link(CLIP))
        assert "ttsave 0.00s circuit_open" in "".join(caught.value.__notes__)
    finally:
        await service.aclose()
        await client.aclose()


async def test_first_byte_limit_apart_from_the_read_timeout(sandbox: Sandbox, black_hole: str) -> None:
    # The read timeout is 30 s; the first-byte limit still ends the wait for headers after one second.
    async with make_client(options=HttpOptions(read_timeout=30.0, first_byte_timeout=FIRST_BYTE)) as client:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout, match="first-byte"):
            await client.post(f"{black_hole}/download", json={})
        assert time.monotonic() - started < FIRST_BYTE * 4
