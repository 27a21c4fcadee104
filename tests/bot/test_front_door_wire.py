"""The front door's wire: impersonated TLS against an https TikTok, proxies, benching, secrets masked.

Everything is built from settings the way the bot wires it (`bot.wiring`), against the TikTok and TTSave
emulators on loopback; sandbox forward proxies connect upstream from 127.0.0.2 / 127.0.0.3 so the emulator
tells them apart.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.__main__ import main
from bot.config import Settings, masked, settings_from
from bot.upstreams import metadata_client, tiktok_sessions, ttsave_client
from sandbox.catalogue import T0, post_id_at
from sandbox.proxy import ForwardProxy
from sandbox.runner import Sandbox
from sandbox.tiktok import TikTokEmulator
from sandbox.tls import SandboxCA
from sandbox.ttsave import TTSaveEmulator
from services.download.models import Want
from services.download.sessions import NoEgress
from services.download.streams import DOWNLOAD_RETRY
from services.download.ttsave import TTSaveBackend
from services.download.web import WebBackend
from services.errors import CdnRejected, UpstreamError
from services.links import LinkKind, TikTokLink, canonical_post_url
from services.retry import RetryPolicy
from services.wire import resolve_target

CLIP = post_id_at(T0, 1)
INSTANT = RetryPolicy(retries=DOWNLOAD_RETRY.retries, backoff=0.0, max_delay=0.0)
TIKTOK_HOSTS = ("www.tiktok.com", "v16-webapp-prime.tiktok.com")


def link(post_id: str) -> TikTokLink:
    return TikTokLink(LinkKind.POST, canonical_post_url(post_id), post_id=post_id)


class Clock:
    """A hand-moved clock for benching without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox([TikTokEmulator(), TTSaveEmulator()]) as running:
        yield running


@pytest.fixture
async def proxies() -> AsyncIterator[list[ForwardProxy]]:
    """Two forward proxies going out from 127.0.0.2 and 127.0.0.3; the first one needs credentials."""
    first = ForwardProxy(source="127.0.0.2", username="proxyuser", password="s3cret-pass")
    second = ForwardProxy(source="127.0.0.3")
    async with first, second:
        yield [first, second]


def settings(sandbox: Sandbox, **extra: str) -> Settings:
    return settings_from({**sandbox.env(), **extra})


async def test_impersonated_tls_to_an_https_tiktok_with_upstream_ca_file(
    sandbox: Sandbox, proxies: list[ForwardProxy], tmp_path: Path
) -> None:
    tiktok = sandbox.get(TikTokEmulator)
    authority = SandboxCA()
    https = await tiktok.serve_https(authority.server_context())
    ca_file = authority.write_ca(tmp_path / "sandbox-ca.pem")
    routes = json.dumps(dict.fromkeys(tiktok.routed_hosts(), https))

    # Both transports trust UPSTREAM_CA_FILE; the last run tunnels the TLS through a proxy (CONNECT).
    runs = [("chrome", ""), ("off", ""), ("chrome", proxies[0].url)]
    for index, (impersonate, proxy) in enumerate(runs):
        pool = tiktok_sessions(
            settings_from(
                {
                    "UPSTREAM_ROUTES": routes,
                    "UPSTREAM_CA_FILE": str(ca_file),
                    "DOWNLOAD__IMPERSONATE": impersonate,
                    "DOWNLOAD__PROXIES": proxy,
                }
            )
        )
        try:
            spool = tmp_path / f"{index}-{impersonate}"
            spool.mkdir()
            download = await WebBackend(sessions=pool, retry=INSTANT).fetch(
                link(CLIP), Want.VIDEO, None, spool
            )
            assert download.files[0].size > 0
            expected = "off" if impersonate == "off" else resolve_target("chrome")
            assert pool.acquire().target == expected  # the session's fingerprint
        finally:
            await pool.aclose()

    page = next(r for r in tiktok.requests if r.path.endswith(CLIP))
    # What the bot looked like: the impersonated browser's own User-Agent and client hints, agreeing.
    version = resolve_target("chrome").removeprefix("chrome")
    assert f"Chrome/{version}." in page.headers["user-agent"]
    assert f'v="{version}"' in page.headers["sec-ch-ua"]
    assert page.headers["sec-ch-ua-platform"] and page.headers["sec-fetch-mode"] == "navigate"
    assert "131.0" not in page.headers["user-agent"]
    # The CDN request: the same browser, as a page's <video> sends it (no navigation-only headers).
    media = next(r for r in tiktok.requests if r.host == "v16-webapp-prime.tiktok.com")
    assert media.headers["user-agent"] == page.headers["user-agent"]
    assert media.headers["sec-ch-ua"] == page.headers["sec-ch-ua"]
    assert media.headers["sec-fetch-dest"] == "video" and "upgrade-insecure-requests" not in media.headers
    assert media.headers["referer"].startswith("https://www.tiktok.com/")
    assert tiktok.downloads(CLIP) == 3
    tunnels = [h for h in proxies[0].hits if h.method == "CONNECT"]
    assert len(tunnels) >= 1 and {h.status for h in tunnels} == {200}
    assert {r.remote for r in tiktok.requests[-2:]} == {"127.0.0.2"}  # page and CDN came through the tunnel

    # Without the extra CA the same https listener is refused: the certificate really is checked.
    pool = tiktok_sessions(settings_from({"UPSTREAM_ROUTES": routes}))
    try:
        with pytest.raises(UpstreamError, match="unreachable"):
            await WebBackend(sessions=pool, retry=INSTANT).fetch(link(CLIP), Want.VIDEO, None, tmp_path)
    finally:
        await pool.aclose()


