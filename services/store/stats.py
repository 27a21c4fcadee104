"""Operator stats over the usage log for a period, and their plain-text table.

Definitions (each figure covers rows with `since <= at <= until`):
- requests: rows; errors: rows whose outcome is not `ok`.
- unique users / chats: distinct (platform, id) pairs among rows that have one (hashes count the same way).
- top posts: targets of post actions (link, post, audio, inline) by number of rows, ties by target.
- per backend/provider: rows naming it, and how many of those did not end `ok`.
- latency p50 / p95: nearest rank over every row's latency — sort the n values ascending and take the one at
  1-based rank ceil(p·n / 100); so it is always a latency that was really measured. None without rows.
- cache-hit ratio: cache hits among successful media replies (actions link, audio, inline with outcome `ok`).
- units spent, bytes sent: sums.
- inbox: updates taken but not answered yet (now) and the age of the oldest; in the period, updates replayed
  after a restart, dropped as expired, and replayed ones whose reply may have gone out twice (duplicates).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from services.errors import StoreError
from services.store.db import Database
from services.store.inbox import InboxStats, inbox_stats
from services.store.usage import to_epoch

# Every query covers one period; the action lists are the module docstring's post and media actions.
# Portable SQL: PostgreSQL neither sums booleans nor compares an integer with a boolean, hence CASE.
_TOTALS = """
    SELECT count(*), coalesce(sum(CASE WHEN outcome <> 'ok' THEN 1 ELSE 0 END), 0),
           count(DISTINCT platform || ':' || user_id), count(DISTINCT platform || ':' || chat_id),
           coalesce(sum(units), 0), coalesce(sum(bytes_sent), 0),
           coalesce(sum(CASE WHEN cache_hit = 1 AND outcome = 'ok'
                             AND action IN ('link', 'audio', 'inline') THEN 1 ELSE 0 END), 0),
           coalesce(sum(CASE WHEN outcome = 'ok'
                             AND action IN ('link', 'audio', 'inline') THEN 1 ELSE 0 END), 0)
    FROM usage WHERE at >= :since AND at <= :until
"""
_BY_ACTION = """
    SELECT action, count(*) AS n FROM usage WHERE at >= :since AND at <= :until
    GROUP BY action ORDER BY n DESC, action
"""
_BY_PLATFORM = """
    SELECT platform, count(*) AS n FROM usage WHERE at >= :since AND at <= :until
    GROUP BY platform ORDER BY n DESC, platform
"""
_BY_OUTCOME = """
    SELECT outcome, count(*) AS n FROM usage WHERE at >= :since AND at <= :until
    GROUP BY outcome ORDER BY n DESC, outcome
"""
_TOP_POSTS = """
    SELECT target, count(*) AS n FROM usage WHERE at >= :since AND at <= :until
    AND target IS NOT NULL AND action IN ('link', 'post', 'audio', 'inline')
    GROUP BY target ORDER BY n DESC, target LIMIT :top
"""
_BACKENDS = """
    SELECT backend, count(*) AS n, sum(CASE WHEN outcome <> 'ok' THEN 1 ELSE 0 END)
    FROM usage WHERE at >= :since AND at <= :until
    AND backend IS NOT NULL GROUP BY backend ORDER BY n DESC, backend
"""
_LATENCY_AT_RANK = """
    SELECT latency_ms FROM usage WHERE at >= :since AND at <= :until
    ORDER BY latency_ms LIMIT 1 OFFSET :offset
"""


@dataclass(frozen=True, slots=True)
class BackendErrors:
    """How often one backend or provider was used in the period and how often it failed."""

    backend: str
    requests: int
    errors: int

    @property
    def error_rate(self) -> float:
        """Errors per request, 0..1."""
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True, slots=True)
class StatsReport:
    """Usage figures for one period; see the module docstring for how each is defined."""

    since: datetime
    until: datetime
    requests: int
    errors: int
    by_action: dict[str, int]
    by_platform: dict[str, int]
    by_outcome: dict[str, int]
    unique_users: int
    unique_chats: int
    top_posts: tuple[tuple[str, int], ...]
    backends: tuple[BackendErrors, ...]
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    cache_hits: int
    media_replies: int
    units: int
    bytes_sent: int
    inbox: InboxStats = field(default_factory=InboxStats.empty)

    @property
    def days(self) -> float:
        """Length of the period in days."""
        return (self.until - self.since) / timedelta(days=1)

    @property
    def error_rate(self) -> float:
        """Errors per request, 0..1."""
        return self.errors / self.requests if self.requests else 0.0

    @property
    def cache_hit_ratio(self) -> float | None:
        """Cache hits per successful media reply, 0..1; None without media replies."""
        return self.cache_hits / self.media_replies if self.media_replies else None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON: times in ISO 8601, ratios as fractions."""
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "days": self.days,
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "by_action": dict(self.by_action),
            "by_platform": dict(self.by_platform),
            "by_outcome": dict(self.by_outcome),
            "unique_users": self.unique_users,
            "unique_chats": self.unique_chats,
            "top_posts": [{"target": target, "count": count} for target, count in self.top_posts],
            "backends": [
                {"backend": b.backend, "requests": b.requests, "errors": b.errors, "error_rate": b.error_rate}
                for b in self.backends
            ],
            "latency_ms": {"p50": self.latency_p50_ms, "p95": self.latency_p95_ms},
            "cache_hits": self.cache_hits,
            "media_replies": self.media_replies,
            "cache_hit_ratio": self.cache_hit_ratio,
            "units": self.units,
            "bytes_sent": self.bytes_sent,
            "inbox": self.inbox.to_dict(),
        }


