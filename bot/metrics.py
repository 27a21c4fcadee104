"""Prometheus metrics (prometheus-client): what the services report, turned into counters, and `/metrics`.

The services never import this: the download service reports each attempt through its `AttemptObserver`,
the link flow reports each interaction when it ends, the frontends count updates as they arrive, and the
gauges (breakers, inbox) are read from the app when scraped. One registry per process, not the global one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from services.download.service import Attempt, DownloadService
from services.health import BreakerState

log = logging.getLogger("tiktok_bot.metrics")

# Downloads run from well under a second (a small video on loopback) to minutes (a large one over a slow CDN).
DOWNLOAD_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
LOOP_LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class GaugeSource(Protocol):
    """Something with figures read at scrape time: (metric name, help, labels, value) rows."""

    def gauges(self) -> Iterable[tuple[str, str, dict[str, str], float]]:
        """The current figures."""
        ...


class _ScrapeTime(Collector):
    """Gauges computed when scraped, from the sources registered with `Metrics.watch`."""

    def __init__(self) -> None:
        self.sources: list[GaugeSource] = []

    def collect(self) -> Iterator[Metric]:
        families: dict[str, GaugeMetricFamily] = {}
        for source in self.sources:
            try:
                rows = list(source.gauges())
            except Exception:
                log.exception("a metrics source failed")
                continue
            for name, help_text, labels, value in rows:
                family = families.get(name)
                if family is None:
                    family = families[name] = GaugeMetricFamily(name, help_text, labels=sorted(labels))
                family.add_metric([labels[k] for k in sorted(labels)], value)
        yield from families.values()


class Metrics:
    """The bot's metrics in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        GCCollector(registry=r)
        self.updates = Counter(
            "tiktok_bot_updates_received", "Updates taken from a platform", ["platform", "kind"], registry=r
        )
        self.replies = Counter(
            "tiktok_bot_replies",
            "Interactions finished (one usage row each), by outcome",
            ["platform", "action", "outcome"],
            registry=r,
        )
        self.reply_seconds = Histogram(
            "tiktok_bot_reply_seconds",
            "Time from a request to its reply",
            ["platform", "action"],
            buckets=DOWNLOAD_BUCKETS,
            registry=r,
        )
        self.cache_hits = Counter(
            "tiktok_bot_cache_hits",
            "Interactions served from a cache (sent media re-sent by reference, cached metadata)",
            ["platform", "action"],
            registry=r,
        )
        self.downloads = Counter(
            "tiktok_bot_download_attempts",
            "Download attempts by backend and outcome (ok or the error code)",
            ["backend", "outcome"],
            registry=r,
        )
        self.download_seconds = Histogram(
            "tiktok_bot_download_seconds",
            "Time one download attempt took, by backend",
            ["backend"],
            buckets=DOWNLOAD_BUCKETS,
            registry=r,
        )
        self.loop_lag = Histogram(
            "tiktok_bot_event_loop_lag_seconds",
            "How late the event loop woke a timer: time the loop was busy with something else",
            buckets=LOOP_LAG_BUCKETS,
            registry=r,
        )
        self.loop_lag_last = Gauge(
            "tiktok_bot_event_loop_lag_last_seconds", "The latest event-loop lag sample", registry=r
        )
        self.inbox_depth = Gauge(
            "tiktok_bot_inbox_depth", "Updates in the shared stream not yet answered (replicas)", registry=r
        )
        self.inbox_lag = Gauge(
            "tiktok_bot_inbox_lag_seconds",
            "Age of the oldest unanswered update in the shared stream",
            registry=r,
        )
        self.poller_leader = Gauge(
            "tiktok_bot_poller_leader", "1 while this replica holds the Telegram polling lease", registry=r
        )
        self._scrape = _ScrapeTime()
        r.register(self._scrape)
        # (metric, label values) -> its child: `labels()` validates, locks and looks up on every call, and
        # the per-message metrics take it three or four times a message.
        self._children: dict[tuple[object, tuple[str, ...]], Any] = {}

    def _child(self, metric: Counter | Histogram, *values: str) -> Any:
        """`metric.labels(*values)`, remembered (the label sets are few: platforms × actions × outcomes)."""
        key = (metric, values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    # --- what the services and frontends report ---

    def attempted(self, attempt: Attempt) -> None:
        """One download attempt ended (the download service's AttemptObserver)."""
        self._child(self.downloads, attempt.backend, attempt.error_code or "ok").inc()
        self._child(self.download_seconds, attempt.backend).observe(attempt.seconds)

    def received(self, platform: str, kind: str) -> None:
        """An update arrived."""
        self._child(self.updates, platform, kind).inc()

    def replied(self, platform: str, action: str, outcome: str, seconds: float, cache_hit: bool) -> None:
        """An interaction ended."""
        self._child(self.replies, platform, action, outcome).inc()
        self._child(self.reply_seconds, platform, action).observe(seconds)
        if cache_hit:
            self._child(self.cache_hits, platform, action).inc()

    def watch(self, source: GaugeSource) -> None:
        """Read `source`'s gauges at every scrape."""
        self._scrape.sources.append(source)

    # --- exposition ---

    def render(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)

    async def watch_loop_lag(self, interval: float = 0.5) -> None:
        """Sample the event loop's lag every `interval` seconds until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(interval)
            lag = max(0.0, loop.time() - started - interval)
            self.loop_lag.observe(lag)
            self.loop_lag_last.set(lag)


class BreakerGauges:
    """Each download backend's circuit breaker, one sample per state (1 for the state it is in)."""

    def __init__(self, downloads: DownloadService) -> None:
        self._downloads = downloads

    def gauges(self) -> Iterable[tuple[str, str, dict[str, str], float]]:
        """The breakers now."""
        for figures in self._downloads.figures():
            for state in BreakerState:
                yield (
                    "tiktok_bot_breaker_state",
                    "Download backend circuit breakers: 1 for the state each is in",
                    {"backend": figures.backend, "state": state.value},
                    1.0 if figures.breaker is state else 0.0,
                )


def metrics_handler(metrics: Metrics) -> Callable[[web.Request], Awaitable[web.Response]]:
    """`GET /metrics` in the Prometheus text format."""

    async def handle(request: web.Request) -> web.Response:
        body = metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return handle


@contextlib.asynccontextmanager
async def loop_lag_watch(metrics: Metrics, interval: float = 0.5) -> AsyncIterator[None]:
    """Run the event-loop lag sampler for the body."""
    task = asyncio.create_task(metrics.watch_loop_lag(interval), name="loop-lag")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
