"""Saved Discord gateway sessions: upserted by id, loaded per shard, replaced and forgotten."""

from __future__ import annotations

from services.store import Store
from services.store.sessions import GatewaySession


def positions(found: list[GatewaySession]) -> list[tuple[int, str, int, str]]:
    return [(s.shard, s.session_id, s.seq, s.resume_url) for s in found]


async def test_sessions_are_saved_updated_loaded_per_shard_and_forgotten(store: Store) -> None:
    sessions = store.gateway_sessions
    assert await sessions.load() == []
    await sessions.save([GatewaySession(0, "a", 5, "wss://r0"), GatewaySession(1, "b", 7, "wss://r1")])
    await sessions.save([GatewaySession(0, "a", 9, "wss://r0b")])
    assert positions(await sessions.load()) == [(1, "b", 7, "wss://r1"), (0, "a", 9, "wss://r0b")]
    assert positions(await sessions.load(shards={1})) == [(1, "b", 7, "wss://r1")]
    # A new session of shard 0 replaces the one this process had.
    await sessions.save([GatewaySession(0, "c", 1, "wss://r0c")], ended={"a"})
    assert positions(await sessions.load(shards={0})) == [(0, "c", 1, "wss://r0c")]
    await sessions.forget({"b", "c"})
    assert await sessions.load() == []
    await sessions.forget(())
