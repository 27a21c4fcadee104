"""`tiktok-bot doctor`: check each configured upstream once with the operator's settings and print a table.

Each row: the upstream, ok / FAIL, the latency, what it said, and a one-line fix hint when it failed. Exit 0
when everything configured works, 1 otherwise. Nothing configured for an upstream: its row says `skipped`.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from bot.config import Settings
from services.download.ttsave import TTSaveBackend
from services.download.web import WebBackend
from services.errors import (
    NotFound,
    QuotaExceeded,
    ServiceError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from services.http import HttpOptions, make_client, parse_routes
from services.links import LinkKind, find_links
from services.metadata.ensembledata import EnsembleDataClient
from services.metadata.research import ResearchClient

# A long-lived public post (yt-dlp's own TikTok test video); `--post` picks another.
DEFAULT_POST = "https://www.tiktok.com/@scout2015/video/6718335390845095173"
# Discord application flags: the privileged intents the portal granted (GATEWAY_*, *_LIMITED).
_INTENT_FLAGS = {
    "message content": (1 << 18) | (1 << 19),
    "server members": (1 << 14) | (1 << 15),
    "presence": (1 << 12) | (1 << 13),
}


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `doctor`."""
    cmd = commands.add_parser(
        "doctor",
        help="check every configured upstream once and print what works and how to fix what does not",
    )
    cmd.add_argument(
        "--post",
        default=DEFAULT_POST,
        help=f"a public TikTok post for the page, challenge and CDN check (default: {DEFAULT_POST})",
    )
    cmd.add_argument("--timeout", type=float, default=15.0, help="seconds per check (default 15)")
    cmd.set_defaults(handler=doctor)


@dataclass(frozen=True, slots=True)
class Check:
    """One upstream's check result."""

    name: str
    ok: bool | None  # None: not configured, skipped
    seconds: float
    detail: str
    hint: str = ""


