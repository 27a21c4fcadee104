"""The emulator base: an aiohttp app on loopback that records what it serves and plays planned faults."""

from __future__ import annotations

import abc
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Self

from aiohttp import web

from sandbox.faults import Fault, FaultPlan


@dataclass(slots=True)
class Recorded:
    """One request an emulator served."""

    method: str
    host: str
    path: str
    query: str
    status: int
    at: float = field(default_factory=time.monotonic)
    # What the client sent (User-Agent, sec-ch-ua, Cookie...) and from which address: tests check what the bot
    # looked like on the wire, and which proxy (each sandbox proxy connects from its own 127.0.0.x) it used.
    headers: Mapping[str, str] = field(default_factory=dict)
    remote: str = ""


class Emulator(abc.ABC):
    """An upstream emulator on loopback HTTP; `requests` records what it was asked, `faults` spoil it."""

    name = "emulator"
    # Above Telegram's 50 MB upload limit so big uploads reach the handler, which then refuses them properly.
    client_max_size = 2200 * 1024 * 1024
    # The fault kinds it plays by name -> what each does, and what a fault of any HTTP status 400..599 does
    # (None: it takes no status faults); see sandbox.faults.
    FAULTS: ClassVar[Mapping[str, str]] = {}
    FAULT_STATUSES: ClassVar[str | None] = None

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.faults = FaultPlan(self.FAULTS, statuses=self.FAULT_STATUSES)
        self._runner: web.AppRunner | None = None
        self.host = "127.0.0.1"
        self.port = 0
        self.https_port = 0

    def fault_next(
        self,
        kind: str | int,
        count: int = 1,
        *,
        delay: float | None = None,
        method: str | None = None,
        path: str | None = None,
        host: str | None = None,
        chat_id: int | str | None = None,
        retry_after: float | None = None,
        message: str | None = None,
        code: int | None = None,
        is_global: bool = False,
    ) -> Fault:
        """Spoil the next `count` requests matching method/path/host/chat_id with `kind` (sandbox.faults)."""
        return self.faults.add(
            Fault(
                str(kind),
                count,
                delay=delay,
                method=method,
                path=path,
                host=host,
                chat_id=chat_id,
                retry_after=retry_after,
                message=message,
                code=code,
                is_global=is_global,
            )
        )

    def clear_faults(self) -> None:
        """Forget every queued fault."""
        self.faults.clear()

    @abc.abstractmethod
    def routes(self, app: web.Application) -> None:
        """Add this emulator's routes to `app`."""

    @abc.abstractmethod
    def env(self) -> dict[str, str]:
        """The settings the bot needs to use this emulator, as environment variables."""

    def routed_hosts(self) -> list[str]:
        """Host patterns UPSTREAM_ROUTES should send to this emulator (empty if reached by its own URL)."""
        return []

    @property
    def base_url(self) -> str:
        """`http://host:port` of the running emulator."""
        return f"http://{self.host}:{self.port}"

    @property
    def https_base_url(self) -> str:
        """`https://host:port` of the https listener (see `serve_https`)."""
        if not self.https_port:
            raise RuntimeError("no https listener: call serve_https() first")
        return f"https://{self.host}:{self.https_port}"

    async def serve_https(self, context: ssl.SSLContext, port: int = 0) -> str:
        """Also serve over TLS with `context` (`sandbox.tls.SandboxCA().server_context()`); its base URL."""
        if self._runner is None:
            raise RuntimeError("start() the emulator first")
        site = web.TCPSite(self._runner, self.host, port, ssl_context=context)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.https_port = int(sockets[0].getsockname()[1]) if sockets else port
        return self.https_base_url

    def hits(self, path_prefix: str = "", host: str | None = None) -> list[Recorded]:
        """Recorded requests whose path starts with `path_prefix` (and whose Host is `host`, if given)."""
        return [
            r for r in self.requests if r.path.startswith(path_prefix) and (host is None or r.host == host)
        ]

    @web.middleware
    async def _record(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            host = (request.headers.get("Host") or "").split(":")[0].lower()
            self.requests.append(
                Recorded(
                    request.method,
                    host,
                    request.path,
                    request.query_string,
                    status,
                    headers={k.lower(): v for k, v in request.headers.items()},
                    remote=request.remote or "",
                )
            )

    def make_app(self) -> web.Application:
        """The aiohttp application with recording and this emulator's routes."""
        app = web.Application(client_max_size=self.client_max_size, middlewares=[self._record])
        self.faults.add_routes(app)
        app.router.add_get("/_control/requests", self._get_requests)
        self.routes(app)
        return app

    async def _get_requests(self, request: web.Request) -> web.Response:
        """`GET /_control/requests`: every request served but the control API's own."""
        rows: list[dict[str, Any]] = [asdict(r) for r in self.requests if not r.path.startswith("/_control/")]
        return web.json_response({"requests": rows})

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Start serving on `host:port` (port 0 picks a free one)."""
        # shutdown_timeout belongs to the runner since aiohttp 3.9; on the site it is deprecated.
        self._runner = web.AppRunner(
            self.make_app(), access_log=None, handle_signals=False, shutdown_timeout=0.5
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self.host = host
        self.port = int(sockets[0].getsockname()[1]) if sockets else port

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self.https_port = 0

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
