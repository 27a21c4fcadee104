"""The inbox contract: durable puts that recognise known keys, completion with usage rows, replay counts."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from services.errors import StoreError
from services.store import Store
from services.store.db import Batch
from services.store.inbox import DUPLICATE, SENDING, InboxEntry, inbox_stats
from services.store.usage import UsageEvent, collect_usage
from tests.services.store.conftest import OpenStore


def entry(key: str, *, age: float = 0.0, platform: str = "telegram", kind: str = "update") -> InboxEntry:
    return InboxEntry(platform, key, kind, f'{{"update_id": "{key}"}}', time.time() - age)


def event(target: str, **fields: Any) -> UsageEvent:
    return UsageEvent(platform="telegram", action="link", target=target, **fields)


async def usage_targets(store: Store) -> list[str]:
    await store.usage.flush()
    return [str(t) for (t,) in await store.db.fetchall("SELECT target FROM usage ORDER BY id")]


async def test_put_many_says_which_entries_are_new(store: Store) -> None:
    assert await store.inbox.put_many([entry("1"), entry("2")]) == [True, True]
    assert await store.inbox.put_many([entry("2"), entry("3"), entry("3")]) == [False, True, False]
    assert [e.key for e in await store.inbox.unfinished("telegram")] == ["1", "2", "3"]
    assert await store.inbox.unfinished("discord") == []


async def test_unfinished_is_oldest_first(store: Store) -> None:
    await store.inbox.put_many([entry("new", age=1), entry("old", age=100), entry("mid", age=50)])
    assert [e.key for e in await store.inbox.unfinished("telegram")] == ["old", "mid", "new"]


async def test_complete_writes_the_rows_and_closes_the_entry_in_one_go(store: Store) -> None:
    await store.inbox.put_many([entry("7")])
    await store.inbox.complete("telegram", "7", [event("a"), event("b", outcome="rate_limited")])
    assert await store.inbox.unfinished("telegram") == []
    assert await usage_targets(store) == ["a", "b"]
    # A redelivery of an answered update is recognised (the tombstone stays until purged).
    assert await store.inbox.put_many([entry("7")]) == [False]


async def test_a_crash_between_put_and_complete_leaves_the_entry_and_no_row(open_store: OpenStore) -> None:
    store = await open_store()
    await store.inbox.put_many([entry("1"), entry("2")])
    await store.inbox.complete("telegram", "1", [event("one")])
    # No aclose: the next process finds what the database holds, nothing more.
    await store.db.close()
    reopened = await open_store()
    try:
        assert [e.key for e in await reopened.inbox.unfinished("telegram")] == ["2"]
        assert await usage_targets(reopened) == ["one"]
    finally:
        await reopened.aclose()


async def test_usage_recorded_inside_collect_usage_waits_for_the_completion(store: Store) -> None:
    await store.inbox.put_many([entry("9")])
    with collect_usage() as collector:
        store.usage.record(event("held"))
    store.usage.record(event("outside"))
    assert [e.target for e in collector.events] == ["held"]
    assert await usage_targets(store) == ["outside"]
    await store.inbox.complete("telegram", "9", collector.events)
    assert await usage_targets(store) == ["outside", "held"]
    # Once the block is over, late events from tasks it started go the usual way.
    with collect_usage() as late:
        pass
    assert not late.open


async def test_replay_counts_replays_and_possible_duplicates(store: Store) -> None:
    await store.inbox.put_many([entry("1", age=30), entry("2", age=20), entry("3", age=10)])
    store.inbox.note("telegram", "2", SENDING)
    await store.inbox.put_many([entry("4")])  # the note is written by this transaction at the latest
    open_ = await store.inbox.unfinished("telegram")
    assert [(e.key, e.state) for e in open_] == [("1", "new"), ("2", SENDING), ("3", "new"), ("4", "new")]
    await store.inbox.start_replay(open_[:3])
    again = await store.inbox.unfinished("telegram")
    assert [e.attempts for e in again] == [1, 1, 1, 0]
    stats = await store.inbox.stats(since=0)
    assert (stats.replayed, stats.duplicates, stats.expired, stats.unfinished) == (3, 1, 0, 4)
    assert stats.oldest_age_s is not None and 29 < stats.oldest_age_s < 60


async def test_a_sending_note_rides_with_the_next_write_or_goes_alone_soon(store: Store) -> None:
    await store.inbox.put_many([entry("1"), entry("2")])
    trips = 0
    written = asyncio.Event()
    run_batch = store.db.run_batch

    async def counted(batch: Batch) -> list[list[tuple[object, ...]]]:
        nonlocal trips
        trips += 1
        try:
            return await run_batch(batch)
        finally:
            written.set()

    store.db.run_batch = counted  # type: ignore[method-assign]
    store.inbox.note("telegram", "1", SENDING)
    await store.inbox.complete("telegram", "1", [event("one")])
    assert trips == 1  # the note and the completion: one transaction

    written.clear()
    store.inbox.note("telegram", "2", SENDING)  # nothing else to ride with: written on its own, soon
    await asyncio.wait_for(written.wait(), 30)
    assert trips == 2
    assert [e.state for e in await store.inbox.unfinished("telegram")] == [SENDING]


async def test_expire_closes_with_an_expired_row(store: Store) -> None:
    await store.inbox.put_many([entry("i1", age=1000, platform="discord", kind="interaction")])
    (old,) = await store.inbox.unfinished("discord")
    await store.inbox.expire(old, [UsageEvent(platform="discord", action="post", outcome="expired")])
    assert await store.inbox.unfinished("discord") == []
    stats = await store.inbox.stats(since=0)
    assert (stats.expired, stats.unfinished, stats.oldest_age_s) == (1, 0, None)
    assert await store.db.fetchall("SELECT outcome FROM usage") == [("expired",)]


async def test_stats_count_only_the_period(store: Store) -> None:
    await store.inbox.put_many([entry("1")])
    await store.inbox.start_replay(await store.inbox.unfinished("telegram"))
    assert (await inbox_stats(store.db, since=time.time() + 10)).replayed == 0
    assert (await inbox_stats(store.db, since=time.time() - 10)).replayed == 1
    assert DUPLICATE not in (await store.inbox.stats(0)).to_dict()


async def test_purge_forgets_old_tombstones_only(store: Store) -> None:
    await store.inbox.put_many([entry("1"), entry("2")])
    await store.inbox.complete("telegram", "1", [])
    assert await store.inbox.purge(done_before=time.time() - 60) == 0
    assert await store.inbox.purge(done_before=time.time() + 1) == 1
    assert await store.inbox.put_many([entry("1")]) == [True]
    assert [e.key for e in await store.inbox.unfinished("telegram")] == ["2", "1"]


async def test_concurrent_writes_share_transactions(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    transactions = 0
    original = store.db.transaction

    def counting() -> Any:
        nonlocal transactions
        transactions += 1
        return original()

    monkeypatch.setattr(store.db, "transaction", counting)
    await asyncio.gather(*(store.inbox.put_many([entry(str(n))]) for n in range(200)))
    await asyncio.gather(*(store.inbox.complete("telegram", str(n), [event(str(n))]) for n in range(200)))
    assert len(await usage_targets(store)) == 200
    assert await store.inbox.unfinished("telegram") == []
    assert transactions <= 20, transactions  # group commit: far fewer transactions than writes


async def test_writes_after_close_are_refused(open_store: OpenStore) -> None:
    store = await open_store()
    await store.aclose()
    with pytest.raises(StoreError):
        await store.inbox.put_many([entry("1")])


async def test_operator_stats_show_the_inbox(store: Store) -> None:
    from services.store.stats import compute_stats, render_stats_table

    await store.inbox.put_many([entry("1", age=300), entry("2", age=5)])
    store.inbox.note("telegram", "1", SENDING)
    await store.inbox.put_many([entry("3")])  # the note is written by this transaction at the latest
    await store.inbox.start_replay((await store.inbox.unfinished("telegram"))[:2])
    report = await compute_stats(store.db, days=1)
    assert report.to_dict()["inbox"] == {
        "unfinished": 3,
        "oldest_unfinished_age_s": pytest.approx(300, abs=30),
        "replayed": 2,
        "expired": 0,
        "duplicates": 1,
    }
    table = render_stats_table(report)
    assert "inbox open      3 (oldest 5 min)" in table
    assert "replayed        2" in table
    assert "duplicates      1" in table
