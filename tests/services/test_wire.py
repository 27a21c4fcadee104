"""services.wire: the curl-impersonate transport under httpx: bounded streaming, errors, slots."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web

from services.wire import CurlTransport, resolve_target, strip_httpx_defaults, targets

SIZE = 24 * 1024 * 1024
LIMIT = 256 * 1024


async def _big(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    response.content_length = SIZE
    await response.prepare(request)
    block = b"\x5a" * 65536
    try:
        for _ in range(SIZE // len(block)):
            await response.write(block)
        await response.write_eof()
    except ConnectionError:
        pass  # the client went away early
    return response


async def _gzip(request: web.Request) -> web.Response:
    body = gzip.compress(b"hello " * 1000)
    return web.Response(body=body, headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"})


@pytest.fixture
async def server() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/big", _big)
    app.router.add_get("/gzip", _gzip)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


def client(transport: CurlTransport) -> httpx.AsyncClient:
    made = httpx.AsyncClient(transport=transport, trust_env=False, timeout=httpx.Timeout(10.0))
    strip_httpx_defaults(made)
    return made


async def test_a_slow_reader_holds_a_bounded_amount(server: str) -> None:
    transport = CurlTransport(buffer_bytes=LIMIT)
    async with client(transport) as http, http.stream("GET", f"{server}/big") as response:
        received = 0
        async for chunk in response.aiter_raw():
            if received == 0:
                # A reader stuck elsewhere (an upload): without backpressure curl would queue the whole body.
                await asyncio.sleep(0.5)
            received += len(chunk)
    assert received == SIZE
    # At most the limit plus the chunk that crossed it (curl hands over at most 16 KiB a call on HTTP/1).
    assert 0 < transport.peak_buffered <= LIMIT + 64 * 1024


async def test_closing_early_frees_the_slot(server: str) -> None:
    transport = CurlTransport(max_connections=1)
    async with client(transport) as http:
        for _ in range(3):  # with one slot, a leaked transfer would make the next request wait forever
            async with http.stream("GET", f"{server}/big") as response:
                async for _chunk in response.aiter_raw():
                    break
        assert (await asyncio.wait_for(http.get(f"{server}/gzip"), 10)).status_code == 200


async def test_a_decoded_body_loses_its_encoding_headers(server: str) -> None:
    async with client(CurlTransport()) as http:
        response = await http.get(f"{server}/gzip")
    assert response.text == "hello " * 1000
    assert "content-encoding" not in response.headers and "content-length" not in response.headers


async def test_transport_failures_are_httpx_errors() -> None:
    async with client(CurlTransport()) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get("http://127.0.0.1:9/")  # discard port: nothing listens


def test_targets() -> None:
    assert resolve_target("chrome").startswith("chrome") and resolve_target("chrome") in targets()
    assert resolve_target("Safari260") == "safari260"
    with pytest.raises(ValueError, match="unknown impersonation target"):
        resolve_target("netscape4")
