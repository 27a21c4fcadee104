"""Builds the process-lifetime objects from Settings in one place, and closes them in one place."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bot.chat.flow import LinkFlow
from bot.chat.inbox import Deliveries
from bot.chat.interaction import Interactions
from bot.chat.lookups import Lookups
from bot.chat.settings import SettingsPanel
from bot.chat.stats import OperatorStats
from bot.config import Settings
from bot.engines import build_shared_state, open_database
from bot.metrics import BreakerGauges, Metrics
from bot.upstreams import build_metadata_service, metadata_client, tiktok_sessions, ttsave_client
from services.download.models import Quality
from services.download.service import DownloadService, build_backends
from services.download.spool_root import clear_stale, process_spool, remove_own, spool_root
from services.errors import NotConfigured
from services.links import ShortLinkResolver
from services.metadata.service import MetadataService
from services.ratelimit import ConcurrencyGate, RateLimits
from services.shared import SharedState
from services.shared.memory import memory_state
from services.store import Store
from services.store.inbox import DatabaseInbox
from services.store.stream_inbox import StreamInbox

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
    interactions: Interactions
    lookups: Lookups
    settings_panel: SettingsPanel
    operator_stats: OperatorStats
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
    interactions = Interactions(
        store=store,
        limits=RateLimits(
            user_per_minute=limits.user_per_minute,
            chat_per_minute=limits.chat_per_minute,
            windows=shared.windows,
        ),
        metrics=metrics,
    )
    flow = LinkFlow(
        resolver=resolver,
        downloads=downloads,
        store=store,
        interactions=interactions,
        gate=ConcurrencyGate(limits.concurrency, notice_after=limits.queue_notice_after),
        metadata=metadata,
        locks=shared.locks,
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
        interactions=interactions,
        lookups=Lookups(interactions=interactions, resolver=resolver, metadata=metadata),
        settings_panel=SettingsPanel(interactions=interactions, chats=store.chats),
        operator_stats=OperatorStats(interactions=interactions, store=store, downloads=downloads),
        metadata=metadata,
        clients=clients,
        shared=shared,
        metrics=metrics,
        spool=spool,
    )
