"""TikTok's proof-of-work interstitial: recognise it in a page and compute the cookies that pass it.

A challenged page carries no post data but `<… id="cs" class="<base64 JSON C>">`; `C.v.a` is a base64 prefix
and `C.v.c` the base64 SHA-256 digest of `prefix + str(i)` for a secret `i` in 0..1,000,000. The browser's
script finds `i`, writes `C.d = b64encode(str(i))` and stores base64 of the compact JSON of `C` in the cookie
named by the `class` of `id="wci"` (`_wafchallengeid`); pages that also carry `id="rci"` / `id="rs"` want a
second cookie (name from `rci`, value from `rs`). Facts from yt-dlp `_solve_challenge_and_set_cookies` and
gallery-dl `_solve_challenge` (see shared/reference/tiktok-web.md §1.1b).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import html
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.errors import ChallengeFailed

MAX_ANSWER = 1_000_000
COOKIE_DOMAIN = ".tiktok.com"
COOKIE_PATH = "/"

_TAG = re.compile(r"<[a-zA-Z][^>]*>")
_ATTR = re.compile(r'\b(id|class)\s*=\s*(?:"([^"]*)"|\'([^\']*)\')')


@dataclass(frozen=True, slots=True)
class Challenge:
    """A challenge read from a page: the decoded `C`, what to hash, and where the answer goes."""

    data: Mapping[str, Any]
    prefix: bytes
    target: bytes
    cookie_name: str
    extra_cookie: tuple[str, str] | None  # (class of rci, class of rs) when the page has both


@dataclass(frozen=True, slots=True)
class Solution:
    """The cookies that answer a challenge, for `.tiktok.com` path `/`, and the answer found."""

    cookies: tuple[tuple[str, str], ...]
    answer: int


def _elements(page: str) -> dict[str, str]:
    """`id` → `class` of every tag that has both (the challenge's markers are empty divs)."""
    found: dict[str, str] = {}
    for tag in _TAG.finditer(page):
        attrs = {
            m.group(1): m.group(2) if m.group(2) is not None else m.group(3) for m in _ATTR.finditer(tag[0])
        }
        if "id" in attrs and "class" in attrs:
            found.setdefault(attrs["id"], html.unescape(attrs["class"]))
    return found


def b64decode_padded(text: str) -> bytes:
    """Base64 as the page writes it: often without its `=` padding."""
    text = text.strip()
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def read_challenge(page: str) -> Challenge | None:
    """The challenge a page carries, or None when it is not a challenge page; ChallengeFailed if malformed."""
    elements = _elements(page)
    encoded = elements.get("cs")
    if encoded is None:
        return None
    try:
        data = json.loads(b64decode_padded(encoded))
        values = data["v"]
        prefix = b64decode_padded(str(values["a"]))
        target = b64decode_padded(str(values["c"]))
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise ChallengeFailed(f"unreadable challenge: {type(exc).__name__}", upstream="web") from exc
    if not isinstance(data, dict) or len(target) != hashlib.sha256().digest_size:
        raise ChallengeFailed("the challenge's target is not a SHA-256 digest", upstream="web")
    name = elements.get("wci", "").strip()
    if not name:
        raise ChallengeFailed("the challenge names no cookie (no id=wci)", upstream="web")
    extra = None
    if elements.get("rci", "").strip() and "rs" in elements:
        extra = (elements["rci"].strip(), elements["rs"])
    return Challenge(data, prefix, target, name, extra)


def find_answer(prefix: bytes, target: bytes, limit: int = MAX_ANSWER) -> int | None:
    """The smallest `i` in 0..limit with sha256(prefix + str(i)) == target, or None."""
    base = hashlib.sha256(prefix)
    for i in range(limit + 1):
        digest = base.copy()
        digest.update(str(i).encode("ascii"))
        if digest.digest() == target:
            return i
    return None


def answer_cookies(challenge: Challenge, answer: int) -> Solution:
    """The cookies carrying `answer`: `C` with `d` set, compact JSON, base64; plus rci=rs when asked."""
    data = dict(challenge.data)
    data["d"] = base64.b64encode(str(answer).encode("ascii")).decode("ascii")
    value = base64.b64encode(json.dumps(data, separators=(",", ":")).encode()).decode("ascii")
    cookies = [(challenge.cookie_name, value)]
    if challenge.extra_cookie is not None:
        cookies.append(challenge.extra_cookie)
    return Solution(tuple(cookies), answer)


def solve_page(page: str, limit: int = MAX_ANSWER) -> Solution | None:
    """Page HTML → the cookies to send; None: not a challenge; ChallengeFailed: unsolvable."""
    challenge = read_challenge(page)
    if challenge is None:
        return None
    answer = find_answer(challenge.prefix, challenge.target, limit)
    if answer is None:
        raise ChallengeFailed(f"no answer to the challenge in 0..{limit}", upstream="web")
    return answer_cookies(challenge, answer)


class Solver:
    """Solves challenges in worker threads, at most `concurrency` at once, counting what it met and solved."""

    def __init__(self, *, concurrency: int = 2, limit: int = MAX_ANSWER) -> None:
        # Each solve holds a core for up to ~0.6 s: bounded so a burst of challenges cannot starve the bot.
        self._slots = asyncio.Semaphore(concurrency)
        self._limit = limit
        self.met = 0
        self.solved = 0
        self.failed = 0

    async def solve(self, challenge: Challenge) -> Solution:
        """The cookies answering `challenge`, hashed off the event loop; ChallengeFailed when none exists."""
        self.met += 1
        async with self._slots:
            answer = await asyncio.to_thread(find_answer, challenge.prefix, challenge.target, self._limit)
        if answer is None:
            self.failed += 1
            raise ChallengeFailed(f"no answer to the challenge in 0..{self._limit}", upstream="web")
        self.solved += 1
        return answer_cookies(challenge, answer)
