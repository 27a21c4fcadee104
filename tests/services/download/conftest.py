"""Fixtures: the TikTok and TTSave emulators on loopback, routed clients, backends and a spool directory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from sandbox.catalogue import CATALOGUE, T0, FixturePost, Status, post_id_at
from sandbox.runner import Sandbox
from sandbox.tiktok import TikTokEmulator
from sandbox.ttsave import TTSaveEmulator
from services.download.streams import DOWNLOAD_RETRY
from services.download.ttsave import TTSaveBackend
from services.download.web import WebBackend
from services.http import HttpOptions, make_client, parse_routes
from services.links import LinkKind, TikTokLink, canonical_post_url
from services.retry import RetryPolicy

CLIP = post_id_at(T0, 1)  # 3 s H.264 clip, with bytevc2 and H.265 renditions beside it
BIG = post_id_at(T0 + 86_400, 2)  # renditions of 64, 30, 12 and 6 MB, all H.264
SLIDES = post_id_at(T0 + 2 * 86_400, 3)  # three photos and a sound
ALBUM = post_id_at(T0 + 3 * 86_400, 4)  # twelve photos and a sound
HEVC = post_id_at(T0 + 4 * 86_400, 10)  # 1080p and 720p only in H.265 (with hvc1 copies), H.264 at 540p
BY_STATUS = {p.status: p.id for p in CATALOGUE.posts.values() if p.status is not Status.OK}
MB = 1000 * 1000


def post(post_id: str) -> FixturePost:
    """A catalogue post."""
    return CATALOGUE.posts[post_id]


def link(post_id: str) -> TikTokLink:
    """A post link as link recognition makes it."""
    return TikTokLink(LinkKind.POST, canonical_post_url(post_id), post_id=post_id)


def short(code: str, host: str = "vm.tiktok.com") -> TikTokLink:
    """A short link."""
    return TikTokLink(LinkKind.SHORT, f"https://{host}/{code}/", code=code)


# The production retry count without the waits.
INSTANT = RetryPolicy(retries=DOWNLOAD_RETRY.retries, backoff=0.0, max_delay=0.0)


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    """The TikTok and TTSave emulators, running."""
    async with Sandbox([TikTokEmulator(), TTSaveEmulator()]) as running:
        yield running


@pytest.fixture
def tiktok(sandbox: Sandbox) -> Iterator[TikTokEmulator]:
    """The TikTok emulator; its request log is printed when a test fails."""
    emu = sandbox.get(TikTokEmulator)
    yield emu
    for hit in emu.requests:  # pytest shows this output only for a failing test
        print(f"tiktok  {hit.method} {hit.host}{hit.path} -> {hit.status}")


@pytest.fixture
def ttsave(sandbox: Sandbox) -> Iterator[TTSaveEmulator]:
    """The TTSave emulator; its request log is printed when a test fails."""
    emu = sandbox.get(TTSaveEmulator)
    yield emu
    for served in emu.served:
        print(f"ttsave  {served}")


@pytest.fixture
async def tiktok_client(sandbox: Sandbox) -> AsyncIterator[httpx.AsyncClient]:
    """The browser-like client for TikTok hosts, routed to the emulator through UPSTREAM_ROUTES."""
    routes = parse_routes(sandbox.env()["UPSTREAM_ROUTES"])
    async with make_client(routes=routes, browser=True, options=HttpOptions(read_timeout=2.0)) as client:
        yield client


@pytest.fixture
async def ttsave_client() -> AsyncIterator[httpx.AsyncClient]:
    """The client for TTSave (reached by its own URL)."""
    async with make_client(options=HttpOptions(read_timeout=5.0)) as client:
        yield client


@pytest.fixture
async def impatient_ttsave(sandbox: Sandbox) -> AsyncIterator[TTSaveBackend]:
    """A TTSave backend whose client gives up after 0.3 s of silence, so `slow` faults (2 s) bite."""
    async with make_client(options=HttpOptions(read_timeout=0.3)) as client:
        yield TTSaveBackend(client, sandbox.env()["TTSAVE__URL"], retry=INSTANT)


@pytest.fixture
def web(tiktok_client: httpx.AsyncClient) -> WebBackend:
    """The web backend, retries without waiting."""
    return WebBackend(tiktok_client, retry=INSTANT)


@pytest.fixture
def ttsave_backend(ttsave_client: httpx.AsyncClient, sandbox: Sandbox) -> TTSaveBackend:
    """The TTSave backend on the emulator's TTSAVE__URL, retries without waiting."""
    return TTSaveBackend(ttsave_client, sandbox.env()["TTSAVE__URL"], retry=INSTANT)


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    """An empty directory for temporary files, so tests can check that nothing is left in it."""
    path = tmp_path / "spool"
    path.mkdir()
    return path
