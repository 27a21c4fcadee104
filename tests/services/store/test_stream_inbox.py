"""The inbox on a shared stream: a real redis-server for the stream, SQLite and PostgreSQL for completions.

Two `StreamInbox`es on one Redis and one database play two replicas: what one puts, either takes; what a dead
one left is claimed by the other after the claim timeout; completion writes the usage rows once, whoever
completes, and a completion committed by a process killed before its acknowledgement is not run again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from services.shared.redis import RedisUpdateStream
from services.store import Store
from services.store.inbox import DEFERRED, DUPLICATE, REPLAYED, SENDING, DatabaseInbox, InboxEntry
from services.store.stream_inbox import StreamInbox
from services.store.usage import UsageEvent

CLAIM_AFTER = 0.3


def entry(key: str, *, part: str = "telegram", kind: str = "message") -> InboxEntry:
    platform = part.split(":")[0]
    return InboxEntry(platform, key, kind, f'{{"id": "{key}"}}', time.time(), partition=part)


def event(target: str) -> UsageEvent:
    return UsageEvent(platform="telegram", action="link", target=target)


async def usage_targets(store: Store) -> list[str]:
    await store.usage.flush()
    return [str(t) for (t,) in await store.db.fetchall("SELECT target FROM usage ORDER BY id")]


@pytest.fixture
async def replicas(
    redis_client: aioredis.Redis, redis_prefix: str, store: Store
) -> AsyncIterator[tuple[StreamInbox, StreamInbox]]:
    """Two replicas' inboxes sharing the stream and the database."""
    assert isinstance(store.inbox, DatabaseInbox)
    made = tuple(
        StreamInbox(
            RedisUpdateStream(redis_client, redis_prefix, consumer=name, claim_after=CLAIM_AFTER),
            store.inbox,
            keep_every=CLAIM_AFTER / 3,
        )
        for name in ("first", "second")
    )
    yield made[0], made[1]
    for inbox in made:
        inbox._closing.set()  # the database side is closed by the store fixture


async def take_all(inbox: StreamInbox, parts: list[str], claim: list[str] | None = None) -> list[InboxEntry]:
    return await inbox.take(parts, parts if claim is None else claim, 100, 0.05)


async def claimed(inbox: StreamInbox, parts: list[str], claim: list[str] | None = None) -> list[InboxEntry]:
    """What `inbox` claims once the claim timeout has passed (polling: Redis measures the idle time)."""
    async with asyncio.timeout(10):
        while True:
            got = await take_all(inbox, parts, claim)
            if got:
                return got
            await asyncio.sleep(CLAIM_AFTER / 3)


async def test_a_database_inbox_is_not_shared(store: Store) -> None:
    assert not store.inbox.shared
    assert await store.inbox.take(["telegram"], ["telegram"], 10, 0.01) == []


async def test_what_one_replica_puts_is_handed_out_once(replicas: tuple[StreamInbox, StreamInbox]) -> None:
    first, second = replicas
    assert first.shared
    assert await first.put_many([entry(str(n)) for n in range(6)]) == [True] * 6
    assert await second.put_many([entry("3")]) == [False]  # a redelivery, whichever replica it reaches
    got = await first.take(["telegram"], ["telegram"], 2, 0.05)
    got += await take_all(second, ["telegram"])
    assert sorted(e.key for e in got) == [str(n) for n in range(6)]
    assert all(e.platform == "telegram" and e.attempts == 0 and e.kind == "message" for e in got)
    assert all(abs(e.age()) < 30 for e in got)  # received_at from the stream id


async def test_complete_writes_rows_once_and_acknowledges(
    replicas: tuple[StreamInbox, StreamInbox], store: Store
) -> None:
    first, second = replicas
    await first.put_many([entry("7")])
    [taken] = await take_all(first, ["telegram"])
    await first.complete("telegram", "7", [event("a"), event("b")])
    assert await usage_targets(store) == ["a", "b"]
    assert (await first.stats(0)).unfinished == 0
    # The same update completed again (a replica that claimed it while it still ran): no second set of rows.
    await second.complete("telegram", "7", [event("again")])
    assert await usage_targets(store) == ["a", "b"]
    assert taken.key == "7"