class Failed(Exception):
    """A check failed: what happened and the one-line fix."""

    def __init__(self, detail: str, hint: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.hint = hint


Probe = Callable[[], Awaitable[str]]


async def run_check(name: str, probe: Probe | None, limit: float, hint: str) -> Check:
    """Run one probe with a deadline; any failure becomes a FAIL row with `hint` (or the probe's own)."""
    if probe is None:
        return Check(name, None, 0.0, "not configured")
    started = time.monotonic()
    try:
        async with asyncio.timeout(limit):
            detail = await probe()
    except Failed as exc:
        return Check(name, False, time.monotonic() - started, exc.detail, exc.hint)
    except TimeoutError:
        return Check(name, False, time.monotonic() - started, f"no answer in {limit:g}s", hint)
    except (ServiceError, httpx.HTTPError) as exc:
        text = exc.message if isinstance(exc, ServiceError) else f"{type(exc).__name__}: {exc}"
        return Check(name, False, time.monotonic() - started, text, hint)
    return Check(name, True, time.monotonic() - started, detail)


# --- the probes ---


def telegram_probe(settings: Settings, client: httpx.AsyncClient) -> Probe | None:
    """getMe: the bot's name, privacy mode and inline mode."""
    token = settings.telegram.token
    if token is None:
        return None

    async def probe() -> str:
        url = f"{settings.telegram.api_url.rstrip('/')}/bot{token.get_secret_value()}/getMe"
        response = await client.get(url)
        if response.status_code in (401, 404):
            raise Failed(
                f"getMe answered {response.status_code} (token refused)",
                "TELEGRAM__TOKEN is wrong or revoked: copy it again from @BotFather (/mybots → API Token)",
            )
        response.raise_for_status()
        me = response.json().get("result") or {}
        privacy = "off" if me.get("can_read_all_group_messages") else "on (groups: only commands and replies)"
        inline = "on" if me.get("supports_inline_queries") else "off (@BotFather → /setinline to enable)"
        return f"@{me.get('username')}; privacy mode {privacy}; inline {inline}"

    return probe


def discord_probe(settings: Settings, client: httpx.AsyncClient) -> Probe | None:
    """/users/@me and the privileged intents the portal grants (application flags)."""
    token = settings.discord.token
    if token is None:
        return None

    async def probe() -> str:
        base = settings.discord.api_url.rstrip("/")
        headers = {"Authorization": f"Bot {token.get_secret_value()}"}
        me = await client.get(f"{base}/users/@me", headers=headers)
        if me.status_code == 401:
            raise Failed(
                "/users/@me answered 401 (token refused)",
                "DISCORD__TOKEN is wrong or was reset: Developer Portal → your app → Bot → Reset Token",
            )
        me.raise_for_status()
        application = await client.get(f"{base}/applications/@me", headers=headers)
        application.raise_for_status()
        flags = int(application.json().get("flags") or 0)
        granted = [name for name, bits in _INTENT_FLAGS.items() if flags & bits]
        user = me.json()
        detail = (
            f"{user.get('username')} (id {user.get('id')}); intents granted: {', '.join(granted) or 'none'}"
        )
        if settings.discord.message_content and "message content" not in granted:
            raise Failed(
                detail,
                "enable MESSAGE CONTENT INTENT (Developer Portal → Bot → Privileged Gateway Intents), "
                "or set DISCORD__MESSAGE_CONTENT=false",
            )
        return detail

    return probe


def ttsave_probe(settings: Settings, client: httpx.AsyncClient) -> Probe | None:
    """TTSave's POST /ping."""
    if "ttsave" not in settings.download.backends:
        return None

    async def probe() -> str:
        if not await TTSaveBackend(client, settings.ttsave.url).ping():
            raise Failed(
                f"no pong from {settings.ttsave.url}/ping",
                "TTSave is down or TTSAVE__URL is wrong; the bot skips it (circuit breaker), or remove "
                "ttsave from DOWNLOAD__BACKENDS",
            )
        return f"pong from {settings.ttsave.url}"

    return probe


def tiktok_probe(settings: Settings, client: httpx.AsyncClient, post_url: str) -> Probe | None:
    """A post page (with its challenge, if TikTok sets one) and a range request on its CDN media."""
    if not {"web", "ytdlp"} & set(settings.download.backends):
        return None
    links = [link for link in find_links(post_url) if link.kind is LinkKind.POST and link.post_id]
    if not links:
        raise SystemExit(f"tiktok-bot: --post needs a TikTok post link, not {post_url!r}")
    post_id = links[0].post_id
    assert post_id is not None

    async def probe() -> str:
        try:
            return await WebBackend(client).check(post_id)
        except (UpstreamUnreachable, UpstreamTimeout) as exc:
            raise Failed(
                exc.message,
                "TikTok cannot be reached from here: check the network and DNS, or use DOWNLOAD__PROXIES",
            ) from None
        except UpstreamRejected as exc:
            raise Failed(
                exc.message,
                "TikTok refuses this address or session: try again later, from another IP, or through "
                "DOWNLOAD__PROXIES",
            ) from None
        except ServiceError as exc:
            raise Failed(
                exc.message,
                "TikTok's page or CDN failed for this post: try --post with another public post; if every "
                "post fails, TikTok changed its pages (put ytdlp first in DOWNLOAD__BACKENDS; upgrade it)",
            ) from None

    return probe


def ensembledata_probe(settings: Settings, client: httpx.AsyncClient) -> Probe | None:
    """EnsembleData's free usage call: the units used today."""
    token = settings.ensembledata.token
    if token is None or "ensembledata" not in settings.metadata.providers:
        return None

    async def probe() -> str:
        ed = EnsembleDataClient(
            client, token.get_secret_value(), base_url=settings.ensembledata.url, retries=0
        )
        today = datetime.now(UTC).date().isoformat()
        try:
            used = await ed.used_units(today)
        except UpstreamRejected as exc:
            raise Failed(
                exc.message, "ENSEMBLEDATA__TOKEN was refused: copy the token from the EnsembleData dashboard"
            ) from None
        except QuotaExceeded as exc:
            raise Failed(
                exc.message, "EnsembleData units are spent: wait for the renewal or upgrade the plan"
            ) from None
        return f"{used} units used today (UTC); your plan's daily units minus this is what is left"

    return probe


def research_probe(settings: Settings, client: httpx.AsyncClient) -> Probe | None:
    """The Research API's client-credentials token, then one data request (it counts against the quota)."""
    research = settings.research
    if not (research.client_key and research.client_secret) or "research" not in settings.metadata.providers:
        return None

    async def probe() -> str:
        api = ResearchClient(
            client,
            research.client_key or "",
            research.client_secret.get_secret_value() if research.client_secret else "",
            base_url=research.url,
            retries=0,
        )
        try:
            await api.access_token()
        except ServiceError as exc:
            raise Failed(
                f"token refused: {exc.message}",
                "RESEARCH__CLIENT_KEY / RESEARCH__CLIENT_SECRET are wrong, or the app is not approved for "
                "the Research API",
            ) from None
        try:
            await api.user_info("tiktok")
        except NotFound:
            pass  # an answer all the same: the token and the quota work
        except QuotaExceeded as exc:
            raise Failed(
                f"token ok; data request refused: {exc.message}",
                "the Research API's daily quota is spent (resets 00:00 UTC): wait, or let EnsembleData "
                "answer first (METADATA__PROVIDERS)",
            ) from None
        return "token ok; 1 data request answered (1 of the daily quota used)"

    return probe


# --- the command ---


async def run_doctor(settings: Settings, post_url: str = DEFAULT_POST, limit: float = 15.0) -> list[Check]:
    """Every check, once, with the operator's settings."""
    routes = parse_routes(settings.upstream_routes)
    first_byte = min(settings.download.first_byte_timeout, limit)
    plain = make_client(routes=routes, options=HttpOptions(read_timeout=limit, first_byte_timeout=first_byte))
    tiktok = make_client(
        routes=routes, browser=True, options=HttpOptions(read_timeout=limit, first_byte_timeout=first_byte)
    )
    try:
        return list(
            await asyncio.gather(
                run_check(
                    "Telegram",
                    telegram_probe(settings, plain),
                    limit,
                    "check TELEGRAM__API_URL and the network",
                ),
                run_check(
                    "Discord",
                    discord_probe(settings, plain),
                    limit,
                    "check DISCORD__API_URL and the network",
                ),
                run_check(
                    "TTSave", ttsave_probe(settings, plain), limit, "check TTSAVE__URL and the network"
                ),
                run_check(
                    "TikTok",
                    tiktok_probe(settings, tiktok, post_url),
                    limit,
                    "check the network (or a proxy)",
                ),
                run_check(
                    "EnsembleData", ensembledata_probe(settings, plain), limit, "check ENSEMBLEDATA__URL"
                ),
                run_check("Research API", research_probe(settings, plain), limit, "check RESEARCH__URL"),
            )
        )
    finally:
        await plain.aclose()
        await tiktok.aclose()


def render(checks: list[Check]) -> str:
    """The table: upstream, result, latency, detail; the fix hint under each failure."""
    width = max(len(c.name) for c in checks)
    lines = []
    for check in checks:
        result = "skipped" if check.ok is None else "ok" if check.ok else "FAIL"
        latency = "" if check.ok is None else f"{check.seconds * 1000:,.0f} ms"
        lines.append(f"{check.name:<{width}}  {result:<7}  {latency:>9}  {check.detail}")
        if check.ok is False and check.hint:
            lines.append(f"{'':<{width}}  {'':<7}  {'':>9}  fix: {check.hint}")
    return "\n".join(lines)


async def doctor(args: argparse.Namespace, settings: Settings) -> int:
    """Print the table; exit 0 when everything configured works, 1 otherwise."""
    checks = await run_doctor(settings, args.post, args.timeout)
    print(render(checks))
    return 1 if any(c.ok is False for c in checks) else 0
