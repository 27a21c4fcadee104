"""services.http: UPSTREAM_ROUTES matching and rewriting over loopback, the client factory, the allow-list."""

from __future__ import annotations

import httpx
import pytest
from aiohttp import web

from sandbox.base import Emulator
from services.http import (
    BROWSER_USER_AGENT,
    Route,
    is_allowed_url,
    is_tiktok_host,
    make_client,
    parse_routes,
)
from services.wire import resolve_target


class EchoHost(Emulator):
    """Answers every request with what it saw: Host, path, query and a few headers."""

    name = "echo"

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._echo)

    def env(self) -> dict[str, str]:
        return {}

    async def _echo(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "server": self.name,
                "host": request.headers.get("Host"),
                "path": request.path,
                "query": request.rel_url.raw_query_string,
                "proto": request.headers.get("X-Forwarded-Proto"),
                "user_agent": request.headers.get("User-Agent"),
            }
        )


def echo(name: str) -> EchoHost:
    host = EchoHost()
    host.name = name
    return host


# --- route matching ------------------------------------------------------------------------------------

BASE = httpx.URL("http://127.0.0.1:9")


@pytest.mark.parametrize(
    ("pattern", "host", "matches"),
    [
        ("www.tiktok.com", "www.tiktok.com", True),
        ("www.tiktok.com", "WWW.TikTok.com", True),
        ("www.tiktok.com", "vm.tiktok.com", False),
        ("www.tiktok.com", "tiktok.com", False),
        ("www.tiktok.com", "www.tiktok.com.evil.net", False),
        ("*.tiktok.com", "vm.tiktok.com", True),
        ("*.tiktok.com", "v16-webapp-prime.us.tiktok.com", True),
        ("*.tiktok.com", "tiktok.com", True),
        ("*.tiktok.com", "faketiktok.com", False),
        ("*.tiktok.com", "tiktok.com.evil.net", False),
        ("*.tiktokcdn.com", "p16-sign.tiktokcdn.com", True),
        ("*.tiktokcdn.com", "tiktokcdn-us.com", False),
    ],
)
def test_route_matches(pattern: str, host: str, matches: bool) -> None:
    assert Route(pattern, BASE).matches(host) is matches


def test_parse_routes_puts_exact_hosts_first() -> None:
    routes = parse_routes(
        '{"*.tiktok.com": "http://127.0.0.1:1", "*.vm.tiktok.com": "http://127.0.0.1:3", '
        '"WWW.TIKTOK.COM": "http://127.0.0.1:2"}'
    )
    assert [r.pattern for r in routes] == ["www.tiktok.com", "*.vm.tiktok.com", "*.tiktok.com"]
    assert routes[0].base == httpx.URL("http://127.0.0.1:2")
    assert parse_routes("") == ()
    assert parse_routes(None) == ()
    assert parse_routes({"a.example": "https://127.0.0.1:8443"})[0].base.port == 8443


@pytest.mark.parametrize(
    "value",
    ['["http://127.0.0.1:1"]', '{"a.example": 1}', '{"a.example": "ftp://127.0.0.1"}', '{"a.example": "/x"}'],
)
def test_parse_routes_refuses_bad_values(value: str) -> None:
    with pytest.raises(ValueError, match="UPSTREAM_ROUTES"):
        parse_routes(value)


# --- routing over loopback ------------------------------------------------------------------------------


async def test_routed_requests_keep_path_query_and_host() -> None:
    async with echo("exact") as exact, echo("wildcard") as wildcard:
        routes = parse_routes({"www.tiktok.com": exact.base_url, "*.tiktok.com": wildcard.base_url})
        async with make_client(routes=routes) as client:
            www = (await client.get("https://www.tiktok.com/@u/video/1?lang=en&x=%2F")).json()
            vm = (await client.get("https://vm.tiktok.com/ZMabc/")).json()
            bare = (await client.get("http://TikTok.com/tag/fyp")).json()
    assert www == {
        "server": "exact",
        "host": "www.tiktok.com",
        "path": "/@u/video/1",
        "query": "lang=en&x=%2F",
        "proto": "https",
        "user_agent": www["user_agent"],
    }
    assert (vm["server"], vm["host"], vm["path"]) == ("wildcard", "vm.tiktok.com", "/ZMabc/")
    assert (bare["server"], bare["host"]) == ("wildcard", "tiktok.com")
    assert [r.host for r in exact.requests] == ["www.tiktok.com"]
    assert [r.host for r in wildcard.requests] == ["vm.tiktok.com", "tiktok.com"]


