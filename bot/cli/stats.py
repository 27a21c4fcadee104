"""`tiktok-bot stats`: operator figures from the usage log, as a table or JSON."""

from __future__ import annotations

import argparse
import json
import sys

from bot.config import Settings
from bot.wiring import open_database
from services.errors import StoreError
from services.store.stats import compute_stats, render_stats_table


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `stats`."""
    cmd = commands.add_parser("stats", help="print usage figures for the last N days from the database")
    cmd.add_argument("--days", type=_positive, default=7.0, help="length of the period in days (default 7)")
    cmd.add_argument("--top", type=int, default=10, help="how many top posts to list (default 10)")
    cmd.add_argument("--json", action="store_true", help="print JSON instead of a table")
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
    if args.json:
        print(json.dumps({"database": where, "exists": exists, **report.to_dict()}, indent=2))
    else:
        print(f"Database {where}" + ("" if exists else " (not created yet: no usage recorded)"))
        print(render_stats_table(report))
    return 0
