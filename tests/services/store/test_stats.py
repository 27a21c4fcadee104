"""Operator stats: every figure checked against values worked out by hand from a small, known log."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from services.errors import StoreError
from services.store.db import Database
from services.store.stats import BackendErrors, compute_stats, nearest_rank, render_stats_table
from services.store.usage import UsageEvent, UsageLog

NOW = datetime(2024, 5, 10, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)
D = timedelta(days=1)

# (age, platform, action, user, chat, target, backend, outcome, bytes, latency, cache hit, units)
LOG = [
    (1 * H, "telegram", "link", 1, 10, "A", "ttsave", "ok", 1000, 5, False, 0),
    (2 * H, "telegram", "link", 1, 10, "A", "ttsave", "ok", 0, 20, True, 0),
    (1 * D, "telegram", "link", 2, 11, "B", "ttsave", "upstream_error", 0, 300, False, 0),
    (D + timedelta(minutes=1), "telegram", "link", 2, 11, "B", "web", "ok", 5000, 250, False, 0),
    (2 * D, "discord", "link", 1, 20, "A", "web", "ok", 0, 40, True, 0),
    (3 * D, "discord", "post", 3, 20, "C", "ensembledata", "ok", 0, 60, False, 2),
    (3 * D, "discord", "user", 3, 20, "someone", "ensembledata", "ok", 0, 70, False, 1),
    (4 * D, "telegram", "hashtag", 4, 12, "fyp", "research", "quota_exceeded", 0, 80, False, 0),
    (5 * D, "telegram", "audio", 4, 12, "C", "ttsave", "ok", 2000, 100, False, 0),
    (6 * D, "telegram", "stats", 5, 13, None, None, "ok", 0, 1000, False, 0),
    # Outside a 7-day period: before it, and after `now`.
    (8 * D, "telegram", "link", 6, 14, "Z", "web", "ok", 9, 1, True, 5),
    (-H, "telegram", "link", 7, 15, "Z", "web", "ok", 9, 1, True, 5),
]


async def fill(db: Database, *, hashed: bool = False) -> None:
    log = UsageLog(db, hash_user_ids=hashed, salt="salt" if hashed else "")
    for age, platform, action, user, chat, target, backend, outcome, sent, latency, hit, units in LOG:
        log.record(
            UsageEvent(
                platform=platform,
                action=action,
                user_id=user,
                chat_id=chat,
                target=target,
                backend=backend,
                outcome=outcome,
                bytes_sent=sent,
                latency_ms=latency,
                cache_hit=hit,
                units=units,
                at=NOW - age,
            )
        )
    await log.aclose()


@pytest.mark.parametrize(
    ("p", "n", "rank"),
    [
        (50, 1, 1),
        (95, 1, 1),
        (50, 2, 1),
        (50, 10, 5),
        (95, 10, 10),
        (95, 20, 19),
        (95, 21, 20),
        (1, 1000, 10),
    ],
)
def test_nearest_rank(p: int, n: int, rank: int) -> None:
    assert nearest_rank(p, n) == rank


@pytest.mark.parametrize("hashed", [False, True])
async def test_seven_days_by_hand(db: Database, hashed: bool) -> None:
    await fill(db, hashed=hashed)
    report = await compute_stats(db, days=7, now=NOW)
    assert (report.since, report.until, report.days) == (NOW - 7 * D, NOW, 7)
    assert report.requests == 10
    assert report.errors == 2 and report.error_rate == 0.2
    assert report.by_action == {"link": 5, "audio": 1, "hashtag": 1, "post": 1, "stats": 1, "user": 1}
    assert list(report.by_action) == ["link", "audio", "hashtag", "post", "stats", "user"]
    assert report.by_platform == {"telegram": 7, "discord": 3}
    assert report.by_outcome == {"ok": 8, "quota_exceeded": 1, "upstream_error": 1}
    # telegram users 1, 2, 4, 5 and discord users 1, 3: the same number on two platforms is two people.
    assert report.unique_users == 6
    assert report.unique_chats == 5  # telegram 10, 11, 12, 13; discord 20
    # "someone" (a user lookup) and "fyp" (a hashtag) are not posts.
    assert report.top_posts == (("A", 3), ("B", 2), ("C", 2))
    assert report.backends == (
        BackendErrors("ttsave", 4, 1),
        BackendErrors("ensembledata", 2, 0),
        BackendErrors("web", 2, 0),
        BackendErrors("research", 1, 1),
    )
    assert report.backends[0].error_rate == 0.25
    # Sorted: 5 20 40 60 70 80 100 250 300 1000. p50 is rank 5 (70; interpolation would say 75); p95 rank 10.
    assert (report.latency_p50_ms, report.latency_p95_ms) == (70, 1000)
    # Successful media replies: the ok links and the audio (5); hits among them: 2.
    assert (report.cache_hits, report.media_replies, report.cache_hit_ratio) == (2, 5, 0.4)
    assert report.units == 3
    assert report.bytes_sent == 8000


async def test_period_bounds_are_inclusive(db: Database) -> None:
    await fill(db)
    report = await compute_stats(db, days=1, now=NOW)
    assert report.requests == 3  # 1 h, 2 h and exactly 1 day ago; 1 day + 1 minute is out
    assert report.by_outcome == {"ok": 2, "upstream_error": 1}
    assert (report.latency_p50_ms, report.latency_p95_ms) == (20, 300)
    assert report.top_posts == (("A", 2), ("B", 1))


async def test_top_is_limited_and_ties_go_by_target(db: Database) -> None:
    await fill(db)
    report = await compute_stats(db, days=7, now=NOW, top=2)
    assert report.top_posts == (("A", 3), ("B", 2))


async def test_empty_period(db: Database) -> None:
    report = await compute_stats(db, days=7, now=NOW)
    assert report.requests == report.errors == report.unique_users == report.unique_chats == 0
    assert report.by_action == report.by_platform == report.by_outcome == {}
    assert report.top_posts == report.backends == ()
    assert report.latency_p50_ms is None and report.latency_p95_ms is None
    assert report.cache_hit_ratio is None and report.error_rate == 0
    text = render_stats_table(report)
    assert "requests        0" in text and "latency p50     -" in text
    assert json.loads(json.dumps(report.to_dict()))["requests"] == 0


async def test_period_must_be_positive(db: Database) -> None:
    with pytest.raises(StoreError, match="more than 0 days"):
        await compute_stats(db, days=0)


async def test_table_and_json(db: Database) -> None:
    await fill(db)
    report = await compute_stats(db, days=7, now=NOW)
    text = render_stats_table(report)
    lines = text.splitlines()
    assert lines[0] == "Usage 2024-05-03 12:00 to 2024-05-10 12:00 UTC (7 days)"
    for expected in (
        "requests        10",
        "errors          20.0% (2)",
        "unique users    6",
        "unique chats    5",
        "latency p50     70 ms",
        "latency p95     1,000 ms",
        "cache hits      40.0% (2 of 5 media replies)",
        "units spent     3",
        "bytes sent      8.0 KB",
        "by action  count",
        "link           5",
        "telegram         7",
        "upstream_error      1",
        "top posts  count",
        "A              3",
        "backend       requests  errors  error rate",
        "ttsave               4       1       25.0%",
        "research             1       1      100.0%",
    ):
        assert expected in lines, expected
    data = json.loads(json.dumps(report.to_dict()))
    assert data["requests"] == 10 and data["unique_users"] == 6
    assert data["latency_ms"] == {"p50": 70.0, "p95": 1000.0}
    assert data["top_posts"][0] == {"target": "A", "count": 3}
    assert data["backends"][-1] == {"backend": "research", "requests": 1, "errors": 1, "error_rate": 1.0}
    assert data["since"] == "2024-05-03T12:00:00+00:00" and data["cache_hit_ratio"] == 0.4
