"""HTTP foundation: one factory for upstream clients, the TikTok allow-list, and UPSTREAM_ROUTES.

UPSTREAM_ROUTES maps host patterns (an exact host or `*.suffix`) to base URLs. A request whose host
matches is sent to that base instead, with the same path and query and the original `Host` header, so
an emulator on loopback can tell www.tiktok.com from vm.tiktok.com. The allow-list always judges the
logical URL, before routing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from services.wire import DEFAULT_TARGET, OFF, CurlTransport, ssl_context, strip_httpx_defaults

# Only for DOWNLOAD__IMPERSONATE=off (plain httpx): impersonated clients send their browser's own headers.
BROWSER_USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
BROWSER_HEADERS: Mapping[str, str] = {
    "User-Agent": BROWSER_USER_AGENT,
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "Accept-Language": "en-US,en;q=0.9",
}

# Hosts the bot may contact on TikTok's behalf: the registrable domains and all their subdomains.
TIKTOK_DOMAINS: tuple[str, ...] = (
    "tiktok.com",
    "tiktokv.com",
    "tiktokcdn.com",
    "tiktokcdn-us.com",
    "tiktokcdn-eu.com",
)


def is_tiktok_host(host: str) -> bool:
    """Whether `host` is a TikTok domain or one of its subdomains (never a look-alike)."""
    host = host.lower().rstrip(".")
    return any(host == d or host.endswith("." + d) for d in TIKTOK_DOMAINS)


def is_allowed_url(url: str | httpx.URL) -> bool:
    """Whether `url` is http(s) on a TikTok host, on its scheme's default port, with no credentials in it."""
    try:
        parsed = httpx.URL(url) if isinstance(url, str) else url
    except (httpx.InvalidURL, ValueError, TypeError):
        return False
    if parsed.scheme not in ("http", "https") or parsed.userinfo:
        return False
    # httpx drops a scheme's default port (`:443` on https, `:80` on http), so any port left is another
    # service on a TikTok host (`www.tiktok.com:22`). Routing for tests rewrites URLs later.
    if parsed.port is not None:
        return False
    return is_tiktok_host(parsed.host)


@dataclass(frozen=True, slots=True)
class Route:
    """One UPSTREAM_ROUTES entry: requests for `pattern` go to `base`."""

    pattern: str
    base: httpx.URL

    def matches(self, host: str) -> bool:
        """Whether a request host falls under this route."""
        host = host.lower()
        if self.pattern.startswith("*."):
            suffix = self.pattern[1:]
            return host.endswith(suffix) or host == self.pattern[2:]
        return host == self.pattern


def parse_routes(value: str | Mapping[str, str] | None) -> tuple[Route, ...]:
    """Parse UPSTREAM_ROUTES (a JSON object or mapping) into routes, exact hosts first."""
    if not value:
        return ()
    mapping: object = json.loads(value) if isinstance(value, str) else value
    if not isinstance(mapping, Mapping):
        raise ValueError("UPSTREAM_ROUTES must be a JSON object of host pattern -> base URL")
    routes = []
    for pattern, base in mapping.items():
        if not isinstance(pattern, str) or not isinstance(base, str):
            raise ValueError("UPSTREAM_ROUTES keys and values must be strings")
        url = httpx.URL(base)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"UPSTREAM_ROUTES base for {pattern!r} must be an http(s) URL")
        routes.append(Route(pattern.lower(), url))
    # Exact hosts win over wildcards; longer wildcards over shorter ones.
    routes.sort(key=lambda r: (r.pattern.startswith("*."), -len(r.pattern)))
    return tuple(routes)


class RoutingTransport(httpx.AsyncBaseTransport):
    """Sends requests for routed hosts to their base URL, keeping path, query and Host header."""

    def __init__(self, routes: tuple[Route, ...], inner: httpx.AsyncBaseTransport) -> None:
        self._routes = routes
        self._inner = inner

    def route_for(self, host: str) -> Route | None:
        """The route a host is sent through, if any."""
        return next((r for r in self._routes if r.matches(host)), None)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Rewrite the request's target when its host is routed, then send it."""
        route = self.route_for(request.url.host)
        if route is not None:
            original_host = request.headers.get("Host") or request.url.netloc.decode("ascii")
            request.url = request.url.copy_with(
                scheme=route.base.scheme, host=route.base.host, port=route.base.port
            )
            request.headers["Host"] = original_host
            # The emulator needs the logical scheme to rebuild absolute URLs (CDN links, redirects).
            request.headers.setdefault("X-Forwarded-Proto", "https")
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self._inner.aclose()


