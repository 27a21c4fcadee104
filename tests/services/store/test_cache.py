"""The sent-media cache: put, get, get_many, invalidate, persistence and the in-memory layer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from services.store.cache import MediaCache
from services.store.db import Database
from tests.services.store.conftest import OpenDb


def count_queries(monkeypatch: pytest.MonkeyPatch, db: Database) -> list[str]:
    """Spy on the database: every read query the cache sends."""
    queries: list[str] = []
    original = db.fetchall

    async def spy(sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        queries.append(sql)
        return await original(sql, params)

    monkeypatch.setattr(db, "fetchall", spy)
    return queries


async def test_put_get_and_variants(db: Database) -> None:
    cache = MediaCache(db)
    assert await cache.get("telegram", "7300", "video") is None
    await cache.put("telegram", "7300", "video", "VIDEO-FILE-ID", size=1_234_567)
    await cache.put("telegram", "7300", "audio", "AUDIO-FILE-ID")
    for n in range(12):
        await cache.put("telegram", "7301", f"photo:{n}", f"PHOTO-{n}")
    assert await cache.get("telegram", "7300", "video") == "VIDEO-FILE-ID"
    assert await cache.get("telegram", "7300", "audio") == "AUDIO-FILE-ID"
    assert await cache.get("discord", "7300", "video") is None  # platforms never share references
    photos = await cache.get_many("telegram", "7301", "photo:")
    assert photos == {f"photo:{n}": f"PHOTO-{n}" for n in range(12)}
    assert await cache.get_many("telegram", "7300", "photo:") == {}
    assert await db.fetchall("SELECT size FROM media_cache WHERE variant = 'video'") == [(1_234_567,)]


async def test_put_replaces(db: Database) -> None:
    cache = MediaCache(db)
    await cache.put("discord", "1", "video", "https://cdn.example/old.mp4", size=10)
    await cache.put("discord", "1", "video", "https://cdn.example/new.mp4", size=20)
    assert await cache.get("discord", "1", "video") == "https://cdn.example/new.mp4"
    assert await db.fetchall("SELECT ref, size FROM media_cache") == [("https://cdn.example/new.mp4", 20)]


async def test_invalidate_one_variant_or_the_post(db: Database) -> None:
    cache = MediaCache(db)
    for variant in ("video", "audio", "photo:0", "photo:1"):
        await cache.put("telegram", "9", variant, f"ref-{variant}")
    await cache.put("telegram", "10", "video", "other-post")
    assert await cache.get("telegram", "9", "video") == "ref-video"  # now in memory too
    assert await cache.invalidate("telegram", "9", "video") == 1
    assert await cache.get("telegram", "9", "video") is None
    assert await cache.get("telegram", "9", "audio") == "ref-audio"
    assert await cache.invalidate("telegram", "9") == 3
    assert await cache.get_many("telegram", "9", "") == {}
    assert await cache.get("telegram", "10", "video") == "other-post"
    assert await cache.invalidate("telegram", "9") == 0
    # Gone from the file, not only from memory.
    assert await MediaCache(db).get_many("telegram", "9", "") == {}


async def test_survives_a_restart(open_db: OpenDb) -> None:
    db = await open_db()
    await MediaCache(db).put("telegram", "7300", "video", "FILE-ID")
    await db.close()
    db = await open_db()
    assert await MediaCache(db).get("telegram", "7300", "video") == "FILE-ID"
    await db.close()


async def test_a_repeat_lookup_costs_no_query(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    await MediaCache(db).put("telegram", "7301", "photo:0", "P0")
    cache = MediaCache(db)
    queries = count_queries(monkeypatch, db)
    assert await cache.get("telegram", "7301", "photo:0") == "P0"
    assert len(queries) == 1
    for _ in range(100):
        assert await cache.get("telegram", "7301", "photo:0") == "P0"
        assert await cache.get("telegram", "7301", "video") is None  # a known miss, too
        assert await cache.get_many("telegram", "7301", "photo:") == {"photo:0": "P0"}
    await cache.put("telegram", "7301", "photo:1", "P1")  # write-through keeps memory current
    assert await cache.get_many("telegram", "7301", "photo:") == {"photo:0": "P0", "photo:1": "P1"}
    assert len(queries) == 1
    assert await cache.get("telegram", "other", "video") is None
    assert await cache.get("telegram", "other", "video") is None
    assert len(queries) == 2


async def test_memory_is_bounded(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = MediaCache(db, memory_posts=2)
    queries = count_queries(monkeypatch, db)
    for post in ("a", "b", "a", "c", "a", "b"):
        await cache.get("telegram", post, "video")
    # a, b loaded; a hit (a most recent); c evicts b; a hit; b loaded again.
    assert len(queries) == 4


@pytest.mark.parametrize("write", ["put", "invalidate"])
async def test_a_load_that_overlaps_a_write_is_not_remembered(
    db: Database, monkeypatch: pytest.MonkeyPatch, write: str
) -> None:
    cache = MediaCache(db)
    await MediaCache(db).put("telegram", "1", "video", "OLD")
    original = db.fetchall
    loaded = asyncio.Event()
    release = asyncio.Event()

    async def slow(sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        rows = await original(sql, params)
        loaded.set()
        await release.wait()  # the write lands after the read but before the reader resumes
        return rows

    monkeypatch.setattr(db, "fetchall", slow)
    reader = asyncio.create_task(cache.get("telegram", "1", "video"))
    await loaded.wait()
    if write == "put":
        await cache.put("telegram", "1", "video", "NEW")
    else:
        await cache.invalidate("telegram", "1", "video")
    release.set()
    assert await reader == "OLD"  # it read before the write: fine to answer that once
    monkeypatch.setattr(db, "fetchall", original)
    assert await cache.get("telegram", "1", "video") == ("NEW" if write == "put" else None)
