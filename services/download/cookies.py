"""The cookie jar of one anonymous visitor session: what TikTok set, sent back only where it is scoped."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx


@dataclass(frozen=True, slots=True)
class _Cookie:
    name: str
    value: str
    domain: str
    host_only: bool
    secure: bool

    def matches(self, url: httpx.URL) -> bool:
        host = url.host.lower()
        if self.secure and url.scheme != "https":
            return False
        return host == self.domain or (not self.host_only and host.endswith("." + self.domain))


@dataclass(slots=True)
class SessionCookies:
    """The cookies a visitor session collected; sent back only to the hosts they are scoped to.

    Only what TikTok itself set (and challenge answers the bot computed) ever goes in: never a user's cookies.
    """

    _cookies: dict[tuple[str, str], _Cookie] = field(default_factory=dict)

    def collect(self, response: httpx.Response, url: httpx.URL) -> None:
        """Keep the Set-Cookie headers of the answer to `url` (the logical URL, before routing)."""
        for header in response.headers.get_list("set-cookie"):
            self._collect_one(header, url.host.lower())

    def _collect_one(self, header: str, host: str) -> None:
        pair, *attributes = header.split(";")
        name, sep, value = pair.partition("=")
        name, value = name.strip(), value.strip().strip('"')
        if not sep or not name:
            return
        domain, secure, expired = "", False, False
        for attribute in attributes:
            attr, _, val = attribute.partition("=")
            attr, val = attr.strip().lower(), val.strip()
            if attr == "domain":
                domain = val.lstrip(".").lower()
            elif attr == "secure":
                secure = True
            elif attr == "max-age":
                expired = val.lstrip("-").isdigit() and int(val) <= 0
            elif attr == "expires" and not expired:
                expired = _expired(val)
        if domain and not (host == domain or host.endswith("." + domain)):
            return  # a cookie for someone else's domain is refused, as a browser would
        cookie = _Cookie(name, value, domain or host, not domain, secure)
        key = (cookie.domain, name)
        if expired:
            self._cookies.pop(key, None)
        else:
            self._cookies[key] = cookie

    def set(self, name: str, value: str, domain: str = "tiktok.com", *, secure: bool = False) -> None:
        """Set a cookie for `domain` and its subdomains (e.g. a solved challenge's answer on .tiktok.com)."""
        domain = domain.lstrip(".").lower()
        self._cookies[(domain, name)] = _Cookie(name, value, domain, False, secure)

    def discard(self, name: str, domain: str | None = None) -> None:
        """Drop every cookie called `name` (only the one on `domain`, if given)."""
        for key in [k for k in self._cookies if k[1] == name]:
            if domain is None or key[0] == domain.lstrip(".").lower():
                del self._cookies[key]

    def get(self, name: str) -> str | None:
        """The value of a cookie called `name`, on whichever domain it is held."""
        return next((c.value for (_, n), c in self._cookies.items() if n == name), None)

    def header_for(self, url: httpx.URL) -> str | None:
        """The Cookie header for a request to `url`, if any cookie applies."""
        pairs = [f"{c.name}={c.value}" for c in self._cookies.values() if c.matches(url)]
        return "; ".join(pairs) or None

    def names(self) -> list[str]:
        """Names of the cookies held."""
        return sorted({name for _, name in self._cookies})


def _expired(value: str) -> bool:
    try:
        return parsedate_to_datetime(value).timestamp() <= time.time()
    except (TypeError, ValueError, IndexError, OverflowError):
        return False


def refusing_cookie_jar() -> CookieJar:
    """A jar that stores nothing: the shared httpx client never keeps cookies; sessions hold their own."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