class FirstByteTimeout(httpx.ReadTimeout):
    """The upstream accepted the request but sent no response headers within the first-byte limit."""


class FirstByteTransport(httpx.AsyncBaseTransport):
    """Gives each request `limit` seconds from sending to its response headers, apart from the read timeout
    that then applies between body chunks: a server that accepts and stays silent is caught in seconds."""

    def __init__(self, inner: httpx.AsyncBaseTransport, limit: float) -> None:
        self._inner = inner
        self._limit = limit

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send the request; FirstByteTimeout when its headers do not arrive in time."""
        try:
            async with asyncio.timeout(self._limit):
                return await self._inner.handle_async_request(request)
        except TimeoutError:
            raise FirstByteTimeout(
                f"no answer within {self._limit:g}s (first-byte limit)", request=request
            ) from None

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self._inner.aclose()

    @property
    def target(self) -> str:
        """The wrapped transport's impersonated browser (a curl_cffi target), or `off`."""
        return str(getattr(self._inner, "target", "off"))


@dataclass(frozen=True, slots=True)
class HttpOptions:
    """Timeouts and pool sizes for one upstream family; `first_byte_timeout` bounds the wait for headers."""

    connect_timeout: float = 5.0
    read_timeout: float = 20.0
    write_timeout: float = 20.0
    pool_timeout: float = 10.0
    max_connections: int = 32
    max_keepalive: int = 16
    first_byte_timeout: float | None = None


def make_client(
    *,
    routes: tuple[Route, ...] = (),
    options: HttpOptions | None = None,
    headers: Mapping[str, str] | None = None,
    base_url: str = "",
    browser: bool = False,
    follow_redirects: bool = False,
    impersonate: str = DEFAULT_TARGET,
    proxy: str | None = None,
    ca_file: str | Path | None = None,
    local_address: str | None = None,
) -> httpx.AsyncClient:
    """Build the pooled AsyncClient for one upstream family, routed through UPSTREAM_ROUTES.

    `browser=True` is for TikTok's hosts: curl-impersonate as `impersonate` (a curl_cffi target, `off` for
    plain httpx with a fixed browser User-Agent). `proxy` carries every request; `ca_file` adds trusted CAs.
    """
    opts = options or HttpOptions()
    inner: httpx.AsyncBaseTransport
    curl = browser and impersonate.strip().lower() != OFF
    if curl:
        inner = CurlTransport(
            impersonate=impersonate,
            proxy=proxy,
            ca_file=ca_file,
            local_address=local_address,
            max_connections=opts.max_connections,
        )
    else:
        limits = httpx.Limits(
            max_connections=opts.max_connections, max_keepalive_connections=opts.max_keepalive
        )
        inner = httpx.AsyncHTTPTransport(
            limits=limits,
            retries=0,
            verify=ssl_context(ca_file),
            proxy=proxy,
            local_address=local_address,
        )
    if opts.first_byte_timeout is not None:
        inner = FirstByteTransport(inner, opts.first_byte_timeout)
    transport: httpx.AsyncBaseTransport = RoutingTransport(routes, inner) if routes else inner
    all_headers: dict[str, str] = dict(BROWSER_HEADERS) if browser and not curl else {}
    all_headers.update(headers or {})
    client = httpx.AsyncClient(
        base_url=base_url,
        headers=all_headers,
        timeout=httpx.Timeout(
            connect=opts.connect_timeout,
            read=opts.read_timeout,
            write=opts.write_timeout,
            pool=opts.pool_timeout,
        ),
        transport=transport,
        follow_redirects=follow_redirects,
        trust_env=False,
    )
    if curl:
        strip_httpx_defaults(client)
        for name, value in (headers or {}).items():
            client.headers[name] = value
    return client


PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")


def parse_proxy(url: str) -> str:
    """Check one proxy URL (http://, https://, socks5://, socks5h://, optional user:password@); ValueError."""
    text = url.strip()
    try:
        parsed = httpx.URL(text)
    except (httpx.InvalidURL, ValueError, TypeError):
        raise ValueError(f"not a proxy URL: {mask_proxy(text)}") from None
    if parsed.scheme not in PROXY_SCHEMES or not parsed.host:
        raise ValueError(f"a proxy must be {', '.join(s + '://' for s in PROXY_SCHEMES)}host:port")
    return text


def mask_proxy(url: str) -> str:
    """A proxy URL fit for logs and `tiktok-bot config`: credentials replaced by `***`."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "***" if "@" in url else url
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    return f"{scheme}://{authority}{slash}{path}"
