"""Usage log: events recorded per second while the event loop keeps serving, and the worst loop lag seen.

A ticker task asks to wake every millisecond and records how late it woke (the event-loop lag). Meanwhile
"handlers" record a burst of events in chunks, awaiting between chunks as real handlers do, with the usage
log's writer batching them into SQLite. Targets: >= 20,000 events/s end to end, lag <= 20 ms.

Scenarios:
- spin:  chunks of 100 with `await asyncio.sleep(0)` between — the loop never idles (the worst case).
- paced: chunks of 100 with `await asyncio.sleep(0.001)` between — handlers that wait on I/O.
- hashed: as paced, with user and chat ids stored as salted hashes.

Columns: events/s = events / time until the last one was committed; record() µs = building the event and
recording it, per event; in burst = rows committed by the time the burst ended; lag = how late the 1 ms ticker
woke, during the burst and over the whole run (burst and final flush).

With `--database-url postgresql://…` the same scenarios write to that PostgreSQL database instead of a fresh
SQLite file (its usage table is emptied before each run): the store's other engine, for comparison.

Run: .venv/bin/python bench/usage_log.py [--events N] [--runs N] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from services.store import Store, UsageEvent
from services.store.db import Database
from services.store.postgres import PostgresDatabase
from services.store.sqlite import SqliteDatabase


@dataclass
class Ticker:
    """Measures event-loop lag: how late a 1 ms sleep wakes."""

    interval: float = 0.001
    worst: float = 0.0
    ticks: int = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.perf_counter()
            await asyncio.sleep(self.interval)
            lag = time.perf_counter() - started - self.interval
            self.worst = max(self.worst, lag)
            self.ticks += 1


async def open_database(tmp: str, url: str | None) -> Database:
    """A fresh SQLite file, or the PostgreSQL database at `url` with its usage table emptied."""
    if url is None:
        return await SqliteDatabase.open(Path(tmp) / "bench.sqlite3")
    db = await PostgresDatabase.open(url)
    await db.execute("DELETE FROM usage")
    return db


async def scenario(
    name: str, events: int, pause: float, hashed: bool, url: str | None = None, chunk: int = 100
) -> dict[str, float]:
    """One burst; returns its figures."""
    with tempfile.TemporaryDirectory() as tmp:
        store = await Store.open(
            await open_database(tmp, url),
            hash_user_ids=hashed,
            salt="bench-salt" if hashed else "",
        )
        stop = asyncio.Event()
        ticker = Ticker()
        ticking = asyncio.create_task(ticker.run(stop))
        await asyncio.sleep(0.01)
        record_s = 0.0
        started = time.perf_counter()
        for first in range(0, events, chunk):
            t0 = time.perf_counter()
            for n in range(first, min(first + chunk, events)):
                store.usage.record(
                    UsageEvent(
                        platform="telegram",
                        action="link",
                        chat_id=-1000000000000 - n % 500,
                        chat_type="supergroup",
                        user_id=100000000 + n % 5000,
                        target=str(7300000000000000000 + n % 1000),
                        backend="ttsave",
                        bytes_sent=1_500_000,
                        latency_ms=850.0,
                        cache_hit=n % 3 == 0,
                    )
                )
            record_s += time.perf_counter() - t0
            await asyncio.sleep(pause)
        burst_s = time.perf_counter() - started
        written_in_burst = store.usage.written
        lag_in_burst = ticker.worst
        await store.usage.flush()
        total_s = time.perf_counter() - started
        stop.set()
        await ticking
        count = await store.db.fetchone("SELECT count(*) FROM usage")
        dropped = store.usage.dropped
        await store.aclose()
    assert count == (events - dropped,), count
    return {
        "events": events,
        "burst_s": burst_s,
        "total_s": total_s,
        "end_to_end_per_s": events / total_s,
        "record_us": record_s / events * 1e6,
        "written_in_burst": written_in_burst,
        "lag_in_burst_ms": lag_in_burst * 1000,
        "worst_lag_ms": ticker.worst * 1000,
        "ticks": ticker.ticks,
        "dropped": dropped,
    }


async def idle_lag(seconds: float = 1.0) -> float:
    """The worst lag of the ticker alone: this machine's scheduling noise, for scale."""
    stop = asyncio.Event()
    ticker = Ticker()
    ticking = asyncio.create_task(ticker.run(stop))
    await asyncio.sleep(seconds)
    stop.set()
    await ticking
    return ticker.worst * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database-url", help="a PostgreSQL URL to write to instead of a SQLite file")
    args = parser.parse_args()
    engine = "PostgreSQL" if args.database_url else "SQLite"
    medians = f"median of {args.runs} runs (worst lag: max)"
    print(f"{args.events:,} events per run into {engine}, chunks of 100; {medians}")
    print(f"idle loop, ticker alone: worst lag {await idle_lag():.1f} ms")
    print(
        f"{'scenario':<8} {'events/s':>10} {'record() µs':>12} {'in burst':>9} {'burst s':>8} "
        f"{'total s':>8} {'lag burst ms':>13} {'worst lag ms':>13} {'dropped':>8}"
    )
    for name, pause, hashed in (("spin", 0.0, False), ("paced", 0.001, False), ("hashed", 0.001, True)):
        runs = [await scenario(name, args.events, pause, hashed, args.database_url) for _ in range(args.runs)]

        def med(key: str, runs: list[dict[str, float]] = runs) -> float:
            return statistics.median(run[key] for run in runs)

        worst = max(run["worst_lag_ms"] for run in runs)
        print(
            f"{name:<8} {med('end_to_end_per_s'):>10,.0f} {med('record_us'):>12.2f} "
            f"{med('written_in_burst'):>9,.0f} {med('burst_s'):>8.2f} {med('total_s'):>8.2f} "
            f"{med('lag_in_burst_ms'):>13.1f} {worst:>13.1f} {sum(run['dropped'] for run in runs):>8,.0f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
