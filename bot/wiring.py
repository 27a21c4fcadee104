"""Builds the process-lifetime objects from Settings in one place, and closes them in one place."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from pydantic import SecretStr

from bot.chat.flow import LinkFlow
from bot.chat.inbox import Deliveries
from bot.config import DatabaseSettings, Settings
from bot.metrics import BreakerGauges, Metrics
from services.download.models import Quality
from services.download.service import DownloadService, build_backends
from services.download.sessions import SessionPool
from services.download.spool_root import clear_stale, process_spool, remove_own, spool_root
from services.errors import NotConfigured
from services.http import HttpOptions, make_client, parse_routes
from services.links import ShortLinkResolver
from services.metadata.service import MetadataService, build_providers
from services.ratelimit import ConcurrencyGate, RateLimits
from services.shared import SharedState
from services.shared.memory import memory_state
from services.store import Store
from services.store.db import Database
from services.store.inbox import DatabaseInbox
from services.store.postgres import PostgresDatabase
from services.store.sqlite import MEMORY, SqliteDatabase
from services.store.stream_inbox import StreamInbox
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
    deliveries: Deliveries
    metadata: MetadataService | None = None
    clients: list[httpx.AsyncClient] = field(default_factory=list)
    shared: SharedState = field(default_factory=memory_state)
    metrics: Metrics = field(default_factory=Metrics)
    spool: Path | None = None

    async def aclose(self) -> None:
        """Flush the usage log and close every client, whatever fails on the way."""
        closers = (
            self.downloads.aclose,
            self.store.aclose,
            *(c.aclose for c in self.clients),
            self.shared.aclose,
        )
        for closer in closers:
            try:
                await closer()
            except Exception:
                log.exception("error while closing")
        if self.spool is not None:
            remove_own(self.spool)


async def open_database(settings: DatabaseSettings, *, create: bool = True) -> Database:
    """The engine DATABASE__URL names, opened and migrated: the one place that picks SQLite or PostgreSQL.

    With `create` off, a SQLite file that does not exist yet reads as an empty database and is not created.
    """
    if settings.engine == "postgres":
        assert settings.url is not None
        return await PostgresDatabase.open(settings.url.get_secret_value(), pool_size=settings.pool_size)
    path = settings.sqlite_path
    if not create and not path.exists():
        return await SqliteDatabase.open(MEMORY)
    return await SqliteDatabase.open(path)


async def build_shared_state(settings: Settings) -> SharedState:
    """The one place the engine of shared state is chosen: Redis when REDIS__URL is set, else this process."""
    url = settings.redis.url
    if url is None or not url.get_secret_value():
        return memory_state()
    # Imported only when chosen: redis-py costs ~50 ms of start-up that one process on SQLite never uses.
    from services.shared.redis import connect as connect_redis
    from services.shared.redis import redis_state

    client = connect_redis(url.get_secret_value(), client_name="tiktok-bot")
    try:
        state = await redis_state(client, prefix=settings.redis.prefix, lease=settings.redis.lease)
    except BaseException:
        await client.aclose()
        raise
    log.info("shared state in Redis", extra={"action": "startup", "backend": "redis"})
    return state


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


async def build_app(settings: Settings) -> App:
    """Open the store, build one HTTP client per upstream family and the services on top of them."""
    # Shared state and the store first: one that cannot be opened leaves nothing else to close.
    shared = await build_shared_state(settings)
    db = settings.database
    try:
        store = await Store.open(
            await open_database(db),
            flush_rows=db.flush_rows,
            flush_ms=db.flush_ms,
            hash_user_ids=db.hash_user_ids,
            salt=db.user_id_salt.get_secret_value() if db.user_id_salt else "",
            retention_days=db.retention_days,
            media_hot=shared.media,
        )
    except BaseException:
        await shared.aclose()
        raise
    first_byte = settings.download.first_byte_timeout
    sessions = tiktok_sessions(settings)
    tiktok = sessions.client()  # short links go out the way pages do
    ttsave = ttsave_client(settings)
    meta = metadata_client(settings)
    clients = [*(e.client for e in sessions.egresses), ttsave, meta]
    metrics = Metrics()
    resolver = ShortLinkResolver(tiktok, ttl=settings.limits.short_link_ttl, cache=shared.short_links)
    # The bot's own directory under the temp root: what a killed process left there is removed now.
    spool = spool_root(settings.download.temp_dir)
    removed, freed = clear_stale(spool)
    if removed:
        log.info("removed %d spool entries (%d bytes) left by earlier runs in %s", removed, freed, spool)
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
        temp_root=process_spool(spool),
        attempt_timeout=settings.download.timeout,
        resolver=resolver.resolve,
        observer=metrics,
        breaker_failures=settings.download.breaker_failures,
        breaker_cooldown=settings.download.breaker_cooldown,
        probe_timeout=first_byte,
    )
    metrics.watch(BreakerGauges(downloads))
    downloads.start_probes()  # a dead TTSave is open before the first user pays for it
    try:
        metadata: MetadataService | None = build_metadata_service(settings, meta, shared)
    except NotConfigured:
        log.warning("no metadata provider configured: /post, /user and /hashtag will say so")
        metadata = None
    limits = settings.limits
    if shared.stream is not None:
        # Replicas: updates go through the shared stream; completions and usage rows stay in the database.
        assert isinstance(store.inbox, DatabaseInbox)
        store.inbox = StreamInbox(shared.stream, store.inbox, keep_every=settings.redis.lease / 3)
    deliveries = Deliveries(
        store.inbox, replay_max_age=settings.inbox.replay_max_age, keep_done=settings.inbox.keep_done
    )
    flow = LinkFlow(
        resolver=resolver,
        downloads=downloads,
        store=store,
        limits=RateLimits(
            user_per_minute=limits.user_per_minute,
            chat_per_minute=limits.chat_per_minute,
            windows=shared.windows,
        ),
        gate=ConcurrencyGate(limits.concurrency, notice_after=limits.queue_notice_after),
        metadata=metadata,
        locks=shared.locks,
        metrics=metrics,
        deliveries=deliveries,
        quality=Quality(settings.download.quality),
    )
    return App(
        settings=settings,
        store=store,
        downloads=downloads,
        resolver=resolver,
        flow=flow,
        deliveries=deliveries,
        metadata=metadata,
        clients=clients,
        shared=shared,
        metrics=metrics,
        spool=spool,
    )
