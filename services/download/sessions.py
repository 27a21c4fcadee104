"""Warm anonymous visitor sessions for TikTok, and the egresses (direct or proxies) they go out through.

A browser that visits TikTok twice sends back the `tt_chain_token`, `ttwid` and any solved-challenge cookie
from its first visit; a client that starts every download with an empty jar looks like a bot and meets the
challenge every time. So the web backend leases a `VisitorSession` from a small `SessionPool`: its cookie jar,
its fingerprint (the curl_cffi target of its client) and its egress. A session is retired after
`max_failures` failures in a row or once `max_age` seconds old; no user's own cookies ever enter it.

Egresses: with `DOWNLOAD__PROXIES` every TikTok request goes through one of the proxies, sessions spread over
them (one HTTP client per proxy); without, one direct egress. The door logic reports a block (10204, a CDN
403, a challenge it cannot pass) with `blocked(session, reason)`: the session is retired and its proxy
benched for `bench_seconds`, then `acquire(avoid=...)` gives a session on another proxy. The direct egress
is never benched (there is nowhere else to go); its session is retired so the next try starts fresh.

The clock is injected (`clock=`), so benching and ageing are tested without sleeping.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx

from services.download.cookies import SessionCookies, refusing_cookie_jar
from services.errors import IpBlocked
from services.http import mask_proxy

log = logging.getLogger("services.download.sessions")

ClientFactory = Callable[[str | None], httpx.AsyncClient]


class NoEgress(IpBlocked):
    """Every proxy is benched after TikTok blocked it: no way out to TikTok right now."""

    code = "blocked"


@dataclass(slots=True, eq=False)
class Egress:
    """One way out to TikTok: direct (`proxy` None) or one proxy, with its own HTTP client."""

    proxy: str | None
    client: httpx.AsyncClient
    owned: bool = True  # closed by the pool
    target: str = "off"  # the impersonated browser (a curl_cffi target), or off
    benched_until: float = 0.0
    blocks: int = 0

    @property
    def label(self) -> str:
        """What logs and stats call it: `direct`, or the proxy URL without its credentials."""
        return mask_proxy(self.proxy) if self.proxy else "direct"

    def benched(self, now: float) -> bool:
        """Whether this egress is resting after a block."""
        return now < self.benched_until


@dataclass(slots=True, eq=False)
class VisitorSession:
    """One anonymous visitor: a cookie jar, a fingerprint and an egress, reused across downloads."""

    id: int
    egress: Egress
    created: float
    cookies: SessionCookies = field(default_factory=SessionCookies)
    page_url: httpx.URL = field(default_factory=lambda: httpx.URL("https://www.tiktok.com/"))
    uses: int = 0
    failures: int = 0
    busy: int = 0
    last_used: float = 0.0
    retired: bool = False

    @property
    def client(self) -> httpx.AsyncClient:
        """The HTTP client of this session's egress (fingerprint and proxy)."""
        return self.egress.client

    @property
    def target(self) -> str:
        """The impersonated browser (a curl_cffi target), or `off`: the session's fingerprint."""
        return self.egress.target


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A snapshot for tests, benchmarks and logs."""

    sessions: int
    created: int
    retired: int
    blocks: int
    benched: tuple[str, ...]


class SessionPool:
    """A small pool of warm visitor sessions spread over the egresses."""

    def __init__(
        self,
        egresses: Sequence[Egress],
        *,
        size: int = 4,
        max_age: float = 1800.0,
        max_failures: int = 3,
        bench_seconds: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not egresses:
            raise ValueError("a session pool needs at least one egress")
        self.egresses = list(egresses)
        self.size = max(size, 1)
        self.max_age = max_age
        self.max_failures = max(max_failures, 1)
        self.bench_seconds = bench_seconds
        self._clock = clock
        self._sessions: list[VisitorSession] = []
        self._ids = itertools.count(1)
        self.created = 0
        self.retired = 0
        self.blocks = 0
        for egress in self.egresses:
            # Sessions carry the cookies; the clients must never keep any of their own.
            egress.client.cookies = refusing_cookie_jar()

    @classmethod
    def build(
        cls,
        make_client: ClientFactory,
        proxies: Sequence[str] = (),
        *,
        size: int = 4,
        max_age: float = 1800.0,
        max_failures: int = 3,
        bench_seconds: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
        target: str = "off",
    ) -> SessionPool:
        """A pool with one egress per proxy (or one direct egress), each with a client from `make_client`."""
        egresses = [Egress(p, make_client(p), target=target) for p in proxies] or [
            Egress(None, make_client(None), target=target)
        ]
        return cls(
            egresses,
            size=size,
            max_age=max_age,
            max_failures=max_failures,
            bench_seconds=bench_seconds,
            clock=clock,
        )

    @classmethod
    def direct(cls, client: httpx.AsyncClient) -> SessionPool:
        """A pool going out directly through a client its owner closes."""
        return cls([Egress(None, client, owned=False)])

    @property
    def proxied(self) -> bool:
        """Whether TikTok traffic goes through proxies."""
        return any(e.proxy for e in self.egresses)

    def usable(self, avoid: Collection[Egress] = ()) -> list[Egress]:
        """Egresses neither benched nor in `avoid`."""
        now = self._clock()
        return [e for e in self.egresses if e not in avoid and not e.benched(now)]

    def acquire(self, *, avoid: Collection[Egress] = ()) -> VisitorSession:
        """Lease a warm session on a usable egress (a new one while the pool is not full); NoEgress if none.

        Always `release` it when done (also after `blocked`); `lease()` does that for you.
        """
        now = self._clock()
        for session in [s for s in self._sessions if now - s.created >= self.max_age]:
            self._retire(session, "age")
        usable = self.usable(avoid)
        if not usable:
            raise NoEgress("every proxy is blocked by TikTok for now", upstream="web", status=403)
        live = [s for s in self._sessions if s.egress in usable]
        idle = [s for s in live if s.busy == 0]
        if idle:
            session = min(idle, key=lambda s: s.last_used)
        elif live and len(self._sessions) >= self.size:
            session = min(live, key=lambda s: (s.busy, s.last_used))
        else:
            if len(self._sessions) >= self.size:
                # Full, but every session is on an egress we may not use: the least useful one makes room.
                self._retire(min(self._sessions, key=lambda s: s.last_used), "room")
            counts = {id(e): sum(1 for s in self._sessions if s.egress is e) for e in usable}
            egress = min(usable, key=lambda e: (counts[id(e)], self.egresses.index(e)))
            session = VisitorSession(next(self._ids), egress, now)
            self._sessions.append(session)
            self.created += 1
        session.busy += 1
        session.uses += 1
        session.last_used = now
        return session

    def release(self, session: VisitorSession, *, ok: bool) -> None:
        """Give a session back; `ok=False` counts a failure, and `max_failures` in a row retire it."""
        session.busy = max(0, session.busy - 1)
        session.last_used = self._clock()
        if ok:
            session.failures = 0
            return
        session.failures += 1
        if session.failures >= self.max_failures:
            self._retire(session, "failures")

    def blocked(self, session: VisitorSession, reason: str) -> None:
        """TikTok blocked this session (10204, CDN 403, an unpassable challenge): retire it, bench its proxy.

        The caller still `release`s the session; retry with `acquire(avoid=[session.egress, ...])`."""
        self.blocks += 1
        egress = session.egress
        egress.blocks += 1
        self._retire(session, f"blocked: {reason}")
        if egress.proxy is not None:
            egress.benched_until = self._clock() + self.bench_seconds
            log.warning("proxy %s benched for %.0f s: %s", egress.label, self.bench_seconds, reason)

    def _retire(self, session: VisitorSession, why: str) -> None:
        if session.retired:
            return
        session.retired = True
        self._sessions.remove(session)
        self.retired += 1
        log.info("visitor session %d on %s retired (%s)", session.id, session.egress.label, why)

    @asynccontextmanager
    async def lease(self, *, avoid: Collection[Egress] = ()) -> AsyncIterator[VisitorSession]:
        """`acquire`, then `release` (ok unless the block raised)."""
        session = self.acquire(avoid=avoid)
        ok = False
        try:
            yield session
            ok = True
        finally:
            self.release(session, ok=ok)

    def client(self) -> httpx.AsyncClient:
        """A client on a usable egress (the first one if all are benched), for one-off requests."""
        usable = self.usable()
        return (usable or self.egresses)[0].client

    def stats(self) -> PoolStats:
        """Counts and the benched egresses, now."""
        now = self._clock()
        return PoolStats(
            sessions=len(self._sessions),
            created=self.created,
            retired=self.retired,
            blocks=self.blocks,
            benched=tuple(e.label for e in self.egresses if e.benched(now)),
        )

    async def aclose(self) -> None:
        """Close the clients the pool owns."""
        for egress in self.egresses:
            if egress.owned:
                await egress.client.aclose()
