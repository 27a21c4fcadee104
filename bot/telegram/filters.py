"""Filters checked on the event loop."""

from __future__ import annotations

from aiogram.filters import Filter
from aiogram.types import TelegramObject
from magic_filter import MagicFilter


class Where(Filter):
    """A magic filter (`Where(F.text | F.caption)`) evaluated inline.

    aiogram hands a bare magic filter, like any plain function, to a worker thread (`asyncio.to_thread`) on
    every update; two of them per message cost two thread round trips and queued behind each other in the
    default pool under load. An async Filter runs in place.
    """

    def __init__(self, magic: MagicFilter) -> None:
        self.magic = magic

    async def __call__(self, event: TelegramObject) -> bool:
        """Whether the event matches."""
        return bool(self.magic.resolve(event))
