"""The one fault mechanism of every emulator: a plan of faults, each spoiling the next requests it matches.

A fault says what goes wrong (`kind`: an HTTP status such as "429" where the emulator takes statuses, or a
name the emulator knows, such as "cdn_truncated"), for how many matching requests (`count`), and which
requests match (`method`, `path`, `host`, `chat_id`: unset matches any). Each emulator plays its kinds as its
upstream does on the wire; this module only queues and matches them. From a test: `emu.fault_next("429",
count=2, path="/apis/tt/post*")`, `emu.clear_faults()`. Over HTTP, on every emulator's own port:
`POST /_control/faults` with the same fields as JSON answers `{"queued": [...]}`; `GET` adds `"kinds"` (what
each kind does); `DELETE` clears; a bad fault answers 400 `{"error": ..., "kinds": ...}`.
"""

from __future__ import annotations

import asyncio
import fnmatch
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from aiohttp import web

T = TypeVar("T")
STATUSES = "400..599"  # how an emulator's `kinds` lists "any HTTP status"


@dataclass(frozen=True, slots=True)
class Target:
    """What a request offers a fault's matcher; an emulator fills in what its upstream has."""

    method: str = ""  # the HTTP method, or the API method of an RPC upstream (Telegram's sendVideo)
    paths: tuple[str, ...] = ()  # the path, and any route template it is also known by (Discord)
    host: str = ""
    chat_id: int | str | None = None

    @classmethod
    def of(cls, request: web.Request) -> Target:
        """The method, path and Host of an HTTP request."""
        host = (request.headers.get("Host") or "").split(":")[0].lower()
        return cls(request.method, (request.path,), host)


@dataclass(slots=True)
class Fault:
    """`kind` for the next `count` requests that match every matcher field set (None matches any)."""

    kind: str
    count: int = 1
    delay: float | None = None  # seconds, for the kinds that stall (each emulator has its default)
    # The matcher: method case-insensitively, path and host as fnmatch patterns, chat_id exactly.
    method: str | None = None
    path: str | None = None
    host: str | None = None
    chat_id: int | str | None = None
    # What an error answer says, where the upstream's errors carry it (Telegram, Discord).
    retry_after: float | None = None
    message: str | None = None
    code: int | None = None
    is_global: bool = False

    @property
    def status(self) -> int | None:
        """The HTTP status of a status kind ("429" -> 429)."""
        return int(self.kind) if self.kind.isdigit() else None

    def matches(self, target: Target) -> bool:
        """Whether a request is hit by this fault."""
        if self.method is not None and self.method.lower() != target.method.lower():
            return False
        if self.path is not None and not any(fnmatch.fnmatchcase(p, self.path) for p in target.paths):
            return False
        if self.host is not None and not fnmatch.fnmatchcase(target.host, self.host.lower()):
            return False
        return self.chat_id is None or self.chat_id == target.chat_id

    def json(self) -> dict[str, Any]:
        """The fields that are set, as `/_control/faults` reads and answers them."""
        out: dict[str, Any] = {"kind": self.kind, "count": self.count}
        for f in fields(self)[2:]:
            value = getattr(self, f.name)
            if value is not None and value is not False:
                out[_JSON_NAMES.get(f.name, f.name)] = value
        return out

    @classmethod
    def from_json(cls, data: Any) -> Fault:
        """A fault from a `/_control/faults` body; ValueError names what is wrong."""
        if not isinstance(data, dict):
            raise ValueError("the body must be a JSON object")
        known = {_JSON_NAMES.get(f.name, f.name): f.name for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)}; known: {', '.join(known)}")
        if data.get("kind") is None:
            raise ValueError("kind is required")
        try:
            return cls(
                kind=str(data["kind"]),
                count=int(data.get("count", 1)),
                delay=_opt(float, data.get("delay")),
                method=_opt(str, data.get("method")),
                path=_opt(str, data.get("path")),
                host=_opt(str, data.get("host")),
                chat_id=_chat_id(data.get("chat_id")),
                retry_after=_opt(float, data.get("retry_after")),
                message=_opt(str, data.get("message")),
                code=_opt(int, data.get("code")),
                is_global=bool(data.get("global", False)),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"bad fault field: {exc}") from None


