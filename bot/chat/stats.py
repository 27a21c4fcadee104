"""The operator's /stats message, the same on every platform: one compact block per period."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from bot.chat.i18n import t
from bot.chat.interaction import NOT_ALLOWED, Admitted, ChatContext, Interactions
from services.download.service import DownloadService
from services.health import BackendFigures
from services.store import Store
from services.store.stats import StatsReport

PERIODS = ((1, "today"), (7, "7 days"), (30, "30 days"))


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f} ms"


def stats_block(report: StatsReport, label: str, lang: str) -> list[str]:
    """Lines for one period: requests, users, chats, errors per backend, latency, cache hits, units."""
    lines = [
        t(lang, "stats.title", days=label),
        f"requests {report.requests} · users {report.unique_users} · chats {report.unique_chats}",
        f"errors {report.errors} ({report.error_rate:.1%})",
        f"latency p50 {_ms(report.latency_p50_ms)} · p95 {_ms(report.latency_p95_ms)}",
    ]
    ratio = report.cache_hit_ratio
    lines.append(
        f"cache hits {report.cache_hits}/{report.media_replies}"
        + (f" ({ratio:.0%})" if ratio is not None else "")
        + f" · units {report.units}"
    )
    if report.backends:
        lines.append(
            "backends: "
            + ", ".join(f"{b.backend} {b.requests} req, {b.error_rate:.0%} err" for b in report.backends)
        )
    if report.top_posts:
        lines.append("top: " + ", ".join(f"{target} ×{count}" for target, count in report.top_posts[:3]))
    inbox = report.inbox
    oldest = "" if inbox.oldest_age_s is None else f", oldest {inbox.oldest_age_s:.0f} s"
    lines.append(
        f"inbox: open {inbox.unfinished}{oldest} · replayed {inbox.replayed} · expired {inbox.expired}"
        f" · duplicates ≤ {inbox.duplicates}"
    )
    return lines


def backend_lines(figures: Sequence[BackendFigures]) -> list[str]:
    """Per download backend since start-up: requests, successes, p50/p95, share served, the breaker now."""
    lines = ["download backends (since start-up)"]
    for f in figures:
        breaker = f.breaker.value.replace("_", "-")
        if f.retry_in is not None:
            breaker += f" ({f.retry_in:.0f}s left)"
        lines.append(
            f"{f.backend}: {f.requests} req, {f.successes} ok, p50 {_ms(f.p50_ms)} · p95 {_ms(f.p95_ms)}, "
            f"{f.share:.0%} served, {f.skipped} skipped, breaker {breaker} — {f.status}"
        )
    return lines


@dataclass(frozen=True, slots=True)
class StatsShown:
    """What /stats answers: the blocks of lines to show, or a refusal (`allowed` false, no blocks)."""

    allowed: bool
    blocks: list[list[str]] = field(default_factory=list)


class OperatorStats:
    """The /stats figures for the bot's operators: the usage log per period, the download backends now."""

    def __init__(self, *, interactions: Interactions, store: Store, downloads: DownloadService) -> None:
        self.interactions = interactions
        self.store = store
        self.downloads = downloads

    @asynccontextmanager
    async def report(
        self,
        ctx: ChatContext,
        operators: Collection[int | str],
        *,
        admitted: Admitted | None = None,
    ) -> AsyncIterator[StatsShown]:
        """The figures for an operator (`admitted` is called before they are gathered), else a refusal."""
        async with self.interactions.track(ctx, "stats") as tracker:
            if ctx.user_id not in operators:
                tracker.outcome = NOT_ALLOWED
                yield StatsShown(allowed=False)
                return
            if admitted is not None:
                await admitted()
            await self.store.usage.flush()  # the figures include everything recorded so far
            blocks = [
                stats_block(await self.store.stats(days), label, ctx.language) for days, label in PERIODS
            ]
            blocks.append(backend_lines(self.downloads.figures()))
            yield StatsShown(allowed=True, blocks=blocks)
