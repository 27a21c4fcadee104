"""`tiktok-bot ARGS…` that dies by SIGKILL right after it first stores updates in the inbox.

In webhook mode that is between the commit and the HTTP 200: the update is in the database and Telegram has
no 2xx, so it delivers it again. Run: `python -m tests.e2e.kill_after_store --env-file F telegram`.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence

from bot.__main__ import main
from bot.chat.inbox import Deliveries
from services.store.inbox import InboxEntry

_store = Deliveries.accept


async def _store_then_die(self: Deliveries, entries: Sequence[InboxEntry]) -> list[bool]:
    fresh = await _store(self, entries)
    os.kill(os.getpid(), signal.SIGKILL)
    return fresh


if __name__ == "__main__":
    Deliveries.accept = _store_then_die  # type: ignore[method-assign]
    raise SystemExit(main())