_JSON_NAMES = {"is_global": "global"}


def _opt(convert: Callable[[Any], T], value: Any) -> T | None:
    return None if value is None else convert(value)


def _chat_id(value: Any) -> int | str | None:
    if value is None or isinstance(value, int):
        return value
    text = str(value).strip()
    return int(text) if text.lstrip("-").isdigit() else text


class FaultPlan:
    """Faults in the order they were added; a request takes one use of the first that matches it."""

    def __init__(
        self,
        kinds: Mapping[str, str],
        *,
        statuses: str | None = None,
    ) -> None:
        """`kinds`: name -> what it does; `statuses`: what an HTTP-status kind does (None: none are taken)."""
        self.kinds = dict(kinds) | ({STATUSES: statuses} if statuses else {})
        self._statuses = statuses is not None
        # Refuses (ValueError) a fault the upstream could not produce (Telegram: a flood wait under a second).
        self.check: Callable[[Fault], None] | None = None
        self._queue: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        """Queue `fault` after checking its kind and count; ValueError says what is wrong."""
        fault.kind = str(fault.kind).strip().lower()
        status_kind = fault.kind.isdigit() and 400 <= int(fault.kind) <= 599
        if fault.kind not in self.kinds and not (self._statuses and status_kind):
            known = ", ".join(self.kinds)
            raise ValueError(f"unknown fault {fault.kind!r}: this emulator knows {known}")
        if fault.count < 1:
            raise ValueError("count must be at least 1")
        if self.check is not None:
            self.check(fault)
        self._queue.append(fault)
        return fault

    def take(self, target: Target, kinds: Collection[str] | None = None) -> Fault | None:
        """Use up one request of the first queued fault that matches `target` (and is among `kinds`)."""
        for fault in self._queue:
            if (kinds is None or fault.kind in kinds) and fault.matches(target):
                fault.count -= 1
                if fault.count <= 0:
                    self._queue.remove(fault)
                return fault
        return None

    def clear(self) -> None:
        """Forget every queued fault."""
        self._queue.clear()

    @property
    def queued(self) -> list[Fault]:
        """The faults still queued, first to be taken first."""
        return list(self._queue)

    def __len__(self) -> int:
        return len(self._queue)

    def add_routes(self, app: web.Application) -> None:
        """Serve `GET|POST|DELETE /_control/faults`."""
        app.router.add_get("/_control/faults", self._get)
        app.router.add_post("/_control/faults", self._post)
        app.router.add_delete("/_control/faults", self._delete)

    def _listing(self) -> list[dict[str, Any]]:
        return [fault.json() for fault in self._queue]

    async def _get(self, request: web.Request) -> web.Response:
        return web.json_response({"queued": self._listing(), "kinds": self.kinds})

    async def _post(self, request: web.Request) -> web.Response:
        try:
            self.add(Fault.from_json(await request.json()))
        except ValueError as exc:  # bad JSON is a ValueError too
            return web.json_response({"error": str(exc), "kinds": self.kinds}, status=400)
        return web.json_response({"queued": self._listing()})

    async def _delete(self, request: web.Request) -> web.Response:
        self.clear()
        return web.json_response({"queued": []})


# --- how emulators play the transport-level kinds -----------------------------------------------------------


TRANSPORT_FAULTS: Mapping[str, str] = {
    "slow": "the answer comes after `delay` seconds (default 0)",
    "reset": "the connection drops without an answer (a transport error)",
}


async def play_transport(request: web.Request, fault: Fault) -> bool:
    """Play a TRANSPORT_FAULTS kind; True when the request must not be answered (its connection is gone)."""
    if fault.kind == "slow":
        await asyncio.sleep(fault.delay or 0.0)
    elif fault.kind == "reset":
        if request.transport is not None:
            request.transport.abort()
        return True
    return False


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