def nearest_rank(p: int, n: int) -> int:
    """The 1-based rank of the p-th percentile among n sorted values: ceil(p·n / 100), at least 1."""
    return max(1, -(-p * n // 100))


async def compute_stats(
    db: Database, *, days: float, now: datetime | None = None, top: int = 10
) -> StatsReport:
    """Figures for the `days` up to `now` (default: the current time)."""
    if days <= 0:
        raise StoreError("the stats period must be more than 0 days")
    until = now or datetime.now(UTC)
    if until.tzinfo is None:
        until = until.replace(tzinfo=UTC)
    since = until - timedelta(days=days)
    period = {"since": to_epoch(since), "until": to_epoch(until)}

    totals = await db.fetchone(_TOTALS, period)
    assert totals is not None  # an aggregate without GROUP BY always yields one row
    requests, errors, users, chats, units, bytes_sent, hits, media_replies = (int(v) for v in totals)

    async def counts(sql: str) -> dict[str, int]:
        return {str(name): int(n) for name, n in await db.fetchall(sql, period)}

    top_posts = await db.fetchall(_TOP_POSTS, {**period, "top": top})
    backends = await db.fetchall(_BACKENDS, period)

    async def percentile(p: int) -> float | None:
        if not requests:
            return None
        row = await db.fetchone(_LATENCY_AT_RANK, {**period, "offset": nearest_rank(p, requests) - 1})
        return float(row[0]) if row else None

    return StatsReport(
        since=since,
        until=until,
        requests=requests,
        errors=errors,
        by_action=await counts(_BY_ACTION),
        by_platform=await counts(_BY_PLATFORM),
        by_outcome=await counts(_BY_OUTCOME),
        unique_users=users,
        unique_chats=chats,
        top_posts=tuple((str(target), int(n)) for target, n in top_posts),
        backends=tuple(BackendErrors(str(name), int(n), int(failed)) for name, n, failed in backends),
        latency_p50_ms=await percentile(50),
        latency_p95_ms=await percentile(95),
        cache_hits=hits,
        media_replies=media_replies,
        units=units,
        bytes_sent=bytes_sent,
        inbox=await inbox_stats(db, since=period["since"], now=to_epoch(until)),
    )


def render_stats_table(report: StatsReport) -> str:
    """The report as a plain-text table (monospace), the same on every platform."""
    lines = [
        f"Usage {_when(report.since)} to {_when(report.until)} UTC ({_days(report.days)})",
        "",
        f"{'requests':<16}{report.requests:,}",
        f"{'errors':<16}{_percent(report.error_rate)} ({report.errors:,})",
        f"{'unique users':<16}{report.unique_users:,}",
        f"{'unique chats':<16}{report.unique_chats:,}",
        f"{'latency p50':<16}{_ms(report.latency_p50_ms)}",
        f"{'latency p95':<16}{_ms(report.latency_p95_ms)}",
        f"{'cache hits':<16}{_cache_hits(report)}",
        f"{'units spent':<16}{report.units:,}",
        f"{'bytes sent':<16}{_bytes(report.bytes_sent)}",
        "",
        f"{'inbox open':<16}{report.inbox.unfinished:,} (oldest {_age(report.inbox.oldest_age_s)})",
        f"{'replayed':<16}{report.inbox.replayed:,}",
        f"{'expired':<16}{report.inbox.expired:,}",
        f"{'duplicates':<16}{report.inbox.duplicates:,} (at most; replies that may have gone out twice)",
    ]
    for title, table in (
        ("by action", report.by_action),
        ("by platform", report.by_platform),
        ("by outcome", report.by_outcome),
    ):
        lines += ["", *_columns((title, "count"), [(name, f"{n:,}") for name, n in table.items()])]
    lines += ["", *_columns(("top posts", "count"), [(t, f"{n:,}") for t, n in report.top_posts])]
    lines += [
        "",
        *_columns(
            ("backend", "requests", "errors", "error rate"),
            [
                (b.backend, f"{b.requests:,}", f"{b.errors:,}", _percent(b.error_rate))
                for b in report.backends
            ],
        ),
    ]
    return "\n".join(lines)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "none"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _columns(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """A header and rows: the first column left-aligned, the others right-aligned; `(none)` when empty."""
    if not rows:
        return [header[0], "(none)"]
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return [
        "  ".join([row[0].ljust(widths[0]), *(row[i].rjust(widths[i]) for i in range(1, len(row)))]).rstrip()
        for row in table
    ]


def _cache_hits(report: StatsReport) -> str:
    if report.cache_hit_ratio is None:
        return "- (no media replies)"
    ratio = _percent(report.cache_hit_ratio)
    return f"{ratio} ({report.cache_hits:,} of {report.media_replies:,} media replies)"


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def _days(value: float) -> str:
    return f"{value:g} day" if value == 1 else f"{value:g} days"


def _percent(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio * 100:.1f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms"


def _bytes(count: int) -> str:
    if count < 1000:
        return f"{count:,} B"
    size = count / 1000
    for unit in ("KB", "MB"):
        if size < 1000:
            return f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:,.1f} GB"
