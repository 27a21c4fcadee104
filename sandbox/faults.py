"""Fault modes an emulator can be told to play on its next requests, from Python or over HTTP."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web

SLOW = "slow"  # answer normally after `delay` seconds (for read timeouts)
RESET = "reset"  # drop the connection without an answer (a transport error)


@dataclass(frozen=True, slots=True)
class Fault:
    """One planned fault: an HTTP status to answer with (e.g. "429", "500"), or SLOW, or RESET."""

    kind: str
    delay: float = 0.0
    path: str = ""  # only requests whose path starts with this; empty matches every data request

    @property
    def status(self) -> int | None:
        """The HTTP status this fault answers with, if it is a status fault."""
        return int(self.kind) if self.kind.isdigit() else None


def _check(kind: str) -> str:
    kind = str(kind).strip().lower()
    if kind in (SLOW, RESET) or (kind.isdigit() and 400 <= int(kind) <= 599):
        return kind
    raise ValueError(f"unknown fault {kind!r}: use an HTTP status 400-599, {SLOW!r} or {RESET!r}")


class FaultPlan:
    """A queue of faults; each matching request consumes one."""

    def __init__(self) -> None:
        self._queue: deque[Fault] = deque()

    def add(self, kind: str | int, count: int = 1, *, delay: float = 0.0, path: str = "") -> None:
        """Play fault `kind` on the next `count` matching requests."""
        fault = Fault(_check(str(kind)), delay, path)
        self._queue.extend([fault] * max(count, 0))

    def clear(self) -> None:
        """Forget every planned fault."""
        self._queue.clear()

    def __len__(self) -> int:
        return len(self._queue)

    def take(self, path: str) -> Fault | None:
        """The next fault planned for a request to `path`, removed from the plan."""
        for fault in self._queue:
            if path.startswith(fault.path):
                self._queue.remove(fault)
                return fault
        return None

    async def play(self, request: web.Request, fault: Fault) -> bool:
        """Play a non-status fault; True when the request must not be answered normally."""
        if fault.kind == SLOW:
            await asyncio.sleep(fault.delay)
            return False
        if fault.kind == RESET:
            if request.transport is not None:
                request.transport.abort()
            return True
        return False

    async def control(self, request: web.Request) -> web.Response:
        """`POST /_control/fault {"kind": "500", "count": 2, "delay": 0, "path": ""}`; DELETE clears."""
        if request.method == "DELETE":
            self.clear()
            return web.json_response({"planned": 0})
        try:
            body: Any = await request.json()
            if not isinstance(body, dict):
                raise TypeError("body must be a JSON object")
            self.add(
                str(body["kind"]),
                int(body.get("count", 1)),
                delay=float(body.get("delay", 0.0)),
                path=str(body.get("path", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"planned": len(self)})
