"""The metrics registry: what the services report becomes samples; scrape-time gauges; event-loop lag."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from prometheus_client.parser import text_string_to_metric_families

from bot.metrics import Metrics, loop_lag_watch
from services.download.service import Attempt


def test_download_attempts_by_backend_and_outcome() -> None:
    metrics = Metrics()
    metrics.attempted(Attempt("ttsave", 0.3, "upstream_timeout"))
    metrics.attempted(Attempt("web", 1.2))
    sample = metrics.registry.get_sample_value
    assert (
        sample("tiktok_bot_download_attempts_total", {"backend": "ttsave", "outcome": "upstream_timeout"})
        == 1
    )
    assert sample("tiktok_bot_download_attempts_total", {"backend": "web", "outcome": "ok"}) == 1
    assert sample("tiktok_bot_download_seconds_sum", {"backend": "web"}) == 1.2


def test_cache_hits_are_counted_apart_from_replies() -> None:
    metrics = Metrics()
    metrics.replied("telegram", "link", "ok", 0.05, cache_hit=True)
    metrics.replied("telegram", "link", "ok", 2.0, cache_hit=False)
    sample = metrics.registry.get_sample_value
    assert (
        sample("tiktok_bot_replies_total", {"platform": "telegram", "action": "link", "outcome": "ok"}) == 2
    )
    assert sample("tiktok_bot_cache_hits_total", {"platform": "telegram", "action": "link"}) == 1


class Breakers:
    def __init__(self) -> None:
        self.state = {"ttsave": 0.0, "web": 2.0}

    def gauges(self) -> Iterable[tuple[str, str, dict[str, str], float]]:
        for backend, value in self.state.items():
            yield "tiktok_bot_breaker_state", "0 closed, 1 half-open, 2 open", {"backend": backend}, value


class Broken:
    def gauges(self) -> Iterable[tuple[str, str, dict[str, str], float]]:
        raise RuntimeError("source down")


def test_scrape_time_gauges_are_read_at_every_scrape() -> None:
    metrics = Metrics()
    breakers = Breakers()
    metrics.watch(Broken())  # one failing source does not take the scrape down
    metrics.watch(breakers)
    text = metrics.render().decode()
    assert 'tiktok_bot_breaker_state{backend="web"} 2.0' in text
    breakers.state["web"] = 0.0
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    assert {s.labels["backend"]: s.value for s in families["tiktok_bot_breaker_state"].samples} == {
        "ttsave": 0.0,
        "web": 0.0,
    }


async def test_event_loop_lag_is_measured() -> None:
    metrics = Metrics()
    async with loop_lag_watch(metrics, interval=0.02):
        await asyncio.sleep(0.05)
        time.sleep(0.2)  # noqa: ASYNC251 -- blocking the loop on purpose: the next sample must see it
        await asyncio.sleep(0.1)
    sample = metrics.registry.get_sample_value
    assert sample("tiktok_bot_event_loop_lag_seconds_count", {}) >= 2
    assert sample("tiktok_bot_event_loop_lag_seconds_sum", {}) >= 0.15
