"""A browser on the wire: curl_cffi impersonation (TLS, HTTP/2, header order) as an httpx transport.

TikTok flags clients whose TLS ClientHello and HTTP/2 settings are not a browser's, so TikTok hosts are
fetched through curl-impersonate. The transport sits *under* the existing httpx client: the allow-list, the
manual redirect checks and `RoutingTransport` (UPSTREAM_ROUTES) stay above it unchanged. The browser's own
default headers (User-Agent, sec-ch-ua client hints, Accept, Accept-Language, sec-fetch-*) come from
curl-impersonate for the chosen target, so the User-Agent always agrees with the fingerprint; the client above
sends none of its own.

Bodies stream with backpressure: curl's write callback pauses the transfer (`CURL_WRITEFUNC_PAUSE`) once
`buffer_bytes` wait unread, and the reader resumes it after draining, so a slow consumer holds at most about
that much per download. (curl_cffi's own `AsyncSession(stream=True)` queues without bound.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import tempfile
import weakref
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import certifi
import httpx
from curl_cffi import AsyncCurl, Curl, CurlECode, CurlError, CurlHttpVersion, CurlInfo, CurlOpt
from curl_cffi.curl import CURL_WRITEFUNC_ERROR, CURL_WRITEFUNC_PAUSE, CURLPAUSE_CONT
from curl_cffi.requests.impersonate import DEFAULT_CHROME, BrowserType

# `chrome` and friends follow the installed curl_cffi's newest target of that browser.
ALIASES: dict[str, str] = {
    "chrome": DEFAULT_CHROME,
    "edge": "edge101",
    "safari": "safari260",
    "safari_ios": "safari260_ios",
    "firefox": "firefox155",
    "chrome_android": "chrome131_android",
}
DEFAULT_TARGET = "chrome"
OFF = "off"

# Headers httpx adds on its own; on the impersonated path the browser's defaults replace them.
_HTTPX_DEFAULTS = ("user-agent", "accept", "accept-encoding", "connection")
_HOP_BY_HOP = frozenset(
    {"connection", "content-length", "transfer-encoding", "keep-alive", "proxy-connection"}
)
_NAVIGATION_ONLY = ("Upgrade-Insecure-Requests", "Sec-Fetch-User", "Cache-Control")
_DECODED = frozenset({"gzip", "deflate", "br", "zstd", "x-gzip"})
_HTTP_VERSIONS = {
    int(CurlHttpVersion.V1_0): b"HTTP/1.0",
    int(CurlHttpVersion.V1_1): b"HTTP/1.1",
    int(CurlHttpVersion.V2_0): b"HTTP/2",
    int(CurlHttpVersion.V3): b"HTTP/3",
}


def targets() -> list[str]:
    """Every impersonation target the installed curl_cffi offers, plus the browser aliases."""
    return sorted({*ALIASES, *(b.value for b in BrowserType)})


def resolve_target(name: str) -> str:
    """The concrete curl_cffi target for a setting value (`chrome` -> `chrome152`); ValueError if unknown."""
    value = name.strip().lower()
    concrete = ALIASES.get(value, value)
    if concrete not in {b.value for b in BrowserType}:
        raise ValueError(
            f"unknown impersonation target {name!r}; use off, chrome, or one of curl_cffi's targets"
        )
    return concrete


def ca_bundle(extra: str | Path | None) -> bytes:
    """The default trust store (certifi) followed by an extra PEM bundle, as one PEM blob."""
    base = Path(certifi.where()).read_bytes()
    if extra is None:
        return base
    return base.rstrip(b"\n") + b"\n" + Path(extra).read_bytes()


def ssl_context(extra: str | Path | None) -> ssl.SSLContext:
    """An SSL context trusting certifi's roots and, when given, an extra CA bundle (the plain-httpx path)."""
    context = ssl.create_default_context(cafile=certifi.where())
    if extra is not None:
        context.load_verify_locations(cafile=str(extra))
    return context


def strip_httpx_defaults(client: httpx.AsyncClient) -> None:
    """Remove the headers httpx adds by itself, so the impersonated browser's own ones are sent."""
    for name in _HTTPX_DEFAULTS:
        client.headers.pop(name, None)


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


