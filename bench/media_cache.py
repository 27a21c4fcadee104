"""Media cache: what a lookup costs from the in-memory layer versus a SQLite round trip.

Run: .venv/bin/python bench/media_cache.py [--lookups N]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from services.store.cache import MediaCache
from services.store.sqlite import SqliteDatabase


async def timed(cache: MediaCache, lookups: int, posts: int) -> float:
    """Microseconds per `get` over `lookups` lookups cycling through `posts` posts."""
    started = time.perf_counter()
    for n in range(lookups):
        ref = await cache.get("telegram", str(n % posts), "video")
        assert ref is not None
    return (time.perf_counter() - started) / lookups * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lookups", type=int, default=20_000)
    parser.add_argument("--posts", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = await SqliteDatabase.open(Path(tmp) / "bench.sqlite3")
        writer = MediaCache(db)
        for n in range(args.posts):
            await writer.put("telegram", str(n), "video", f"FILE-ID-{n:08d}", size=1_500_000)
            for photo in range(3):
                await writer.put("telegram", str(n), f"photo:{photo}", f"PHOTO-{n}-{photo}")
        memory = MediaCache(db, memory_posts=args.posts)
        await timed(memory, args.posts, args.posts)  # load every post once
        hit_us = await timed(memory, args.lookups, args.posts)
        sql_us = await timed(MediaCache(db, memory_posts=0), args.lookups, args.posts)  # every get queries
        await db.close()
    print(f"{args.lookups:,} lookups over {args.posts:,} posts (4 variants each)")
    print(f"memory hit     {hit_us:8.2f} µs per get")
    print(f"SQLite query   {sql_us:8.2f} µs per get   ({sql_us / hit_us:,.0f}x)")


if __name__ == "__main__":
    asyncio.run(main())