async def test_page_and_cdn_go_through_the_proxy_and_ttsave_does_not(
    sandbox: Sandbox, proxies: list[ForwardProxy], tmp_path: Path
) -> None:
    proxy = proxies[0]
    config = settings(sandbox, DOWNLOAD__PROXIES=proxy.url)
    pool = tiktok_sessions(config)
    ttsave = ttsave_client(config)
    try:
        web = WebBackend(sessions=pool, retry=INSTANT)
        await web.fetch(link(CLIP), Want.VIDEO, None, tmp_path)
        (tmp_path / "ttsave").mkdir()
        await TTSaveBackend(ttsave, config.ttsave.url, retry=INSTANT).fetch(
            link(CLIP), Want.VIDEO, None, tmp_path / "ttsave"
        )
    finally:
        await pool.aclose()
        await ttsave.aclose()
    assert proxy.count("www.tiktok.com") == 1 and proxy.count("v16-webapp-prime.tiktok.com") == 1
    ttsave_port = sandbox.get(TTSaveEmulator).port
    assert not [h for h in proxy.hits if h.target.endswith(f":{ttsave_port}")]
    tiktok = sandbox.get(TikTokEmulator)
    assert {r.remote for r in tiktok.requests} == {"127.0.0.2"}  # all of TikTok's traffic left via the proxy
    assert not [r for r in tiktok.requests if "upgrade" in r.headers]  # no h2c upgrade
    assert {r.remote for r in sandbox.get(TTSaveEmulator).requests} == {"127.0.0.1"}


async def test_ttsave_and_metadata_use_a_proxy_only_when_told(
    sandbox: Sandbox, proxies: list[ForwardProxy], tmp_path: Path
) -> None:
    proxy = proxies[0]  # with credentials: 407 unless they are sent
    config = settings(sandbox, TTSAVE__PROXY=proxy.url, METADATA__PROXY=proxy.url)
    ttsave = ttsave_client(config)
    meta = metadata_client(config)
    try:
        await TTSaveBackend(ttsave, config.ttsave.url, retry=INSTANT).fetch(
            link(CLIP), Want.VIDEO, None, tmp_path
        )
        await meta.get(f"{sandbox.get(TTSaveEmulator).base_url}/")
    finally:
        await ttsave.aclose()
        await meta.aclose()
    ttsave_port = sandbox.get(TTSaveEmulator).port
    through = [h for h in proxy.hits if h.target.endswith(f":{ttsave_port}")]
    assert len(through) >= 2 and {h.status for h in through} == {200}
    assert {r.remote for r in sandbox.get(TTSaveEmulator).requests} == {"127.0.0.2"}


