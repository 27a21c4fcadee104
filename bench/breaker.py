"""Ten links in a row with TTSave black-holed (accepts, never answers) or refusing connections; defaults.

The download service is built the way `bot/wiring.py` builds it (DOWNLOAD__FIRST_BYTE_TIMEOUT=10,
DOWNLOAD__BREAKER_FAILURES=3, DOWNLOAD__BREAKER_COOLDOWN=30, the production retry policy) on the sandbox's
TikTok emulator; TTSave is a loopback socket that holds connections, or a port nobody listens on. Scenarios:
TTSave dies while the bot runs (the breaker starts closed), TTSave is dead at start-up (the start-up /ping
runs first), the web backend alone (the floor), and the old behaviour (no breaker, no first-byte limit: only
for the refused case, the black hole would cost 60 s a link).

Targets (issue 14): black-holed → the first link pays ≤ 10 s, the next nine nothing; refused → ≤ 2 s added
over ten links.

Run: .venv/bin/python bench/breaker.py
"""

from __future__ import annotations

import asyncio
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.config import settings_from  # noqa: E402
from sandbox.catalogue import T0, post_id_at  # noqa: E402
from sandbox.runner import Sandbox  # noqa: E402
from sandbox.tiktok import TikTokEmulator  # noqa: E402
from services.download.models import Backend  # noqa: E402
from services.download.service import DownloadService, build_backends  # noqa: E402
from services.http import HttpOptions, make_client, parse_routes  # noqa: E402
from services.links import LinkKind, TikTokLink, canonical_post_url  # noqa: E402

CLIP = post_id_at(T0, 1)
LINK = TikTokLink(LinkKind.POST, canonical_post_url(CLIP), post_id=CLIP)


@asynccontextmanager
async def black_hole() -> AsyncIterator[str]:
    """A TTSave URL whose server accepts and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/api/v3"
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


class WithoutProbe:
    """A backend with its health check hidden, so nothing opens its breaker: the old behaviour."""

    def __init__(self, backend: Backend) -> None:
        self.name = backend.name
        self.fetch = backend.fetch
        self.aclose = backend.aclose


def refused_url() -> str:
    """A TTSave URL on a port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/api/v3"


async def ten_links(
    routes: str, ttsave_url: str, backends: list[str], *, breaker: bool = True, startup_probe: bool = False
) -> list[tuple[float, str]]:
    """Ten downloads of one post (no cache in the service): seconds and the attempt list of each."""
    defaults = settings_from({}).download
    first_byte = defaults.first_byte_timeout if breaker else None
    parsed = parse_routes(routes)
    tiktok = make_client(
        routes=parsed,
        browser=True,
        options=HttpOptions(read_timeout=defaults.timeout, first_byte_timeout=first_byte),
    )
    ttsave = make_client(options=HttpOptions(read_timeout=60.0, first_byte_timeout=first_byte))
    chain = build_backends(backends, tiktok_client=tiktok, ttsave_client=ttsave, ttsave_url=ttsave_url)
    if not breaker:
        chain = [WithoutProbe(b) for b in chain]
    with tempfile.TemporaryDirectory() as spool:
        service = DownloadService(
            chain,
            temp_root=Path(spool),
            attempt_timeout=defaults.timeout,
            breaker_failures=defaults.breaker_failures if breaker else 10**9,
            breaker_cooldown=defaults.breaker_cooldown,
            probe_timeout=defaults.first_byte_timeout,
        )
        rows = []
        try:
            if startup_probe:
                service.start_probes()
                await service.wait_probes()
            for _ in range(10):
                started = time.monotonic()
                async with await service.fetch(LINK) as media:
                    attempts = ", ".join(
                        f"{a.backend} {a.seconds:.2f}s {a.error_code or 'ok'}" for a in media.attempts
                    )
                rows.append((time.monotonic() - started, attempts))
        finally:
            await service.aclose()
            await tiktok.aclose()
            await ttsave.aclose()
    return rows


def report(title: str, rows: list[tuple[float, str]], floor: float | None = None) -> None:
    total = sum(s for s, _ in rows)
    print(f"\n{title}")
    for n, (seconds, attempts) in enumerate(rows, 1):
        print(f"  link {n:>2}: {seconds * 1000:8.0f} ms   {attempts}")
    line = f"  total {total:.2f} s; first {rows[0][0]:.2f} s; links 2-10 {sum(s for s, _ in rows[1:]):.2f} s"
    if floor is not None:
        line += f"; added over the web alone: {total - floor:.2f} s"
    print(line)


async def main() -> None:
    async with Sandbox([TikTokEmulator()]) as sandbox:
        routes = sandbox.env()["UPSTREAM_ROUTES"]
        web_alone = await ten_links(routes, refused_url(), ["web"])
        floor = sum(s for s, _ in web_alone)
        report("web backend alone (the floor)", web_alone)
        async with black_hole() as url:
            report(
                "TTSave black-holed, dies while the bot runs (breaker closed at the start)",
                await ten_links(routes, url, ["ttsave", "web"]),
                floor,
            )
        async with black_hole() as url:
            report(
                "TTSave black-holed at start-up (the start-up /ping opens the breaker first)",
                await ten_links(routes, url, ["ttsave", "web"], startup_probe=True),
                floor,
            )
        report(
            "TTSave refusing connections (breaker closed at the start)",
            await ten_links(routes, refused_url(), ["ttsave", "web"]),
            floor,
        )
        report(
            "TTSave refusing connections, old behaviour (no breaker, no first-byte limit)",
            await ten_links(routes, refused_url(), ["ttsave", "web"], breaker=False),
            floor,
        )


if __name__ == "__main__":
    asyncio.run(main())
