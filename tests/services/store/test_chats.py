"""Per-chat settings: defaults, updates, persistence, validation and the in-memory layer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from services.errors import StoreError
from services.store.chats import ChatPrefs, ChatSettings
from services.store.db import Database
from tests.services.store.conftest import OpenDb


def test_defaults() -> None:
    assert ChatPrefs() == ChatPrefs(
        auto_download=True, captions=True, slideshow_sound=True, language="auto", remove_link_message=False
    )


async def test_unknown_chat_gets_defaults(db: Database) -> None:
    settings = ChatSettings(db)
    assert await settings.get("telegram", -100123) == ChatPrefs()
    assert await db.fetchall("SELECT * FROM chat_settings") == []  # reading stores nothing


async def test_set_changes_only_what_is_named(db: Database) -> None:
    settings = ChatSettings(db)
    prefs = await settings.set("telegram", -100123, captions=False, language="ru")
    assert prefs == ChatPrefs(captions=False, language="ru")
    prefs = await settings.set("telegram", -100123, remove_link_message=True)
    assert prefs == ChatPrefs(captions=False, language="ru", remove_link_message=True)
    assert await settings.get("telegram", "-100123") == prefs  # int and str ids are the same chat
    assert await settings.get("discord", -100123) == ChatPrefs()
    assert await settings.get("telegram", 5) == ChatPrefs()


async def test_survives_a_restart(open_db: OpenDb) -> None:
    db = await open_db()
    await ChatSettings(db).set("discord", 42, auto_download=False, slideshow_sound=False)
    await db.close()
    db = await open_db()
    assert await ChatSettings(db).get("discord", 42) == ChatPrefs(auto_download=False, slideshow_sound=False)
    await db.close()


async def test_a_repeat_get_costs_no_query(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = ChatSettings(db)
    await settings.set("telegram", 1, captions=False)
    calls = 0
    original = db.fetchone

    async def spy(sql: str, params: Any = ()) -> tuple[Any, ...] | None:
        nonlocal calls
        calls += 1
        return await original(sql, params)

    monkeypatch.setattr(db, "fetchone", spy)
    for _ in range(50):
        assert (await settings.get("telegram", 1)).captions is False
        assert await settings.get("telegram", 2) == ChatPrefs()
    assert calls == 1  # only chat 2's first read


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"colour": "blue"}, "unknown chat setting 'colour'"),
        ({"captions": "no"}, "captions takes true or false"),
        ({"captions": 0}, "captions takes true or false"),
        ({"language": ""}, "language takes a language code"),
        ({"language": 7}, "language takes a language code"),
    ],
)
async def test_invalid_changes_are_refused(db: Database, changes: dict[str, Any], message: str) -> None:
    settings = ChatSettings(db)
    with pytest.raises(StoreError, match=message):
        await settings.set("telegram", 1, **changes)
    assert await settings.get("telegram", 1) == ChatPrefs()


async def test_concurrent_changes_to_one_chat_all_land(open_db: OpenDb) -> None:
    db = await open_db()
    settings = ChatSettings(db)
    await asyncio.gather(
        settings.set("telegram", 7, captions=False),
        settings.set("telegram", 7, slideshow_sound=False),
        settings.set("telegram", 7, language="de"),
        settings.set("telegram", 7, auto_download=False),
    )
    expected = ChatPrefs(auto_download=False, captions=False, slideshow_sound=False, language="de")
    assert await settings.get("telegram", 7) == expected
    assert await ChatSettings(db).get("telegram", 7) == expected  # and in the file
    await db.close()