async def test_unrouted_hosts_go_where_they_say() -> None:
    async with echo("routed") as routed, echo("direct") as direct:
        routes = parse_routes({"*.tiktok.com": routed.base_url})
        async with make_client(routes=routes) as client:
            answer = (await client.get(f"{direct.base_url}/plain")).json()
    assert answer["server"] == "direct"
    assert answer["proto"] is None  # only routed requests are marked
    assert routed.requests == []


async def test_browser_headers_only_when_asked() -> None:
    async with echo("e") as host:
        routes = parse_routes({"www.tiktok.com": host.base_url})
        async with make_client(routes=routes, browser=True) as client:
            browser = (await client.get("https://www.tiktok.com/")).json()
            assert client.follow_redirects is False
        async with make_client(routes=routes, browser=True, impersonate="off") as client:
            off = (await client.get("https://www.tiktok.com/")).json()
        async with make_client(routes=routes, headers={"User-Agent": "tiktok-bot-test"}) as client:
            plain = (await client.get("https://www.tiktok.com/")).json()
    # Impersonated: the browser's own User-Agent, of the version curl_cffi's default Chrome target is.
    version = resolve_target("chrome").removeprefix("chrome")
    assert f"Chrome/{version}." in browser["user_agent"] and browser["user_agent"] != BROWSER_USER_AGENT
    assert off["user_agent"] == BROWSER_USER_AGENT  # DOWNLOAD__IMPERSONATE=off: plain httpx
    assert plain["user_agent"] == "tiktok-bot-test"


# --- the allow-list ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://www.tiktok.com/@u/video/1",
        "http://vm.tiktok.com/ZMabc/",
        "https://TIKTOK.COM/",
        "https://www.tiktok.com./",
        "https://www.tiktokv.com/share/video/1",
        "https://v16-webapp-prime.tiktok.com/video/tos/x",
        "https://p16-sign.tiktokcdn.com/obj/x.jpeg",
        "https://v19.tiktokcdn-us.com/x",
        "https://p77.tiktokcdn-eu.com/x",
        httpx.URL("https://vt.tiktok.com/ZSe4FqkKd/"),
        "https://www.tiktok.com:443/@u/video/1",
        "http://vm.tiktok.com:80/ZMabc/",
    ],
)
def test_allowed(url: str | httpx.URL) -> None:
    assert is_allowed_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://faketiktok.com/@u/video/1",
        "https://tiktok.com.evil.net/@u/video/1",
        "https://www.tiktok.com@evil.net/@u/video/1",
        "https://www.tiktok.com:pass@evil.net/",
        "https://user:pass@www.tiktok.com/@u/video/1",
        "https://user@www.tiktok.com/",
        "https://evil.net/www.tiktok.com/@u/video/1",
        "https://evil.net/?next=https://www.tiktok.com/",
        "https://tiktok.company/",
        "https://tiktokcdn.com.evil.net/",
        "ftp://www.tiktok.com/x",
        "javascript:alert(1)//www.tiktok.com",
        "data:text/html,www.tiktok.com",
        "file:///etc/passwd",
        "//www.tiktok.com/@u/video/1",
        "www.tiktok.com/@u/video/1",
        "",
        "http://[::1]/",
        "http://127.0.0.1:8080/",
        "https://www.tiktok.com\\@evil.net/",
        "https://www.tiktok.com:22/@u/video/1",
        "https://www.tiktok.com:8443/",
        "http://www.tiktok.com:443/",
        "https://vm.tiktok.com:80/ZMabc/",
        "https://v16-webapp-prime.tiktok.com:6379/video/tos/x",
        httpx.URL("https://www.tiktok.com:22/"),
    ],
)
def test_refused(url: str) -> None:
    assert not is_allowed_url(url)


def test_tiktok_host() -> None:
    assert is_tiktok_host("tiktok.com") and is_tiktok_host("A.B.TikTokV.com")
    assert not is_tiktok_host("tiktok.com.evil.net") and not is_tiktok_host("nottiktok.com")
