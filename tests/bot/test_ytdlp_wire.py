"""The ytdlp backend on the production wiring: UPSTREAM_ROUTES to the TikTok emulator's https listener,
UPSTREAM_CA_FILE for its certificate, DOWNLOAD__PROXIES through the sandbox's forward proxy. yt-dlp's page
request and our CDN request both take that path."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.config import settings_from
from bot.upstreams import tiktok_sessions
from sandbox.blobs import media_file
from sandbox.catalogue import T0, post_id_at
from sandbox.proxy import ForwardProxy
from sandbox.runner import Sandbox
from sandbox.tiktok import TikTokEmulator
from sandbox.tls import SandboxCA
from services.download.models import Want
from services.download.service import build_backends
from services.errors import UpstreamError
from services.links import LinkKind, TikTokLink, canonical_post_url

pytest.importorskip("yt_dlp")

CLIP = post_id_at(T0, 1)
LINK = TikTokLink(LinkKind.POST, canonical_post_url(CLIP), post_id=CLIP)


@pytest.fixture
async def tiktok() -> AsyncIterator[TikTokEmulator]:
    async with Sandbox([TikTokEmulator()]) as running:
        yield running.get(TikTokEmulator)


@pytest.fixture
async def proxy() -> AsyncIterator[ForwardProxy]:
    """A forward proxy going out from 127.0.0.2, so the emulator can tell its traffic apart."""
    async with ForwardProxy(source="127.0.0.2") as running:
        yield running


async def test_ytdlp_over_https_with_the_ca_file_and_through_the_proxy(
    tiktok: TikTokEmulator, proxy: ForwardProxy, tmp_path: Path
) -> None:
    authority = SandboxCA()
    https = await tiktok.serve_https(authority.server_context())
    ca_file = authority.write_ca(tmp_path / "sandbox-ca.pem")
    routes = json.dumps(dict.fromkeys(tiktok.routed_hosts(), https))
    settings = settings_from(
        {
            "UPSTREAM_ROUTES": routes,
            "UPSTREAM_CA_FILE": str(ca_file),
            "DOWNLOAD__PROXIES": proxy.url,
            "DOWNLOAD__BACKENDS": "ytdlp",
        }
    )
    pool = tiktok_sessions(settings)
    try:
        (ytdlp,) = build_backends(
            settings.download.backends,
            tiktok_client=pool.client(),
            ttsave_client=pool.client(),
            ttsave_url="",
            sessions=pool,
        )
        got = await ytdlp.fetch(LINK, Want.VIDEO, None, tmp_path)
    finally:
        await pool.aclose()
    assert got.files[0].path.read_bytes() == media_file("clip.mp4")
    # The extractor's page request and our CDN request were both tunnelled through the proxy, over TLS.
    tunnels = [h for h in proxy.hits if h.method == "CONNECT"]
    assert tunnels and {h.status for h in tunnels} == {200} and len(tunnels) == len(proxy.hits)
    hosts = [r.host for r in tiktok.requests]
    assert hosts == ["www.tiktok.com", "v16-webapp-prime.tiktok.com"]
    assert {r.remote for r in tiktok.requests} == {"127.0.0.2"}


async def test_without_the_ca_file_the_certificate_is_refused(tiktok: TikTokEmulator, tmp_path: Path) -> None:
    authority = SandboxCA()
    https = await tiktok.serve_https(authority.server_context())
    settings = settings_from(
        {
            "UPSTREAM_ROUTES": json.dumps(dict.fromkeys(tiktok.routed_hosts(), https)),
            "DOWNLOAD__BACKENDS": "ytdlp",
        }
    )
    pool = tiktok_sessions(settings)
    try:
        (ytdlp,) = build_backends(
            ["ytdlp"], tiktok_client=pool.client(), ttsave_client=pool.client(), ttsave_url="", sessions=pool
        )
        with pytest.raises(UpstreamError):
            await ytdlp.fetch(LINK, Want.VIDEO, None, tmp_path)
    finally:
        await pool.aclose()
    assert tiktok.requests == []  # the TLS handshake failed: nothing was asked
