"""Telegram end to end with DATABASE__URL on PostgreSQL: the same bot, its store on a real server."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import asyncpg
import pytest

from bot.wiring import App
from sandbox.catalogue import CATALOGUE
from sandbox.runner import Sandbox
from sandbox.telegram import TelegramEmulator
from sandbox.ttsave import TTSaveEmulator
from tests.e2e.conftest import wait_rows
from tests.engines.postgres import PostgresServer

CLIP = next(
    p
    for p in CATALOGUE.posts.values()
    if p.renditions and p.renditions[-1].file and p.hashtags == ("pasta", "cooking")
)
_databases = itertools.count(1)


@pytest.fixture
async def extra_env(postgres_server: PostgresServer) -> AsyncIterator[dict[str, str]]:
    """A fresh PostgreSQL database per test, named by DATABASE__URL (DATABASE__PATH is then unused)."""
    name = f"e2e_{next(_databases)}"
    admin = await asyncpg.connect(postgres_server.url())
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        yield {"DATABASE__URL": postgres_server.url(name)}
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    finally:
        await admin.close()


async def test_link_then_cache_hit_with_the_store_on_postgresql(
    tg: TelegramEmulator, sandbox: Sandbox, app: App
) -> None:
    assert app.store.db.engine == "postgres"
    ann, ben = tg.add_user("Ann"), tg.add_user("Ben")
    mark = tg.mark()
    tg.inject_message(tg.private_chat(ann), CLIP.url, user=ann)
    first = await tg.wait_for(method="sendVideo", chat_id=tg.private_chat(ann).id, after=mark, timeout=10)
    assert first.files[0].uploaded
    downloads = sandbox.get(TTSaveEmulator).downloads(CLIP.id)
    mark = tg.mark()
    tg.inject_message(tg.private_chat(ben), CLIP.url, user=ben)
    second = await tg.wait_for(method="sendVideo", chat_id=tg.private_chat(ben).id, after=mark, timeout=10)
    # The sent-media cache on PostgreSQL: the same file_id again, nothing downloaded.
    assert not second.files[0].uploaded and second.files[0].file_id == first.files[0].file_id
    assert sandbox.get(TTSaveEmulator).downloads(CLIP.id) == downloads
    rows = await wait_rows(app, "link", 2)
    assert [(r["backend"], r["cache_hit"], r["outcome"]) for r in rows] == [
        ("ttsave", 0, "ok"),
        ("cache", 1, "ok"),
    ]
    stored = dict(
        await app.store.db.fetchall("SELECT variant, ref FROM media_cache WHERE post_id = ?", (CLIP.id,))
    )
    assert stored["media:video"] == first.files[0].file_id
    # Both updates went through the durable inbox on the same server, and both were completed.
    done = await app.store.db.fetchone("SELECT count(*) FROM inbox WHERE done_at IS NOT NULL")
    assert done is not None and done[0] >= 2
    report = await app.store.stats(days=1)
    assert report.requests == 2 and report.cache_hits == 1
