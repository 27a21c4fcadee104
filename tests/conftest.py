"""Fixtures shared across test packages: the metadata emulators on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import stamina

from sandbox.ensembledata import EnsembleDataEmulator
from sandbox.research import ResearchEmulator


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
