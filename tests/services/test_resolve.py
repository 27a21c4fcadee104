"""ShortLinkResolver against loopback hosts reached through UPSTREAM_ROUTES (dispatch by Host header)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from services.errors import (
    InvalidLink,
    LinkNotFound,
    UnsafeRedirect,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
)
from services.http import HttpOptions, make_client, parse_routes
from services.links import LinkKind, ShortLinkResolver, TikTokLink, canonical_post_url, find_links
from tests.scripted_host import Answer, ScriptedHost, redirect

POST_ID = "7240568259186019630"
POST_URL = canonical_post_url(POST_ID, "chillezy")


def short(text: str) -> TikTokLink:
    (link,) = find_links(text)
    assert link.kind is LinkKind.SHORT
    return link


@dataclass
class Net:
    """The TikTok hosts (one scripted server), an `evil.example` server and a client routed to both."""

    tiktok: ScriptedHost
    evil: ScriptedHost
    client: httpx.AsyncClient

    def resolver(self) -> ShortLinkResolver:
        return ShortLinkResolver(self.client)


async def open_net(options: HttpOptions | None = None) -> AsyncIterator[Net]:
    async with ScriptedHost() as tiktok, ScriptedHost() as evil:
        assert isinstance(tiktok, ScriptedHost) and isinstance(evil, ScriptedHost)
        routes = parse_routes(
            {
                "vm.tiktok.com": tiktok.base_url,
                "vt.tiktok.com": tiktok.base_url,
                "*.tiktok.com": tiktok.base_url,
                "evil.example": evil.base_url,
                "*.evil.example": evil.base_url,
            }
        )
        async with make_client(routes=routes, browser=True, options=options) as client:
            yield Net(tiktok, evil, client)


@pytest.fixture
async def net() -> AsyncIterator[Net]:
    async for n in open_net():
        yield n


async def test_one_redirect_to_a_post(net: Net) -> None:
    net.tiktok.script("vm.tiktok.com", "/ZMclip01/", redirect(f"{POST_URL}?_r=1&u_code=x&is_from_webapp=1"))
    post = await net.resolver().resolve(short("https://vm.tiktok.com/ZMclip01/"))
    assert post == TikTokLink(LinkKind.POST, POST_URL, post_id=POST_ID, username="chillezy")
    # The Host header reached the server; the post page itself was never fetched.
    assert [(r.host, r.path) for r in net.tiktok.requests] == [("vm.tiktok.com", "/ZMclip01/")]


async def test_redirect_chain_with_relative_location_and_photo_path(net: Net) -> None:
    net.tiktok.script("vt.tiktok.com", "/ZTslide01/", redirect("https://www.tiktok.com/t/ZTslide01/", 302))
    net.tiktok.script("www.tiktok.com", "/t/ZTslide01/", redirect(f"/@chillezy/photo/{POST_ID}?lang=en", 307))
    post = await net.resolver().resolve(short("vt.tiktok.com/ZTslide01"))
    assert post.url == POST_URL and post.post_id == POST_ID
    assert [r.host for r in net.tiktok.requests] == ["vt.tiktok.com", "www.tiktok.com"]


async def test_www_t_short_link(net: Net) -> None:
    net.tiktok.script("www.tiktok.com", "/t/ZTRC5xgJp/", redirect(f"https://m.tiktok.com/v/{POST_ID}.html"))
    post = await net.resolver().resolve(short("https://www.tiktok.com/t/ZTRC5xgJp"))
    assert post == TikTokLink(LinkKind.POST, canonical_post_url(POST_ID), post_id=POST_ID)


async def test_cobalt_body_variant(net: Net) -> None:
    body = f'<a href="{POST_URL}?_r=1&amp;_d=x">Moved Permanently</a>.'
    net.tiktok.script("vt.tiktok.com", "/ZSbody01/", Answer(200, body=body))
    post = await net.resolver().resolve(short("https://vt.tiktok.com/ZSbody01/"))
    assert post.post_id == POST_ID and post.username == "chillezy"


async def test_cobalt_body_outside_the_allow_list_is_not_a_post(net: Net) -> None:
    body = f'<a href="https://evil.example/@chillezy/video/{POST_ID}">x</a>'
    net.tiktok.script("vt.tiktok.com", "/ZSbody02/", Answer(200, body=body))
    with pytest.raises(LinkNotFound):
        await net.resolver().resolve(short("https://vt.tiktok.com/ZSbody02/"))
    assert net.evil.requests == []


async def test_a_big_page_is_read_only_in_part(net: Net) -> None:
    net.tiktok.script("vt.tiktok.com", "/ZSbig0001/", Answer(200, body="x" * 2_000_000 + POST_URL))
    with pytest.raises(LinkNotFound):
        await net.resolver().resolve(short("https://vt.tiktok.com/ZSbig0001/"))


async def test_the_evil_route_works(net: Net) -> None:
    # Without this, "evil got no request" below could pass because evil was unreachable anyway.
    net.evil.script("evil.example", "/x", Answer(200, body="hi"))
    assert (await net.client.get("https://evil.example/x")).text == "hi"
    assert [r.host for r in net.evil.requests] == ["evil.example"]


@pytest.mark.parametrize(
    "location",
    [
        "https://evil.example/@chillezy/video/7240568259186019630",
        "//evil.example/steal",
        "https://www.tiktok.com.evil.example/@u/video/1",
        "https://www.tiktok.com@evil.example/@u/video/1",
        "https://user:pw@www.tiktok.com/@u/video/1",
        "http://127.0.0.1:1/",
        "ftp://www.tiktok.com/@u/video/1",
        "javascript:alert(1)",
        "mailto:x@evil.example",
        "http://[broken/",
        # TikTok hosts on another port: the route would carry them to the emulator, so a follow would show.
        "https://www.tiktok.com:22/",
        "https://www.tiktok.com:22/@u/video/7240568259186019630",
        "https://www.tiktok.com:8080/t/ZMabc01/",
        "http://vm.tiktok.com:443/ZMabc/",
    ],
)
async def test_redirect_off_the_allow_list_is_refused(net: Net, location: str) -> None:
    net.tiktok.script("vm.tiktok.com", "/ZMevil01/", redirect(location, 302))
    with pytest.raises(UnsafeRedirect):
        await net.resolver().resolve(short("https://vm.tiktok.com/ZMevil01/"))
    assert net.evil.requests == []
    assert len(net.tiktok.requests) == 1


async def test_refusal_names_the_location(net: Net) -> None:
    net.tiktok.script("vm.tiktok.com", "/ZMevil03/", redirect("https://evil.example/x?y=1"))
    with pytest.raises(UnsafeRedirect) as caught:
        await net.resolver().resolve(short("https://vm.tiktok.com/ZMevil03/"))
    assert caught.value.location == "https://evil.example/x?y=1"


@pytest.mark.parametrize("location", ["https://www.tiktok.com/?_r=1", "/", "https://m.tiktok.com"])
async def test_home_page_means_dead(net: Net, location: str) -> None:
    net.tiktok.script("vm.tiktok.com", "/ZMdead000/", redirect(location))
    with pytest.raises(LinkNotFound):
        await net.resolver().resolve(short("https://vm.tiktok.com/ZMdead000/"))
    assert [r.host for r in net.tiktok.requests] == ["vm.tiktok.com"]


async def test_unknown_code_404_is_dead(net: Net) -> None:
    with pytest.raises(LinkNotFound):
        await net.resolver().resolve(short("https://vm.tiktok.com/ZMnone01/"))
    assert len(net.tiktok.requests) == 1


async def test_a_page_that_is_not_a_post_is_dead(net: Net) -> None:
    net.tiktok.script("vm.tiktok.com", "/ZMlogin1/", redirect("https://www.tiktok.com/login?redirect_url=x"))
    net.tiktok.script("www.tiktok.com", "/login", Answer(200, body="<html>log in</html>"))
    with pytest.raises(LinkNotFound):
        await net.resolver().resolve(short("https://vm.tiktok.com/ZMlogin1/"))
    assert [r.path for r in net.tiktok.requests] == ["/ZMlogin1/", "/login"]


async def test_redirect_loop(net: Net) -> None:
    net.tiktok.script("vm.tiktok.com", "/ZMloop01/", redirect("https://www.tiktok.com/t/A1loop/"))
    net.tiktok.script("www.tiktok.com", "/t/A1loop/", redirect("/t/B2loop/"))
    net.tiktok.script("www.tiktok.com", "/t/B2loop/", redirect("https://www.tiktok.com/t/A1loop/"))
    with pytest.raises(LinkNotFound, match="loop"):
        await net.resolver().resolve(short("https://vm.tiktok.com/ZMloop01/"))
    assert len(net.tiktok.requests) == 3


async def test_self_redirect_is_a_loop(net: Net) -> None:
    net.tiktok.script("vm.tiktok.com", "/ZMself01/", redirect("/ZMself01/"))
    with pytest.raises(LinkNotFound, match="loop"):
        await net.resolver().resolve(short("https://vm.tiktok.com/ZMself01/"))
    assert len(net.tiktok.requests) == 1


def script_chain(host: ScriptedHost, redirects: int) -> None:
    """vm.tiktok.com/ZMhops/ -> /t/h1/ -> ... -> the post, `redirects` Location headers in all."""
    paths = ["/ZMhops/"] + [f"/t/hop{i}/" for i in range(1, redirects)]
    for i, path in enumerate(paths):
        is_last = i == len(paths) - 1
        target = POST_URL if is_last else f"https://www.tiktok.com{paths[i + 1]}"
        host.script("vm.tiktok.com" if i == 0 else "www.tiktok.com", path, redirect(target, 302))


async def test_five_hops_are_followed(net: Net) -> None:
    script_chain(net.tiktok, 5)
    post = await net.resolver().resolve(short("https://vm.tiktok.com/ZMhops/"))
    assert post.post_id == POST_ID
    assert len(net.tiktok.requests) == 5


async def test_six_hops_are_too_many(net: Net) -> None:
    script_chain(net.tiktok, 6)
    with pytest.raises(LinkNotFound, match="more than 5"):
        await net.resolver().resolve(short("https://vm.tiktok.com/ZMhops/"))
    assert len(net.tiktok.requests) == 6


async def test_max_hops_is_a_parameter(net: Net) -> None:
    script_chain(net.tiktok, 2)
    with pytest.raises(LinkNotFound):
        await ShortLinkResolver(net.client, max_hops=1).resolve(short("https://vm.tiktok.com/ZMhops/"))


@pytest.mark.parametrize(
    ("answer", "error", "status"),
    [
        (Answer(503), UpstreamError, 503),
        (Answer(500), UpstreamError, 500),
        (Answer(429), UpstreamError, 429),
        (Answer(403), UpstreamRejected, 403),
        (Answer(301), UpstreamError, 301),  # a redirect without a Location
    ],
)
async def test_upstream_failures(net: Net, answer: Answer, error: type[UpstreamError], status: int) -> None:
    net.tiktok.script("vm.tiktok.com", "/ZMfail01/", answer)
    with pytest.raises(error) as caught:
        await net.resolver().resolve(short("https://vm.tiktok.com/ZMfail01/"))
    assert type(caught.value) is error
    assert caught.value.status == status


async def test_timeout() -> None:
    async for net in open_net(HttpOptions(read_timeout=0.2)):
        net.tiktok.script("vm.tiktok.com", "/ZMslow01/", Answer(301, location=POST_URL, delay=3.0))
        with pytest.raises(UpstreamTimeout):
            await net.resolver().resolve(short("https://vm.tiktok.com/ZMslow01/"))


async def test_connection_refused_is_an_upstream_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    routes = parse_routes({"*.tiktok.com": f"http://127.0.0.1:{port}"})
    async with make_client(routes=routes) as client:
        with pytest.raises(UpstreamError) as caught:
            await ShortLinkResolver(client).resolve(short("https://vm.tiktok.com/ZMgone01/"))
    assert not isinstance(caught.value, UpstreamTimeout)


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_ttl_cache(net: Net) -> None:
    net.tiktok.script("vm.tiktok.com", "/ZMcache1/", redirect(POST_URL))
    clock = Clock()
    resolver = ShortLinkResolver(net.client, ttl=60.0, clock=clock)
    link = short("https://vm.tiktok.com/ZMcache1/")
    first = await resolver.resolve(link)
    clock.now += 59.0
    assert await resolver.resolve(link) == first
    # The same code through another short host is the same code.
    assert await resolver.resolve(short("https://vt.tiktok.com/ZMcache1/")) == first
    assert len(net.tiktok.requests) == 1
    clock.now += 2.0
    assert await resolver.resolve(link) == first
    assert len(net.tiktok.requests) == 2


async def test_failures_are_not_cached(net: Net) -> None:
    link = short("https://vm.tiktok.com/ZMlater1/")
    resolver = ShortLinkResolver(net.client, clock=Clock())
    with pytest.raises(LinkNotFound):
        await resolver.resolve(link)
    net.tiktok.script("vm.tiktok.com", "/ZMlater1/", redirect(POST_URL))
    assert (await resolver.resolve(link)).post_id == POST_ID
    assert len(net.tiktok.requests) == 2


async def test_zero_ttl_disables_the_cache(net: Net) -> None:
    net.tiktok.script("vm.tiktok.com", "/ZMnocache/", redirect(POST_URL))
    resolver = ShortLinkResolver(net.client, ttl=0)
    link = short("https://vm.tiktok.com/ZMnocache/")
    await resolver.resolve(link)
    await resolver.resolve(link)
    assert len(net.tiktok.requests) == 2


async def test_cache_is_bounded(net: Net) -> None:
    for code in ("ZMbound1", "ZMbound2", "ZMbound3"):
        net.tiktok.script("vm.tiktok.com", f"/{code}/", redirect(POST_URL))
    resolver = ShortLinkResolver(net.client, clock=Clock(), max_entries=2)
    for code in ("ZMbound1", "ZMbound2", "ZMbound3", "ZMbound3", "ZMbound1"):
        await resolver.resolve(short(f"https://vm.tiktok.com/{code}/"))
    # ZMbound1 was evicted by ZMbound3 and had to be fetched again.
    assert [r.path for r in net.tiktok.requests] == ["/ZMbound1/", "/ZMbound2/", "/ZMbound3/", "/ZMbound1/"]


async def test_other_links_pass_through_untouched(net: Net) -> None:
    resolver = net.resolver()
    for text in (POST_URL, "https://www.tiktok.com/@chillezy", "https://tiktok.com/tag/fyp"):
        (link,) = find_links(text)
        assert await resolver.resolve(link) is link
    assert net.tiktok.requests == []


async def test_a_short_link_off_the_allow_list_is_never_fetched(net: Net) -> None:
    forged = TikTokLink(LinkKind.SHORT, "https://evil.example/ZMabc/", code="ZMabc")
    with pytest.raises(UnsafeRedirect):
        await net.resolver().resolve(forged)
    assert net.evil.requests == []
    with pytest.raises(InvalidLink):
        await net.resolver().resolve(TikTokLink(LinkKind.SHORT, "https://vm.tiktok.com/\x00/", code="ZMabc"))
