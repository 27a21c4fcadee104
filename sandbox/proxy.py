"""A loopback forward proxy for tests: HTTP (CONNECT and plain absolute-URI requests) and SOCKS5, per host.

Each `ForwardProxy` connects upstream from its own loopback source address (`source="127.0.0.2"`,
`"127.0.0.3"`, ...; Linux routes all of 127.0.0.0/8 to loopback), so an emulator tells proxies apart by the
client address it records (`Recorded.remote`): that is how the TikTok emulator blocks "per proxy" (10204 for
one address, served for another). `hits` records every request; `count(host)` says how many went to a host —
the `Host` header for plain requests, the CONNECT authority's host for tunnels. Only loopback targets are
served; anything else is refused with 403, so nothing leaves the machine. Optional credentials make it answer
407 without them (SOCKS5: username/password authentication, RFC 1929). The same port speaks SOCKS5 when a
client's first byte is 5: `url` is the http:// form, `socks_url` the socks5:// one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
from dataclasses import dataclass, field
from typing import Self

_MAX_HEAD = 64 * 1024


@dataclass(frozen=True, slots=True)
class ProxyHit:
    """One request the proxy handled."""

    method: str  # CONNECT, or the plain request's method
    target: str  # host:port it connected to
    host: str  # the logical host: the Host header (plain) or the CONNECT authority's host
    status: int  # what the proxy itself answered (200 for a tunnel or a forwarded request)


@dataclass(slots=True)
class ForwardProxy:
    """One forward proxy on 127.0.0.1; `url` is what DOWNLOAD__PROXIES takes."""

    source: str | None = None
    username: str | None = None
    password: str | None = None
    hits: list[ProxyHit] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        """`http://[user:password@]127.0.0.1:port`."""
        auth = f"{self.username}:{self.password}@" if self.username is not None else ""
        return f"http://{auth}127.0.0.1:{self.port}"

    @property
    def socks_url(self) -> str:
        """`socks5://[user:password@]127.0.0.1:port` (the same listener)."""
        return "socks5" + self.url.removeprefix("http")

    def count(self, host: str | None = None) -> int:
        """Requests forwarded (status 200) in all, or for one logical host."""
        return sum(1 for h in self.hits if h.status == 200 and (host is None or h.host == host))

    async def start(self) -> None:
        """Listen on a free loopback port."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening and cut every open tunnel."""
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = await reader.readexactly(1)
        if first == b"\x05":
            await self._socks(reader, writer)
            return
        head = first + await reader.readuntil(b"\r\n\r\n")
        if len(head) > _MAX_HEAD:
            return
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, version = request_line.split(" ", 2)
        headers = [line.split(":", 1) for line in header_lines if ":" in line]
        fields = {name.strip().lower(): value.strip() for name, value in headers}
        if method == "CONNECT":
            authority, plain_host = target, target.rpartition(":")[0]
        else:
            if not target.startswith("http://"):
                await self._refuse(writer, 400, "absolute http:// URI expected", method, target, "")
                return
            authority = target[len("http://") :].split("/", 1)[0]
            plain_host = fields.get("host", authority).rpartition(":")[0] or fields.get("host", authority)
        host, _, port_text = authority.rpartition(":")
        if not self._authorised(fields.get("proxy-authorization", "")):
            await self._refuse(writer, 407, "proxy credentials needed", method, authority, plain_host)
            return
        if not _loopback(host) or not port_text.isdigit():
            await self._refuse(writer, 403, "only loopback targets", method, authority, plain_host)
            return
        local = (self.source, 0) if self.source else None
        up_reader, up_writer = await asyncio.open_connection(host, int(port_text), local_addr=local)
        self.hits.append(ProxyHit(method, authority, plain_host.lower(), 200))
        try:
            if method == "CONNECT":
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
            else:
                # One request per connection: ask the origin to close, then relay until it does.
                path = "/" + target[len("http://") :].partition("/")[2]
                kept = [
                    f"{name}:{value}"
                    for name, value in headers
                    if name.strip().lower() not in ("proxy-authorization", "proxy-connection", "connection")
                ]
                up_head = "\r\n".join([f"{method} {path} {version}", *kept, "Connection: close", "", ""])
                up_writer.write(up_head.encode("latin-1"))
                await up_writer.drain()
            # The origin's side governs: once it is done, so is the tunnel (or the one request).
            upload = asyncio.create_task(_pipe(reader, up_writer))
            try:
                await _pipe(up_reader, writer)
            finally:
                upload.cancel()
                await asyncio.gather(upload, return_exceptions=True)
        finally:
            up_writer.close()
            with contextlib.suppress(Exception):
                await up_writer.wait_closed()

    async def _socks(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """SOCKS5 (RFC 1928) CONNECT, with username/password (RFC 1929) when the proxy has credentials."""
        methods = await reader.readexactly((await reader.readexactly(1))[0])
        wanted = 0x02 if self.username is not None else 0x00
        if wanted not in methods:
            writer.write(b"\x05\xff")
            self.hits.append(ProxyHit("SOCKS5", "", "", 407))
            return
        writer.write(bytes([5, wanted]))
        if wanted == 0x02:
            await reader.readexactly(1)  # sub-negotiation version
            user = (await reader.readexactly((await reader.readexactly(1))[0])).decode()
            password = (await reader.readexactly((await reader.readexactly(1))[0])).decode()
            if (user, password) != (self.username, self.password):
                writer.write(b"\x01\x01")
                self.hits.append(ProxyHit("SOCKS5", "", "", 407))
                return
            writer.write(b"\x01\x00")
        _version, command, _reserved, kind = await reader.readexactly(4)
        if kind == 1:
            host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
        elif kind == 4:
            host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
        else:
            host = (await reader.readexactly((await reader.readexactly(1))[0])).decode()
        port = int.from_bytes(await reader.readexactly(2), "big")
        target = f"{host}:{port}"
        if command != 1 or not _loopback(host):
            writer.write(b"\x05\x02\x00\x01\x00\x00\x00\x00\x00\x00")  # not allowed by ruleset
            self.hits.append(ProxyHit("SOCKS5", target, host, 403))
            return
        local = (self.source, 0) if self.source else None
        up_reader, up_writer = await asyncio.open_connection(host, port, local_addr=local)
        self.hits.append(ProxyHit("SOCKS5", target, host, 200))
        writer.write(b"\x05\x00\x00\x01\x7f\x00\x00\x01" + port.to_bytes(2, "big"))
        await writer.drain()
        try:
            upload = asyncio.create_task(_pipe(reader, up_writer))
            try:
                await _pipe(up_reader, writer)
            finally:
                upload.cancel()
                await asyncio.gather(upload, return_exceptions=True)
        finally:
            up_writer.close()
            with contextlib.suppress(Exception):
                await up_writer.wait_closed()

    def _authorised(self, header: str) -> bool:
        if self.username is None:
            return True
        expected = base64.b64encode(f"{self.username}:{self.password or ''}".encode()).decode()
        return header == f"Basic {expected}"

    async def _refuse(
        self, writer: asyncio.StreamWriter, status: int, text: str, method: str, target: str, host: str
    ) -> None:
        self.hits.append(ProxyHit(method, target, host.lower(), status))
        extra = 'Proxy-Authenticate: Basic realm="sandbox"\r\n' if status == 407 else ""
        body = text.encode()
        head = f"HTTP/1.1 {status} {text}\r\n{extra}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        writer.write(head.encode() + body)
        await writer.drain()


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Copy until EOF, then half-close the other side."""
    try:
        while chunk := await source.read(65536):
            sink.write(chunk)
            await sink.drain()
    except ConnectionError:
        pass
    finally:
        with contextlib.suppress(Exception):
            if sink.can_write_eof():
                sink.write_eof()
