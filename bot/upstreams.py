"""The HTTP clients of each upstream family, built from Settings (the bot's wiring and the CLI share them).

Apart from `bot.wiring` so that `tiktok-bot resolve|download|info` build their one client without importing
the chat flow, metrics and aiohttp.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from pydantic import SecretStr

from bot.config import Settings
from services.download.sessions import SessionPool
from services.http import HttpOptions, make_client, parse_routes
from services.metadata.service import MetadataService, build_providers
from services.shared import SharedState
from services.wire import OFF, resolve_target


def build_metadata_service(
    settings: Settings, client: httpx.AsyncClient, shared: SharedState | None = None
) -> MetadataService:
    """The MetadataService the settings describe: providers in configured order, unconfigured skipped."""
    ed_token = settings.ensembledata.token
    research_secret = settings.research.client_secret
    providers = build_providers(
        settings.metadata.providers,
        client=client,
        ed_token=ed_token.get_secret_value() if ed_token else None,
        ed_url=settings.ensembledata.url,
        research_key=settings.research.client_key,
        research_secret=research_secret.get_secret_value() if research_secret else None,
        research_url=settings.research.url,
        qps=settings.research.qps,
        daily_quota=settings.research.daily_quota,
        counters=shared.counters if shared is not None else None,
    )
    return MetadataService(
        providers,
        cache_ttl=settings.metadata.cache_ttl,
        cache=shared.metadata if shared is not None else None,
    )


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def metadata_client(settings: Settings) -> httpx.AsyncClient:
    """The pooled HTTP client the metadata providers share (through METADATA__PROXY only if set)."""
    timeout = settings.ensembledata.timeout
    options = HttpOptions(read_timeout=timeout, write_timeout=timeout)
    return make_client(
        routes=parse_routes(settings.upstream_routes),
        options=options,
        proxy=_secret(settings.metadata.proxy),
        ca_file=settings.upstream_ca_file,
    )


def ttsave_client(settings: Settings) -> httpx.AsyncClient:
    """The HTTP client for TTSave (through TTSAVE__PROXY only if set; never DOWNLOAD__PROXIES)."""
    return make_client(
        routes=parse_routes(settings.upstream_routes),
        options=HttpOptions(
            read_timeout=settings.ttsave.timeout, first_byte_timeout=settings.download.first_byte_timeout
        ),
        proxy=_secret(settings.ttsave.proxy),
        ca_file=settings.upstream_ca_file,
    )


def tiktok_sessions(
    settings: Settings, *, read_timeout: float | None = None, clock: Callable[[], float] = time.monotonic
) -> SessionPool:
    """The warm visitor sessions for TikTok's hosts: one impersonating client per proxy (or one direct)."""
    routes = parse_routes(settings.upstream_routes)
    dl = settings.download
    options = HttpOptions(read_timeout=read_timeout or dl.timeout, first_byte_timeout=dl.first_byte_timeout)

    def client_for(proxy: str | None) -> httpx.AsyncClient:
        return make_client(
            routes=routes,
            browser=True,
            options=options,
            impersonate=dl.impersonate,
            proxy=proxy,
            ca_file=settings.upstream_ca_file,
        )

    return SessionPool.build(
        client_for,
        [p.get_secret_value() for p in dl.proxies],
        size=dl.sessions,
        max_age=dl.session_max_age,
        bench_seconds=dl.proxy_bench,
        clock=clock,
        target=dl.impersonate if dl.impersonate == OFF else resolve_target(dl.impersonate),
    )
