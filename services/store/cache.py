"""The sent-media cache: (platform, post id, variant) → a reference the platform re-sends without a download.

Variants: `video`, `audio`, `photo:<n>` (0-based, one per slideshow photo). References are whatever the
platform accepts again: a Telegram file_id, or for Discord an attachment URL. When the platform rejects a
reference, the frontend calls `invalidate` and downloads afresh.

An in-memory LRU of whole posts (every variant of a post, loaded by one query) sits in front of SQLite, so a
repeat lookup — hit or miss — costs no SQL round-trip. It assumes this process is the only writer of the cache
(one bot per database); a reference made stale by another writer is caught by the platform's rejection and
invalidated.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from services.store.db import Database

_Key = tuple[str, str]


class MediaCache:
    """Platform file references of sent media, in SQLite with an LRU of posts in memory."""

    def __init__(self, db: Database, *, memory_posts: int = 4096) -> None:
        self._db = db
        self._memory_posts = memory_posts
        self._posts: OrderedDict[_Key, dict[str, str]] = OrderedDict()
        # Bumped before and after every write: a load that overlapped a write is returned but not remembered.
        self._changes = 0

    async def get(self, platform: str, post_id: str, variant: str) -> str | None:
        """The stored reference for one variant of a post, or None."""
        return (await self._post(platform, post_id)).get(variant)

    async def get_many(self, platform: str, post_id: str, prefix: str) -> dict[str, str]:
        """Every stored variant of a post whose name starts with `prefix` (e.g. `photo:`), by variant."""
        variants = await self._post(platform, post_id)
        return {variant: ref for variant, ref in variants.items() if variant.startswith(prefix)}

    async def put(self, platform: str, post_id: str, variant: str, ref: str, size: int | None = None) -> None:
        """Store (or replace) the reference for one variant of a post."""
        self._changes += 1
        await self._db.execute(
            "INSERT INTO media_cache (platform, post_id, variant, ref, size, stored_at)"
            " VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (platform, post_id, variant) DO UPDATE"
            " SET ref = excluded.ref, size = excluded.size, stored_at = excluded.stored_at",
            (platform, post_id, variant, ref, size, time.time()),
        )
        self._changes += 1
        cached = self._posts.get((platform, post_id))
        if cached is not None:
            cached[variant] = ref

    async def invalidate(self, platform: str, post_id: str, variant: str | None = None) -> int:
        """Forget one variant of a post (or all of them, with no variant); return how many were stored."""
        self._changes += 1
        if variant is None:
            deleted = await self._db.execute(
                "DELETE FROM media_cache WHERE platform = ? AND post_id = ?", (platform, post_id)
            )
        else:
            deleted = await self._db.execute(
                "DELETE FROM media_cache WHERE platform = ? AND post_id = ? AND variant = ?",
                (platform, post_id, variant),
            )
        self._changes += 1
        cached = self._posts.get((platform, post_id))
        if cached is not None:
            if variant is None:
                cached.clear()
            else:
                cached.pop(variant, None)
        return deleted

    async def _post(self, platform: str, post_id: str) -> dict[str, str]:
        """Every variant of a post, from memory or else one query (remembered, even when empty)."""
        key = (platform, post_id)
        cached = self._posts.get(key)
        if cached is not None:
            self._posts.move_to_end(key)
            return cached
        changes = self._changes
        rows = await self._db.fetchall(
            "SELECT variant, ref FROM media_cache WHERE platform = ? AND post_id = ?", key
        )
        loaded = {str(variant): str(ref) for variant, ref in rows}
        if changes == self._changes:
            self._posts[key] = loaded
            if len(self._posts) > self._memory_posts:
                self._posts.popitem(last=False)
        return loaded