class _Transfer:
    """One request's transfer: header lines, then body chunks held in a bounded buffer."""

    def __init__(self, curl: Curl, limit: int) -> None:
        self.curl = curl
        self.limit = limit
        self.status = 0
        self.reason = b""
        self.header_lines: list[bytes] = []
        self.headers_done = asyncio.Event()
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.peak = 0  # the most body bytes held at once (the memory bound, checked by tests)
        self.paused = False
        self.aborted = False
        self.finished = False
        self.error: BaseException | None = None
        self.wakeup = asyncio.Event()
        self.future: asyncio.Future[Any] | None = None

    def on_header(self, line: bytes) -> int:
        text = line.rstrip(b"\r\n")
        if text.startswith(b"HTTP/"):
            # A new status line (after a 1xx): start over.
            parts = text.split(b" ", 2)
            self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            self.reason = parts[2] if len(parts) > 2 else b""
            self.header_lines = []
        elif text:
            self.header_lines.append(text)
        elif self.status >= 200 or self.status == 101:
            self.headers_done.set()
        return len(line)

    def on_body(self, chunk: bytes) -> int:
        if self.aborted:
            return CURL_WRITEFUNC_ERROR
        self.headers_done.set()
        if self.buffered >= self.limit:
            # curl keeps this chunk and hands it over again once resumed.
            self.paused = True
            return CURL_WRITEFUNC_PAUSE
        self.chunks.append(chunk)
        self.buffered += len(chunk)
        self.peak = max(self.peak, self.buffered)
        self.wakeup.set()
        return len(chunk)

    def on_done(self, future: asyncio.Future[Any]) -> None:
        self.finished = True
        if future.cancelled():
            self.error = self.error or httpx.ReadError("transfer cancelled")
        elif future.exception() is not None:
            self.error = future.exception()
        self.headers_done.set()
        self.wakeup.set()

    def take(self) -> bytes | None:
        if not self.chunks:
            return None
        chunk = self.chunks.popleft()
        self.buffered -= len(chunk)
        if self.paused and self.buffered <= self.limit // 2 and not self.finished:
            self.paused = False
            with contextlib.suppress(CurlError):
                self.curl.pause(CURLPAUSE_CONT)  # may deliver the held chunk right here
        return chunk


def _map_error(exc: BaseException, request: httpx.Request, *, started: bool) -> Exception:
    """An httpx exception for a curl failure, so the layers above keep speaking httpx."""
    if isinstance(exc, httpx.HTTPError):
        return exc
    code = getattr(exc, "code", None)
    message = str(exc) or type(exc).__name__
    if code == CurlECode.OPERATION_TIMEDOUT:
        return (httpx.ReadTimeout if started else httpx.ConnectTimeout)(message, request=request)
    if code in (CurlECode.COULDNT_RESOLVE_PROXY, CurlECode.PROXY):
        return httpx.ProxyError(message, request=request)
    if code in (
        CurlECode.COULDNT_CONNECT,
        CurlECode.COULDNT_RESOLVE_HOST,
        CurlECode.SSL_CONNECT_ERROR,
        CurlECode.PEER_FAILED_VERIFICATION,
        CurlECode.SSL_CACERT_BADFILE,
    ):
        return httpx.ConnectError(message, request=request)
    if code == CurlECode.SEND_ERROR:
        return httpx.WriteError(message, request=request)
    if code in (CurlECode.RECV_ERROR, CurlECode.GOT_NOTHING):
        return httpx.ReadError(message, request=request)
    return httpx.RemoteProtocolError(message, request=request)


class _Body(httpx.AsyncByteStream):
    """The response body, read chunk by chunk from the transfer; closing early stops the transfer."""

    def __init__(self, transport: CurlTransport, transfer: _Transfer, request: httpx.Request) -> None:
        self._transport = transport
        self._transfer = transfer
        self._request = request
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        transfer = self._transfer
        read_timeout = _timeouts(self._request)[1]
        while True:
            chunk = transfer.take()
            if chunk is not None:
                yield chunk
                continue
            if transfer.finished:
                if transfer.error is not None and not transfer.aborted:
                    raise _map_error(transfer.error, self._request, started=True)
                return
            transfer.wakeup.clear()
            try:
                await asyncio.wait_for(transfer.wakeup.wait(), read_timeout)
            except TimeoutError:
                raise httpx.ReadTimeout("no data within the read timeout", request=self._request) from None

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._transport.release(self._transfer)


