"""Named fault kinds for emulators whose failures are protocol-specific (a cut stream, a cookie-less page).

`sandbox.faults.FaultPlan` plays HTTP statuses, `slow` and `reset`; the TikTok and TTSave emulators need modes
of their own, so this is the same control with a named set of kinds per emulator (`FAULTS`). From a test:
`emu.fault_next("truncated")`, `emu.fault_next("slow", count=2, delay=1.5)`, `emu.clear_faults()`. Over HTTP
(for `tiktok-bot sandbox`), as the other emulators: `POST /_control/fault {"kind": "truncated", "count": 1,
"delay": 2.0}`; `DELETE /_control/fault` clears; `GET /_control/fault` lists what is queued and every kind
known; `GET /_control/requests` lists the requests served.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from aiohttp import web

from sandbox.base import Emulator


@dataclass(slots=True)
class Fault:
    """A queued fault: `kind` for the next `remaining` matching requests; `delay` seconds where it stalls."""

    kind: str
    remaining: int = 1
    delay: float | None = None


class FaultControl(Emulator):
    """An emulator whose behaviour per request can be spoiled on purpose."""

    FAULTS: ClassVar[Mapping[str, str]] = {}  # kind -> what it does

    def __init__(self) -> None:
        super().__init__()
        self._faults: list[Fault] = []

    def fault_next(self, kind: str, count: int = 1, *, delay: float | None = None) -> None:
        """Make the next `count` requests that fault `kind` applies to fail that way."""
        if kind not in self.FAULTS:
            raise ValueError(f"unknown fault {kind!r}; {self.name} knows {', '.join(sorted(self.FAULTS))}")
        if count < 1:
            raise ValueError("count must be at least 1")
        self._faults.append(Fault(kind, count, delay))

    def clear_faults(self) -> None:
        """Forget every queued fault."""
        self._faults.clear()

    @property
    def pending_faults(self) -> list[Fault]:
        """Faults still queued."""
        return list(self._faults)

    def take_fault(self, kinds: Collection[str]) -> Fault | None:
        """Consume one use of the first queued fault among `kinds` (those this request can suffer)."""
        for fault in self._faults:
            if fault.kind in kinds:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return Fault(fault.kind, 1, fault.delay)
        return None

    def add_control_routes(self, app: web.Application) -> None:
        """Serve the HTTP control endpoints under /_control/."""
        app.router.add_post("/_control/fault", self._post_fault)
        app.router.add_delete("/_control/fault", self._delete_faults)
        app.router.add_get("/_control/fault", self._get_faults)
        app.router.add_get("/_control/requests", self._get_requests)

    async def _post_fault(self, request: web.Request) -> web.Response:
        try:
            data: Any = await request.json()
            kind = data["kind"] if "kind" in data else data["mode"]  # `mode` is accepted as an alias
            self.fault_next(str(kind), int(data.get("count", 1)), delay=_float(data.get("delay")))
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"error": str(exc), "kinds": dict(self.FAULTS)}, status=400)
        return web.json_response({"queued": [asdict(f) for f in self._faults]})

    async def _delete_faults(self, request: web.Request) -> web.Response:
        self.clear_faults()
        return web.json_response({"queued": []})

    async def _get_faults(self, request: web.Request) -> web.Response:
        return web.json_response({"queued": [asdict(f) for f in self._faults], "kinds": dict(self.FAULTS)})

    async def _get_requests(self, request: web.Request) -> web.Response:
        rows = [asdict(r) for r in self.requests if not r.path.startswith("/_control/")]
        return web.json_response({"requests": rows})


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def client_gone(request: web.Request) -> bool:
    """Whether the client has closed the connection."""
    transport = request.transport
    return transport is None or transport.is_closing()


async def stall(request: web.Request, seconds: float) -> bool:
    """Wait `seconds`; False (at once) when the client goes meanwhile, so shutdown is never held up."""
    loop = asyncio.get_running_loop()
    until = loop.time() + seconds
    while loop.time() < until:
        if client_gone(request):
            return False
        await asyncio.sleep(min(0.05, max(0.0, until - loop.time())))
    return not client_gone(request)


GONE = 499
"""The status recorded for a request whose client left before the answer (nginx's convention)."""


def gone() -> web.Response:
    """An answer for a client that has left; aiohttp drops it quietly."""
    return web.Response(status=GONE, text="client closed the request")