async def test_a_blocked_proxy_is_benched_and_the_download_retried_on_another(
    sandbox: Sandbox, proxies: list[ForwardProxy], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tiktok = sandbox.get(TikTokEmulator)
    tiktok.cdn_refused.add("127.0.0.2")  # the CDN has blocked the first proxy's address
    first, second = proxies
    clock = Clock()
    pool = tiktok_sessions(settings(sandbox, DOWNLOAD__PROXIES=f"{first.url},{second.url}"), clock=clock)
    web = WebBackend(sessions=pool, retry=INSTANT)
    try:
        with caplog.at_level(logging.INFO):
            download = await web.fetch(link(CLIP), Want.VIDEO, None, tmp_path)
        assert download.files[0].size > 0
        assert (
            first.count("v16-webapp-prime.tiktok.com") >= 1
            and second.count("v16-webapp-prime.tiktok.com") == 1
        )
        assert pool.stats().benched == (f"http://***@127.0.0.1:{first.port}",)
        assert pool.stats().blocks == 1

        # While benched, the first proxy is not even tried.
        before = len(first.hits)
        (tmp_path / "again").mkdir()
        await web.fetch(link(CLIP), Want.VIDEO, None, tmp_path / "again")
        assert len(first.hits) == before

        # Both blocked: no way out, said as a block, not as a missing post.
        tiktok.cdn_refused.add("127.0.0.3")
        (tmp_path / "none").mkdir()
        with pytest.raises(CdnRejected) as info:  # what the door did last, not only "no proxy left"
            await web.fetch(link(CLIP), Want.VIDEO, None, tmp_path / "none")
        assert info.value.status == 403
        with pytest.raises(NoEgress):
            pool.acquire()

        # The bench ends by the clock.
        clock.now += pool.bench_seconds + 1
        assert len(pool.usable()) == 2
    finally:
        await pool.aclose()
    # The proxy's credentials never reach the log; the proxy is named without them.
    assert "s3cret-pass" not in caplog.text and "proxyuser" not in caplog.text
    assert "benched" in caplog.text and "***@127.0.0.1" in caplog.text


def test_proxy_credentials_are_masked_in_config(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(
        "DOWNLOAD__PROXIES", "http://alice:pa55word@10.1.2.3:8080, socks5://bob:hunter2@proxy:1080"
    )
    monkeypatch.setenv("TTSAVE__PROXY", "http://carol:ttsecret@10.9.9.9:3128")
    monkeypatch.setenv("METADATA__PROXY", "socks5://dave:mdsecret@10.8.8.8:1080")
    config = Settings()
    assert "pa55word" not in repr(config) and "hunter2" not in json.dumps(masked(config))
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    for secret in ("pa55word", "hunter2", "ttsecret", "mdsecret", "alice", "bob", "carol", "dave"):
        assert secret not in out
    shown = json.loads(out)
    assert shown["download"]["proxies"] == ["http://***@10.1.2.3:8080", "socks5://***@proxy:1080"]
    assert shown["ttsave"]["proxy"] == "http://***@10.9.9.9:3128"
    assert shown["metadata"]["proxy"] == "socks5://***@10.8.8.8:1080"
    assert shown["download"]["impersonate"] == "chrome"


def test_bad_proxy_and_target_are_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in (("DOWNLOAD__PROXIES", "ftp://x:1"), ("DOWNLOAD__IMPERSONATE", "netscape4")):
        with monkeypatch.context() as patch:
            patch.setenv(key, value)
            assert main(["config"]) == 2


@pytest.mark.parametrize("impersonate", ["chrome", "off"])
async def test_socks5_proxies_with_credentials_on_both_transports(
    sandbox: Sandbox, proxies: list[ForwardProxy], tmp_path: Path, impersonate: str
) -> None:
    proxy = proxies[0]
    config = settings(sandbox, DOWNLOAD__PROXIES=proxy.socks_url, DOWNLOAD__IMPERSONATE=impersonate)
    pool = tiktok_sessions(config)
    try:
        await WebBackend(sessions=pool, retry=INSTANT).fetch(link(CLIP), Want.VIDEO, None, tmp_path)
    finally:
        await pool.aclose()
    socks = [h for h in proxy.hits if h.method == "SOCKS5"]
    assert socks and {h.status for h in socks} == {200}
    assert {r.remote for r in sandbox.get(TikTokEmulator).requests} == {"127.0.0.2"}