async def test_a_dead_replicas_entries_are_claimed_with_their_progress(
    replicas: tuple[StreamInbox, StreamInbox], store: Store
) -> None:
    dead, live = replicas
    await dead.put_many([entry("1"), entry("2")])
    assert len(await take_all(dead, ["telegram"])) == 2
    dead.note("telegram", "1", SENDING)
    await asyncio.wait(set(dead._notes))
    dead._closing.set()  # killed: it neither keeps nor completes them
    got = sorted(await claimed(live, ["telegram"]), key=lambda e: e.key)
    assert [(e.key, e.attempts, e.state) for e in got] == [("1", 1, SENDING), ("2", 1, "new")]
    await live.start_replay(got)
    for e in got:
        await live.complete(e.platform, e.key, [event(e.key)])
    assert await usage_targets(store) == ["1", "2"]
    assert await take_all(live, ["telegram"]) == []
    counts = dict(await store.db.fetchall("SELECT event, count(*) FROM inbox_log GROUP BY event"))
    assert counts == {REPLAYED: 2, DUPLICATE: 1}


async def test_a_live_replica_keeps_its_entries(replicas: tuple[StreamInbox, StreamInbox]) -> None:
    busy, other = replicas
    await busy.put_many([entry("5")])
    assert len(await take_all(busy, ["telegram"])) == 1
    for _ in range(4):  # longer than the claim timeout: the keeper resets the idle time
        await asyncio.sleep(CLAIM_AFTER / 2)
        assert await take_all(other, ["telegram"]) == []


async def test_a_completion_committed_before_a_kill_is_not_run_again(
    replicas: tuple[StreamInbox, StreamInbox], store: Store
) -> None:
    dead, live = replicas
    await dead.put_many([entry("9")])
    [taken] = await take_all(dead, ["telegram"])
    # Killed between the database commit and the stream acknowledgement.
    assert await dead.database.close_once(taken, [event("sent")])
    dead._closing.set()
    await asyncio.sleep(CLAIM_AFTER * 2)
    assert await take_all(live, ["telegram"]) == []  # found done: acknowledged, not handed out
    assert (await live.stats(0)).unfinished == 0
    assert await usage_targets(store) == ["sent"]


async def test_partitions_are_read_by_their_replicas_and_claimed_by_any(
    replicas: tuple[StreamInbox, StreamInbox],
) -> None:
    shard0, shard1 = replicas
    every = ["discord:0", "discord:1"]
    await shard1.put_many([entry("message:1", part="discord:1"), entry("message:0", part="discord:0")])
    assert [e.key for e in await take_all(shard0, ["discord:0"], every)] == ["message:0"]
    [mine] = await take_all(shard1, ["discord:1"], every)
    assert (mine.key, mine.partition) == ("message:1", "discord:1")
    shard1.note("discord", "message:1", DEFERRED)
    await asyncio.wait(set(shard1._notes))
    shard1._closing.set()  # shard 1's process dies with its entry in hand
    [rescued] = await claimed(shard0, ["discord:0"], every)
    assert (rescued.key, rescued.partition, rescued.state, rescued.attempts) == (
        "message:1",
        "discord:1",
        DEFERRED,
        1,
    )


async def test_one_update_completed_twice_in_one_batch_has_one_set_of_rows(store: Store) -> None:
    assert isinstance(store.inbox, DatabaseInbox)
    done = entry("x")
    first, second = await asyncio.gather(
        store.inbox.close_once(done, [event("one")]), store.inbox.close_once(done, [event("two")])
    )
    assert sorted([first, second]) == [False, True]
    assert await usage_targets(store) == (["one"] if first else ["two"])
    assert await store.inbox.done_keys("telegram", ["x", "y"]) == {"x"}


async def test_a_note_just_before_completion_does_not_outlive_the_entry(
    replicas: tuple[StreamInbox, StreamInbox], redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    first, _ = replicas
    await first.put_many([entry("q"), entry("r")])
    await take_all(first, ["telegram"])
    first.note("telegram", "q", DEFERRED)  # queued, not yet written: dropped by the completion
    await first.complete("telegram", "q", [])
    first.note("telegram", "r", SENDING)
    await asyncio.sleep(0.021)  # the batch is being written when the completion comes
    await first.complete("telegram", "r", [])
    await asyncio.gather(*first._notes)
    assert await redis_client.keys(f"{redis_prefix}state:*") == []
