"""A loopback HTTP peer that answers each (Host, path) with a scripted response and records every request."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from aiohttp import web

from sandbox.base import Emulator


@dataclass(frozen=True, slots=True)
class Answer:
    """What the host says to one request."""

    status: int = 200
    location: str | None = None
    body: str = ""
    delay: float = 0.0


def redirect(location: str, status: int = 301) -> Answer:
    """A redirect to `location`."""
    return Answer(status, location=location)


class ScriptedHost(Emulator):
    """Answers `(host, path)` from `answers`; anything unscripted is a 404. Dispatches by the Host header."""

    name = "scripted"

    def __init__(self) -> None:
        super().__init__()
        self.answers: dict[tuple[str, str], Answer] = {}

    def script(self, host: str, path: str, answer: Answer) -> None:
        """Answer requests for `path` on `host` with `answer`."""
        self.answers[(host, path)] = answer

    def routes(self, app: web.Application) -> None:
        """One catch-all route."""
        app.router.add_route("*", "/{tail:.*}", self._serve)

    def env(self) -> dict[str, str]:
        """Nothing: tests route hosts here themselves."""
        return {}

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        host = (request.headers.get("Host") or "").split(":")[0].lower()
        answer = self.answers.get((host, request.path))
        if answer is None:
            return web.Response(status=404, text="not scripted")
        if answer.delay:
            await asyncio.sleep(answer.delay)
        headers = {"Location": answer.location} if answer.location is not None else {}
        return web.Response(status=answer.status, headers=headers, text=answer.body)


@contextmanager
def serve_in_thread(host: ScriptedHost) -> Iterator[ScriptedHost]:
    """Run `host` on its own event loop in a thread, for code that runs `asyncio.run` itself (the CLI)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(host.start(), loop).result(10)
        try:
            yield host
        finally:
            asyncio.run_coroutine_threadsafe(host.stop(), loop).result(10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
