"""Fixtures: the EnsembleData and Research API emulators on loopback, and clients pointed at them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from sandbox.ensembledata import EnsembleDataEmulator
from sandbox.research import ResearchEmulator
from services.metadata.ensembledata import EnsembleDataClient
from services.metadata.research import ResearchClient

# Two weeks after the catalogue's newest posts: the #food posts fall in the last 30 days.
NOW = datetime(2023, 11, 30, 12, 0, tzinfo=UTC)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeSleep:
    """An instant `asyncio.sleep` that records the delays and advances a FakeClock by them."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.delays: list[float] = []
        self.clock = clock

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self.clock is not None:
            self.clock.advance(seconds)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        yield client


@pytest.fixture
def ed(http: httpx.AsyncClient, ed_emu: EnsembleDataEmulator) -> EnsembleDataClient:
    return EnsembleDataClient(http, ed_emu.token, base_url=ed_emu.env()["ENSEMBLEDATA__URL"], backoff=0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleep(clock: FakeClock) -> FakeSleep:
    return FakeSleep(clock)


@pytest.fixture
def research(
    http: httpx.AsyncClient, research_emu: ResearchEmulator, clock: FakeClock, sleep: FakeSleep
) -> ResearchClient:
    return ResearchClient(
        http,
        research_emu.client_key,
        research_emu.client_secret,
        base_url=research_emu.base_url,
        backoff=0,
        clock=clock,
        now=lambda: NOW,
        sleep=sleep,
    )