def _timeouts(request: httpx.Request) -> tuple[float | None, float | None]:
    timeout = request.extensions.get("timeout") or {}
    return timeout.get("connect"), timeout.get("read")


class CurlTransport(httpx.AsyncBaseTransport):
    """An httpx transport that sends through curl-impersonate as `impersonate` (a curl_cffi target).

    `proxy` (http://, https://, socks5://, socks5h:// with optional credentials) carries every request;
    `local_address` binds the outgoing side; `ca_file` adds trusted CAs to certifi's. At most
    `max_connections` transfers run at once; each holds at most about `buffer_bytes` of unread body.
    """

    def __init__(
        self,
        *,
        impersonate: str = DEFAULT_TARGET,
        proxy: str | None = None,
        ca_file: str | Path | None = None,
        local_address: str | None = None,
        max_connections: int = 32,
        buffer_bytes: int = 1 << 20,
    ) -> None:
        self.target = resolve_target(impersonate)
        self._proxy = proxy
        self._ca = certifi.where()
        if ca_file is not None:
            # curl takes one CA file (this build has no CAINFO_BLOB): certifi's roots plus the extra ones.
            handle, name = tempfile.mkstemp(prefix="tiktok-bot-ca-", suffix=".pem")
            with os.fdopen(handle, "wb") as out:
                out.write(ca_bundle(ca_file))
            self._ca = name
            weakref.finalize(self, _unlink, name)
        self._local_address = local_address
        self._buffer = buffer_bytes
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[Curl] = []
        self._multi: AsyncCurl | None = None
        self._closed = False
        self.peak_buffered = 0  # the most unread body bytes one transfer held, over all transfers

    def _multi_handle(self) -> AsyncCurl:
        if self._multi is None:
            self._multi = AsyncCurl()
        return self._multi

    def _configure(self, curl: Curl, request: httpx.Request, transfer: _Transfer, body: bytes) -> None:
        curl.impersonate(self.target, default_headers=True)
        curl.setopt(CurlOpt.URL, str(request.url))
        method = request.method.upper()
        if method == "HEAD":
            curl.setopt(CurlOpt.NOBODY, 1)
        elif method != "GET":
            curl.setopt(CurlOpt.CUSTOMREQUEST, method)
        if body or method in ("POST", "PUT", "PATCH"):
            curl.setopt(CurlOpt.POSTFIELDS, body)
            curl.setopt(CurlOpt.POSTFIELDSIZE, len(body))
        host_default = request.url.netloc.decode("ascii")
        lines = []
        for name, value in request.headers.multi_items():
            lower = name.lower()
            if lower in _HOP_BY_HOP or (lower == "host" and value == host_default):
                continue  # curl writes these itself (and Host in the browser's place)
            lines.append(f"{name}: {value}".encode("latin-1"))
        dest = request.headers.get("sec-fetch-dest", "document").lower()
        if dest != "document":
            # A subresource (video, image): no navigation-only headers. `Name:` tells curl to leave one out.
            lines += [f"{name}:".encode() for name in _NAVIGATION_ONLY]
        if lines:
            curl.setopt(CurlOpt.HTTPHEADER, lines)
        curl.setopt(CurlOpt.HEADERFUNCTION, transfer.on_header)
        curl.setopt(CurlOpt.WRITEFUNCTION, transfer.on_body)
        # h2 only by TLS ALPN, as a browser: never a cleartext `Upgrade: h2c` (the sandbox is http).
        curl.setopt(CurlOpt.HTTP_VERSION, CurlHttpVersion.V2TLS)
        # Decode what the browser says it accepts (curl-impersonate only sends the header).
        curl.setopt(CurlOpt.ACCEPT_ENCODING, "gzip, deflate, br, zstd")
        curl.setopt(CurlOpt.FOLLOWLOCATION, 0)  # the layers above check every redirect themselves
        curl.setopt(CurlOpt.CAINFO, self._ca)
        curl.setopt(CurlOpt.PROXY_CAINFO, self._ca)
        # An explicit proxy (or none): never the environment's http_proxy / no_proxy.
        curl.setopt(CurlOpt.PROXY, self._proxy or "")
        curl.setopt(CurlOpt.NOPROXY, "" if self._proxy else "*")
        curl.setopt(CurlOpt.SUPPRESS_CONNECT_HEADERS, 1)
        if self._local_address:
            curl.setopt(CurlOpt.INTERFACE, f"host!{self._local_address}")
        connect, _ = _timeouts(request)
        if connect:
            curl.setopt(CurlOpt.CONNECTTIMEOUT_MS, max(1, int(connect * 1000)))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Start the transfer, wait for the response head, and hand back a streaming response."""
        if self._closed:
            raise RuntimeError("the transport is closed")
        read = _timeouts(request)[1]
        pool = (request.extensions.get("timeout") or {}).get("pool")
        try:
            await asyncio.wait_for(self._slots.acquire(), pool)
        except TimeoutError:
            raise httpx.PoolTimeout("no free connection slot", request=request) from None
        body = await request.aread()
        curl = self._idle.pop() if self._idle else Curl()
        transfer = _Transfer(curl, self._buffer)
        try:
            self._configure(curl, request, transfer, body)
            transfer.future = self._multi_handle().add_handle(curl)
            transfer.future.add_done_callback(transfer.on_done)
            await self._wait_head(transfer, request, read)
            if transfer.status == 0:
                raise _map_error(
                    transfer.error or httpx.RemoteProtocolError("no response"), request, started=False
                )
        except BaseException:
            transfer.aborted = True
            self.release(transfer)
            raise
        pairs = [line.split(b":", 1) for line in transfer.header_lines if b":" in line]
        headers = httpx.Headers([(name.strip(), value.strip()) for name, value in pairs])
        if headers.get("content-encoding", "").lower() in _DECODED:
            # curl has already decoded the body: what arrives is neither encoded nor of that length.
            del headers["content-encoding"]
            headers.pop("content-length", None)
        version = curl.getinfo(CurlInfo.HTTP_VERSION)
        extensions: dict[str, Any] = {"reason_phrase": transfer.reason}
        if isinstance(version, int) and version in _HTTP_VERSIONS:
            extensions["http_version"] = _HTTP_VERSIONS[version]
        return httpx.Response(
            transfer.status,
            headers=headers,
            stream=_Body(self, transfer, request),
            request=request,
            extensions=extensions,
        )

    async def _wait_head(self, transfer: _Transfer, request: httpx.Request, read: float | None) -> None:
        """Wait for the response head: the read timeout counts once the request is out (as in httpx);
        connecting is bounded by curl's own connect timeout."""
        while True:
            try:
                await asyncio.wait_for(transfer.headers_done.wait(), read)
            except TimeoutError:
                sent = transfer.curl.getinfo(CurlInfo.PRETRANSFER_TIME)
                if isinstance(sent, float) and sent == 0.0 and not transfer.finished:
                    continue  # still connecting (or tunnelling through a proxy)
                raise httpx.ReadTimeout("no response head within the read timeout", request=request) from None
            return

    def release(self, transfer: _Transfer) -> None:
        """Stop a transfer if it still runs, and return its handle to the idle list."""
        curl = transfer.curl
        self.peak_buffered = max(self.peak_buffered, transfer.peak)
        if not transfer.finished:
            transfer.aborted = True
            if self._multi is not None:
                with contextlib.suppress(CurlError):
                    self._multi.remove_handle(curl)
        transfer.chunks.clear()
        transfer.buffered = 0
        curl.clean_handles_and_buffers()
        curl.reset()
        if self._closed:
            curl.close()
        else:
            self._idle.append(curl)
        self._slots.release()

    async def aclose(self) -> None:
        """Close the multi handle and every idle curl handle."""
        self._closed = True
        if self._multi is not None:
            await self._multi.close()  # type: ignore[no-untyped-call]
            self._multi = None
        while self._idle:
            self._idle.pop().close()
