"""Fixtures shared across test packages: the metadata emulators on loopback, the real database servers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import stamina

from sandbox.ensembledata import EnsembleDataEmulator
from sandbox.research import ResearchEmulator
from tests.engines import postgres
from tests.engines.postgres import postgres_server
from tests.engines.redis import redis_client, redis_prefix, redis_server

__all__ = [
    "postgres_server",
    "redis_client",
    "redis_prefix",
    "redis_server",
]  # fixtures for every test package


@pytest.fixture(autouse=True, scope="session")
def _instant_retries() -> Iterator[None]:
    """Retries keep their attempts but do not wait (stamina's testing mode)."""
    with stamina.set_testing(True, attempts=1_000, cap=True):
        yield


@pytest.fixture
async def ed_emu() -> AsyncIterator[EnsembleDataEmulator]:
    """The EnsembleData emulator, started for one test."""
    async with EnsembleDataEmulator() as emu:
        yield emu


@pytest.fixture
async def research_emu() -> AsyncIterator[ResearchEmulator]:
    """The Research API emulator, started for one test."""
    async with ResearchEmulator() as emu:
        yield emu


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which database servers the session started and how long each took."""
    for server in postgres.STARTED:
        took = f"started in {server.started_in_s:.2f}s"
        terminalreporter.write_line(f"PostgreSQL {server.version} on {server.host}:{server.port}, {took}")
