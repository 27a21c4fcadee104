"""`tiktok-bot stats`: operator figures from the usage log, as a table or JSON."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, replace
from typing import Any

import httpx

from bot.config import Settings
from bot.engines import open_database
from services.errors import StoreError
from services.store.inbox import InboxStats
from services.store.stats import compute_stats, render_stats_table


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `stats`."""
    cmd = commands.add_parser("stats", help="print usage figures for the last N days from the database")
    cmd.add_argument("--days", type=_positive, default=7.0, help="length of the period in days (default 7)")
    cmd.add_argument("--top", type=int, default=10, help="how many top posts to list (default 10)")
    cmd.add_argument("--json", action="store_true", help="print JSON instead of a table")
    cmd.add_argument(
        "--health",
        metavar="URL",
        help="the running bot's /healthz for per-backend figures and breakers "
        "(default: from HEALTH__LISTEN, or TELEGRAM__WEBHOOK_LISTEN in webhook mode)",
    )
    cmd.set_defaults(handler=show_stats)


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


async def show_stats(args: argparse.Namespace, settings: Settings) -> int:
    """Print the report for `--days` from the database; a SQLite file not yet created reads as empty."""
    where = settings.database.location
    # Reading stats must not leave an empty file behind where the operator mistyped a path.
    exists = settings.database.engine != "sqlite" or settings.database.sqlite_path.exists()
    try:
        db = await open_database(settings.database, create=False)
        try:
            report = await compute_stats(db, days=args.days, top=args.top)
        finally:
            await db.close()
    except StoreError as exc:
        print(f"tiktok-bot: {exc}", file=sys.stderr)
        return 1
    stream, stream_why = await stream_backlog_of(settings)
    if stream is not None:
        report = replace(report, inbox=with_stream(report.inbox, stream))
    health_url = args.health or health_url_of(settings)
    live, why = await live_backends(health_url)
    if args.json:
        data = {"database": where, "exists": exists, **report.to_dict()}
        if settings.redis.url is not None:
            data["inbox"]["stream"] = None if stream is None else stream.to_dict()
            data["inbox"]["stream_source"] = settings.redis.prefix if stream is not None else stream_why
        data["live_backends"] = live
        data["live_backends_source"] = health_url if live is not None else why
        print(json.dumps(data, indent=2))
    else:
        print(f"Database {where}" + ("" if exists else " (not created yet: no usage recorded)"))
        print(render_stats_table(report))
        if settings.redis.url is not None:
            print(render_stream(stream, settings.redis.prefix, stream_why))
        print()
        print(render_live_backends(live, health_url, why))
    return 0


@dataclass(frozen=True, slots=True)
class StreamBacklog:
    """The shared update stream now: entries not acknowledged, the oldest one's age, partitions found."""

    unacknowledged: int
    oldest_age_s: float | None
    partitions: int

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON."""
        return {
            "unacknowledged": self.unacknowledged,
            "oldest_age_s": self.oldest_age_s,
            "partitions": self.partitions,
        }


async def stream_backlog_of(settings: Settings) -> tuple[StreamBacklog | None, str]:
    """With REDIS__URL, what waits in every partition of the shared stream; else (None, why not)."""
    if settings.redis.url is None:
        return None, "REDIS__URL is not set"
    # Imported here: redis-py costs start-up time a bot without Redis should not pay.
    from redis.exceptions import RedisError

    from services.shared.redis import connect, stream_backlog

    client = connect(settings.redis.url.get_secret_value(), client_name="tiktok-bot-stats")
    try:
        count, age, partitions = await stream_backlog(client, settings.redis.prefix)
    except (RedisError, OSError) as exc:  # the URL stays out of the message: it may carry a password
        return None, f"Redis is not answering ({type(exc).__name__})"
    finally:
        await client.aclose()
    return StreamBacklog(count, age if count else None, partitions), ""


def with_stream(inbox: InboxStats, stream: StreamBacklog) -> InboxStats:
    """The inbox's open entries: the database's (a run without Redis left them) plus the stream's."""
    ages = [a for a in (inbox.oldest_age_s, stream.oldest_age_s) if a is not None]
    return replace(
        inbox, unfinished=inbox.unfinished + stream.unacknowledged, oldest_age_s=max(ages) if ages else None
    )


def render_stream(stream: StreamBacklog | None, prefix: str, why: str) -> str:
    """One line on the shared stream, counted in `inbox open` above."""
    if stream is None:
        return f"Shared stream ({prefix}updates*): not available: {why}"
    oldest = "none" if stream.oldest_age_s is None else f"{stream.oldest_age_s:,.0f} s"
    return (
        f"Shared stream ({prefix}updates*): {stream.unacknowledged:,} not acknowledged in "
        f"{stream.partitions} partitions (oldest {oldest}), counted in inbox open"
    )


def health_url_of(settings: Settings) -> str | None:
    """Where the running bot's /healthz is, from its own settings (None when it serves none)."""
    listen = settings.health.listen or (
        settings.telegram.webhook_listen if settings.telegram.webhook_url else None
    )
    if not listen:
        return None
    host, _, port = listen.rpartition(":")
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    return f"http://{host}:{port}/healthz"


async def live_backends(url: str | None) -> tuple[list[dict[str, Any]] | None, str]:
    """The running bot's per-backend figures from its /healthz, or None and why not."""
    if url is None:
        return None, "no health endpoint configured (set HEALTH__LISTEN, or pass --health URL)"
    try:
        async with httpx.AsyncClient(timeout=3.0, trust_env=False) as client:
            response = await client.get(url)
            response.raise_for_status()
            upstreams = response.json().get("upstreams")
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        return None, f"the bot is not answering at {url} ({type(exc).__name__})"
    if not isinstance(upstreams, list):
        return None, f"{url} did not list upstreams"
    return [u for u in upstreams if isinstance(u, dict)], ""


def render_live_backends(live: list[dict[str, Any]] | None, url: str | None, why: str) -> str:
    """The per-backend table: figures since the bot started, and each breaker now."""
    if live is None:
        return f"Download backends (live): not available: {why}"
    header = ("backend", "requests", "ok", "p50", "p95", "served", "skipped", "breaker", "status")
    rows = [
        (
            str(u.get("backend")),
            str(u.get("requests")),
            str(u.get("successes")),
            _ms((u.get("latency_ms") or {}).get("p50")),
            _ms((u.get("latency_ms") or {}).get("p95")),
            f"{float(u.get('share') or 0) * 100:.0f}%",
            str(u.get("skipped")),
            str(u.get("breaker")).replace("_", "-"),
            str(u.get("status")),
        )
        for u in live
    ]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    lines = [f"Download backends (live, since the bot started; {url})"]
    lines += [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in (header, *rows)
    ]
    return "\n".join(lines)


def _ms(value: Any) -> str:
    return "-" if not isinstance(value, int | float) else f"{value:,.0f} ms"
