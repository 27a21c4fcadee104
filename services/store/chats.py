"""Per-chat settings: what the bot does with links in one chat, with defaults for chats that changed nothing.

Chat ids are kept as given (not hashed): the bot needs them to apply a chat's choices, and a row holds only
those choices, never who made them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from cachetools import LRUCache

from services.errors import StoreError
from services.store.db import Database


@dataclass(frozen=True, slots=True)
class ChatPrefs:
    """One chat's choices; the defaults apply to every chat that has not changed them."""

    auto_download: bool = True
    captions: bool = True
    slideshow_sound: bool = True
    language: str = "auto"
    remove_link_message: bool = False
    quality: str = "auto"  # auto (the bot's DOWNLOAD__QUALITY), compatible or best


QUALITY_CHOICES = ("auto", "compatible", "best")
_FIELDS = {f.name: f.type for f in dataclasses.fields(ChatPrefs)}
_LANGUAGE_MAX = 35  # the longest BCP 47 tag anyone uses in practice


class ChatSettings:
    """Reads and changes `ChatPrefs` per (platform, chat id), remembering recent chats in memory."""

    def __init__(self, db: Database, *, memory_chats: int = 10_000) -> None:
        self._db = db
        self._chats: LRUCache[tuple[str, str], ChatPrefs] = LRUCache(memory_chats)
        # Two changes to one chat at once (two admins pressing buttons) must both land, not overwrite.
        self._set_lock = asyncio.Lock()

    async def get(self, platform: str, chat_id: int | str) -> ChatPrefs:
        """The chat's settings, or the defaults when it never changed any."""
        key = (platform, str(chat_id))
        prefs = self._chats.get(key)
        if prefs is not None:
            return prefs
        row = await self._db.fetchone(
            "SELECT auto_download, captions, slideshow_sound, language, remove_link_message, quality"
            " FROM chat_settings WHERE platform = ? AND chat_id = ?",
            key,
        )
        if row is None:
            prefs = ChatPrefs()
        else:
            auto_download, captions, sound, language, remove, quality = row
            prefs = ChatPrefs(
                bool(auto_download),
                bool(captions),
                bool(sound),
                str(language),
                bool(remove),
                str(quality) if quality in QUALITY_CHOICES else "auto",
            )
        # A set() that finished while we read wins: it already put the newer value in memory.
        return self._chats.setdefault(key, prefs)

    async def set(self, platform: str, chat_id: int | str, **changes: Any) -> ChatPrefs:
        """Change some of a chat's settings and return them all; unknown names or wrong types: StoreError."""
        for name, value in changes.items():
            _check(name, value)
        async with self._set_lock:
            return await self._set(platform, str(chat_id), changes)

    async def _set(self, platform: str, chat_id: str, changes: dict[str, Any]) -> ChatPrefs:
        prefs = dataclasses.replace(await self.get(platform, chat_id), **changes)
        key = (platform, chat_id)
        await self._db.execute(
            "INSERT INTO chat_settings (platform, chat_id, auto_download, captions, slideshow_sound,"
            " language, remove_link_message, quality, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (platform, chat_id) DO UPDATE SET auto_download = excluded.auto_download,"
            " captions = excluded.captions, slideshow_sound = excluded.slideshow_sound,"
            " language = excluded.language, remove_link_message = excluded.remove_link_message,"
            " quality = excluded.quality, updated_at = excluded.updated_at",
            (
                *key,
                int(prefs.auto_download),
                int(prefs.captions),
                int(prefs.slideshow_sound),
                prefs.language,
                int(prefs.remove_link_message),
                prefs.quality,
                time.time(),
            ),
        )
        self._chats[key] = prefs
        return prefs


def _check(name: str, value: Any) -> None:
    """Refuse a change the settings table cannot hold."""
    kind = _FIELDS.get(name)
    if kind is None:
        raise StoreError(f"unknown chat setting {name!r}; known: {', '.join(_FIELDS)}")
    if name == "quality":
        if value not in QUALITY_CHOICES:
            raise StoreError(f"chat setting quality takes {', '.join(QUALITY_CHOICES)}, not {value!r}")
        return
    if kind == "bool" and not isinstance(value, bool):
        raise StoreError(f"chat setting {name} takes true or false, not {value!r}")
    if kind == "str" and not (isinstance(value, str) and 0 < len(value) <= _LANGUAGE_MAX):
        raise StoreError(f"chat setting {name} takes a language code or 'auto', not {value!r}")
