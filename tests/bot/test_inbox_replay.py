"""Replay at start-up: oldest first through the handler, late ones flagged, unanswerable ones expired."""

from __future__ import annotations

import time
from pathlib import Path

from structlog.contextvars import bind_contextvars, get_contextvars

from bot.chat.inbox import Deliveries, current_entry, next_hit_id
from bot.discord.inbox import can_answer, shard_of, worth_storing
from services.errors import RateLimited
from services.ratelimit import RateLimits
from services.store import Store
from services.store.inbox import DEFERRED, SENDING, InboxEntry
from services.store.sqlite import SqliteDatabase
from services.store.usage import UsageEvent


def entry(key: str, age: float, kind: str = "update", platform: str = "telegram") -> InboxEntry:
    return InboxEntry(platform, key, kind, "{}", time.time() - age)


async def test_replay_runs_old_entries_oldest_first_and_completes_them_with_their_rows(
    tmp_path: Path,
) -> None:
    store = await Store.open(await SqliteDatabase.open(tmp_path / "bot.sqlite3"))
    try:
        deliveries = Deliveries(store.inbox, replay_max_age=60)
        await deliveries.accept([entry("b", 30), entry("a", 120), entry("c", 1)])
        seen: list[tuple[str, bool]] = []

        async def handle(old: InboxEntry, late: bool) -> None:
            assert current_entry() == old
            seen.append((old.key, late))
            store.usage.record(UsageEvent(platform="telegram", action="link", target=old.key))

        report = await deliveries.replay("telegram", handle)
        assert seen == [("a", True), ("b", False), ("c", False)]
        assert (report.replayed, report.late, report.expired) == (3, 1, 0)
        assert await store.inbox.unfinished("telegram") == []
        await store.usage.flush()
        assert await store.db.fetchall("SELECT target FROM usage ORDER BY id") == [("a",), ("b",), ("c",)]
        # A second start finds nothing to do.
        assert (await deliveries.replay("telegram", handle)).replayed == 0
    finally:
        await store.aclose()


async def test_entries_the_platform_no_longer_takes_are_expired_with_a_row(tmp_path: Path) -> None:
    store = await Store.open(await SqliteDatabase.open(tmp_path / "bot.sqlite3"))
    try:
        deliveries = Deliveries(store.inbox)
        await deliveries.accept(
            [entry("interaction:1", 5, "interaction", "discord"), entry("message:2", 5, "message", "discord")]
        )
        handled: list[str] = []

        async def handle(old: InboxEntry, late: bool) -> None:
            handled.append(old.key)

        report = await deliveries.replay(
            "discord", handle, can_answer=can_answer, expired_action=lambda e: "post"
        )
        assert handled == ["message:2"]
        assert report.expired == 1
        assert await store.db.fetchall("SELECT action, outcome FROM usage") == [("post", "expired")]
        assert (await store.inbox.stats(0)).expired == 1
    finally:
        await store.aclose()


def test_a_discord_command_can_be_answered_only_when_deferred_and_young() -> None:
    now = time.time()
    fresh = InboxEntry("discord", "interaction:1", "interaction", "{}", now - 60)
    assert not can_answer(fresh, now)  # never deferred: Discord already showed "did not respond"
    assert can_answer(InboxEntry(**{**_fields(fresh), "state": DEFERRED}), now)
    assert can_answer(InboxEntry(**{**_fields(fresh), "state": SENDING}), now)
    old = InboxEntry("discord", "interaction:1", "interaction", "{}", now - 15 * 60, DEFERRED)
    assert not can_answer(old, now)  # the token has expired
    assert can_answer(InboxEntry("discord", "message:1", "message", "{}", now - 86_400), now)


def test_only_messages_that_may_hold_a_link_are_stored() -> None:
    assert worth_storing({"author": {"id": "1"}, "type": 0, "content": "https://www.tiktok.com/@a/video/1"})
    assert not worth_storing({"author": {"id": "1"}, "type": 0, "content": "hello"})
    assert not worth_storing({"author": {"id": "1", "bot": True}, "type": 0, "content": "vm.tiktok.com/x"})
    assert not worth_storing({"author": {"id": "1"}, "type": 7, "content": "tiktok"})


def _fields(e: InboxEntry) -> dict[str, object]:
    return {name: getattr(e, name) for name in InboxEntry.__slots__}


async def test_an_update_run_again_is_not_rate_limited_twice(tmp_path: Path) -> None:
    store = await Store.open(await SqliteDatabase.open(tmp_path / "bot.sqlite3"))
    try:
        deliveries = Deliveries(store.inbox)
        limits = RateLimits(user_per_minute=2, chat_per_minute=100)
        outcomes: list[str] = []

        async def handle() -> None:
            for _ in range(2):  # two links in one message: two hits, each with its own id
                try:
                    await limits.check("ann", "chat", next_hit_id())
                    outcomes.append("ok")
                except RateLimited:
                    outcomes.append("limited")

        first = entry("1", 0)
        await deliveries.run(first, handle)
        # The same update again (a replica died before acknowledging it): its two hits are already counted.
        await deliveries.run(first, handle)
        await deliveries.run(entry("2", 0), handle)
        assert outcomes == ["ok", "ok", "ok", "ok", "limited", "limited"]
        assert next_hit_id() is None  # outside an entry, hits are anonymous
    finally:
        await store.aclose()


def test_discord_events_go_to_the_shard_discord_sends_them_on() -> None:
    guild = 1290000000000000001
    assert shard_of({"guild_id": str(guild)}, 4) == (guild >> 22) % 4
    assert shard_of({"channel_id": "5"}, 4) == 0  # DMs: shard 0
    assert {shard_of({"guild_id": str(g << 22)}, 2) for g in (6, 7)} == {0, 1}


async def test_replayed_entries_each_log_with_their_own_context(tmp_path: Path) -> None:
    store = await Store.open(await SqliteDatabase.open(tmp_path / "bot.sqlite3"))
    try:
        deliveries = Deliveries(store.inbox)
        await deliveries.accept(
            [entry("message:1", 20, "message", "discord"), entry("message:2", 10, "message", "discord")]
        )
        seen: list[dict[str, object]] = []

        async def handle(old: InboxEntry, late: bool) -> None:
            seen.append(get_contextvars())
            if old.key == "message:1":
                bind_contextvars(chat=5, user=6)  # as a Discord handler binds who and where, for its task

        await deliveries.replay("discord", handle)  # one after another, in this task
        # The second entry does not inherit the first one's chat, and nothing stays bound after the replay.
        assert seen == [
            {"platform": "discord", "update": "message:1", "chat": None, "user": None},
            {"platform": "discord", "update": "message:2", "chat": None, "user": None},
        ]
        assert {k: v for k, v in get_contextvars().items() if v is not None} == {}
    finally:
        await store.aclose()
