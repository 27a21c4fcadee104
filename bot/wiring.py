"""Builds the process-lifetime objects from Settings in one place, and closes them in one place."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from pydantic import SecretStr

from bot.chat.flow import LinkFlow
from bot.config import Settings
from services.download.models import Quality
from services.download.service import DownloadService, build_backends
from services.download.sessions import SessionPool
from services.errors import NotConfigured
from services.http import HttpOptions, make_client, parse_routes
from services.links import ShortLinkResolver
from services.metadata.service import MetadataService, build_providers
from services.ratelimit import ConcurrencyGate, RateLimits
from services.store import Store
from services.wire import OFF, resolve_target

log = logging.getLogger("tiktok_bot.wiring")


@dataclass
class App:
    """Everything a frontend needs, built once per process."""

    settings: Settings
    store: Store
    downloads: DownloadService
    resolver: ShortLinkResolver
    flow: LinkFlow
    metadata: MetadataService | None = None
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    async def aclose(self) -> None:
        """Flush the usage log and close every client, whatever fails on the way."""
        for closer in (self.downloads.aclose, self.store.aclose, *(c.aclose for c in self.clients)):
            try:
                await closer()
            except Exception:
                log.exception("error while closing")


def build_metadata_service(settings: Settings, client: httpx.AsyncClient) -> MetadataService:
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
    )
    return MetadataService(providers, cache_ttl=settings.metadata.cache_ttl)


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


async def build_app(settings: Settings) -> App:
    """Open the store, build one HTTP client per upstream family and the services on top of them."""
    first_byte = settings.download.first_byte_timeout
    sessions = tiktok_sessions(settings)
    tiktok = sessions.client()  # short links go out the way pages do
    ttsave = ttsave_client(settings)
    meta = metadata_client(settings)
    clients = [*(e.client for e in sessions.egresses), ttsave, meta]
    db = settings.database
    store = await Store.open(
        db.path,
        flush_rows=db.flush_rows,
        flush_ms=db.flush_ms,
        hash_user_ids=db.hash_user_ids,
        salt=db.user_id_salt.get_secret_value() if db.user_id_salt else "",
        retention_days=db.retention_days,
    )
    resolver = ShortLinkResolver(tiktok, ttl=settings.limits.short_link_ttl)
    downloads = DownloadService(
        build_backends(
            settings.download.backends,
            tiktok_client=tiktok,
            ttsave_client=ttsave,
            ttsave_url=settings.ttsave.url,
            door_attempts=settings.download.door_attempts,
            sessions=sessions,
        ),
        max_concurrent=settings.download.max_concurrent,
        temp_root=settings.download.temp_dir,
        attempt_timeout=settings.download.timeout,
        resolver=resolver.resolve,
        breaker_failures=settings.download.breaker_failures,
        breaker_cooldown=settings.download.breaker_cooldown,
        probe_timeout=first_byte,
    )
    downloads.start_probes()  # a dead TTSave is open before the first user pays for it
    try:
        metadata: MetadataService | None = build_metadata_service(settings, meta)
    except NotConfigured:
        log.warning("no metadata provider configured: /post, /user and /hashtag will say so")
        metadata = None
    limits = settings.limits
    flow = LinkFlow(
        resolver=resolver,
        downloads=downloads,
        store=store,
        limits=RateLimits(user_per_minute=limits.user_per_minute, chat_per_minute=limits.chat_per_minute),
        gate=ConcurrencyGate(limits.concurrency, notice_after=limits.queue_notice_after),
        metadata=metadata,
        quality=Quality(settings.download.quality),
    )
    return App(
        settings=settings,
        store=store,
        downloads=downloads,
        resolver=resolver,
        flow=flow,
        metadata=metadata,
        clients=clients,
    )
