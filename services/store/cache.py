"""The sent-media cache: (platform, post id, variant) → a reference the platform re-sends without a download.

Variants: `video`, `audio`, `photo:<n>` (0-based, one per slideshow photo). References are whatever the
platform accepts again: a Telegram file_id, or for Discord an attachment URL. When the platform rejects a
reference, the frontend calls `invalidate` and downloads afresh.

A hot layer of whole posts (every variant of a post, loaded by one query) sits in front of the database, so a
repeat lookup — hit or miss — costs no SQL round-trip. It is a `services.shared.PostRefs`: in this process by
default (an LRU), or in Redis when replicas share state, where a reference one replica sent is re-sent by all.
A reference made stale by another writer is caught by the platform's rejection and invalidated.
"""

from __future__ import annotations

import time

from services.shared import PostRefs
from services.shared.memory import MemoryPostRefs
from services.store.db import Database


class MediaCache:
    """Platform file references of sent media, in the database with a hot layer of posts in front."""

    def __init__(self, db: Database, *, hot: PostRefs | None = None, memory_posts: int = 4096) -> None:
        self._db = db
        self._hot: PostRefs = hot if hot is not None else MemoryPostRefs(max_posts=memory_posts)

    async def get(self, platform: str, post_id: str, variant: str) -> str | None:
        """The stored reference for one variant of a post, or None."""
        return (await self._post(platform, post_id)).get(variant)

    async def get_many(self, platform: str, post_id: str, prefix: str) -> dict[str, str]:
        """Every stored variant of a post whose name starts with `prefix` (e.g. `photo:`), by variant."""
        variants = await self._post(platform, post_id)
        return {variant: ref for variant, ref in variants.items() if variant.startswith(prefix)}

    async def put(self, platform: str, post_id: str, variant: str, ref: str, size: int | None = None) -> None:
        """Store (or replace) the reference for one variant of a post."""
        await self._db.execute(
            "INSERT INTO media_cache (platform, post_id, variant, ref, size, stored_at)"
            " VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (platform, post_id, variant) DO UPDATE"
            " SET ref = excluded.ref, size = excluded.size, stored_at = excluded.stored_at",
            (platform, post_id, variant, ref, size, time.time()),
        )
        await self._hot.set(_key(platform, post_id), variant, ref)

    async def invalidate(self, platform: str, post_id: str, variant: str | None = None) -> int:
        """Forget one variant of a post (or all of them, with no variant); return how many were stored."""
        if variant is None:
            deleted = await self._db.execute(
                "DELETE FROM media_cache WHERE platform = ? AND post_id = ?", (platform, post_id)
            )
        else:
            deleted = await self._db.execute(
                "DELETE FROM media_cache WHERE platform = ? AND post_id = ? AND variant = ?",
                (platform, post_id, variant),
            )
        await self._hot.drop(_key(platform, post_id), variant)
        return deleted

    async def _post(self, platform: str, post_id: str) -> dict[str, str]:
        """Every variant of a post, from the hot layer or else one query (remembered, even when empty)."""
        key = _key(platform, post_id)
        held, generation = await self._hot.load(key)
        if held is not None:
            return held
        rows = await self._db.fetchall(
            "SELECT variant, ref FROM media_cache WHERE platform = ? AND post_id = ?", (platform, post_id)
        )
        loaded = {str(variant): str(ref) for variant, ref in rows}
        # Not kept if a write landed since `load`: the hot layer never holds a read older than a write.
        await self._hot.fill(key, loaded, generation)
        return loaded


def _key(platform: str, post_id: str) -> str:
    return f"{platform}:{post_id}"
