"""A loopback round-robin load balancer for webhook replicas: each request goes to the next backend.

Like nginx's `proxy_next_upstream error`: a backend that refuses the connection is skipped and the request
goes to the next one; only when every backend refuses does the client get 502. Everything else (the status,
the body) is passed through as the backend answered.
"""

from __future__ import annotations

import itertools
from collections import Counter
from types import TracebackType
from typing import Self

import aiohttp
from aiohttp import web

_HOP_BY_HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


class RoundRobin:
    """Forwards every request to `backends` (base URLs) in turn, on 127.0.0.1 at a port of its own."""

    def __init__(self, backends: list[str], *, port: int = 0) -> None:
        self.backends = list(backends)
        self.port = port
        self.forwarded: Counter[str] = Counter()  # backend -> requests it answered
        self._turn = itertools.count()
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        """http://127.0.0.1:<port>"""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> Self:
        """Listen; return when ready."""
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        """Stop listening and close the client."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._client is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        start = next(self._turn)
        for step in range(len(self.backends)):
            backend = self.backends[(start + step) % len(self.backends)]
            try:
                async with self._client.request(
                    request.method, backend + request.path_qs, data=body, headers=headers
                ) as resp:
                    payload = await resp.read()
                    self.forwarded[backend] += 1
                    out = {k: v for k, v in resp.headers.items() if k.lower() not in _HOP_BY_HOP}
                    return web.Response(status=resp.status, body=payload, headers=out)
            except aiohttp.ClientConnectionError:
                continue  # refused or dropped: the next backend gets it
        return web.Response(status=502, text="no backend answered")
