"""The record of every Discord REST call the emulator served, in order, with an event-based wait."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class UploadedFile:
    """One `files[n]` part of a multipart request, spooled to `path`."""

    field: str
    filename: str
    size: int
    sha256: str
    path: str
    content_type: str | None


@dataclass(frozen=True, slots=True)
class Call:
    """One REST call; `route` is its template, e.g. "POST /channels/{channel_id}/messages"."""

    seq: int
    method: str
    route: str
    path: str
    query: dict[str, str]
    status: int
    channel_id: int | None
    message_id: int | None
    interaction_id: int | None
    guild_id: int | None
    payload: Any
    files: tuple[UploadedFile, ...]
    flags: int | None
    response: Any
    at: float = field(default_factory=time.monotonic)

    @property
    def ok(self) -> bool:
        """Whether the call succeeded (2xx)."""
        return 200 <= self.status < 300

    @property
    def error_code(self) -> int | None:
        """The Discord error code of a failed call."""
        if isinstance(self.response, dict) and not self.ok:
            code = self.response.get("code")
            return code if isinstance(code, int) else None
        return None


class Transcript:
    """Calls in the order served; `wait_for` wakes on each new call instead of polling."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self.calls)

    def __iter__(self) -> Iterator[Call]:
        return iter(self.calls)

    def __getitem__(self, index: int) -> Call:
        return self.calls[index]

    def add(self, call: Call) -> None:
        """Append a call and wake waiters."""
        self.calls.append(call)
        self._changed.set()

    def notify(self) -> None:
        """Wake waiters without a new call (state they may check changed)."""
        self._changed.set()

    def filter(
        self,
        route: str | None = None,
        *,
        channel_id: int | None = None,
        interaction_id: int | None = None,
        ok: bool | None = None,
        since: int = 0,
    ) -> list[Call]:
        """Calls matching every given criterion (`route` is a template as in `Call.route`)."""
        return [
            c
            for c in self.calls[since:]
            if (route is None or c.route == route)
            and (channel_id is None or c.channel_id == channel_id)
            and (interaction_id is None or c.interaction_id == interaction_id)
            and (ok is None or c.ok == ok)
        ]

    async def wait_for(
        self,
        predicate: Callable[[Call], bool],
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 -- the control API's documented shape
        since: int = 0,
    ) -> Call:
        """The first call from index `since` on satisfying `predicate`, waiting up to `timeout` seconds."""
        checked = since
        async with asyncio.timeout(timeout):
            while True:
                while checked < len(self.calls):
                    call = self.calls[checked]
                    checked += 1
                    if predicate(call):
                        return call
                self._changed.clear()
                await self._changed.wait()

    async def wait_until(self, condition: Callable[[], bool], *, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until `condition()` holds, re-checking after every call or state change."""
        async with asyncio.timeout(timeout):
            while not condition():
                self._changed.clear()
                await self._changed.wait()
