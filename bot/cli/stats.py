"""`tiktok-bot stats`: operator figures from the usage log, as a table or JSON."""

from __future__ import annotations

import argparse
import json
import sys

from bot.config import Settings
from services.errors import StoreError
from services.store.db import MEMORY, Database
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
    """Print the report for `--days` from DATABASE__PATH; a database not yet created reads as empty."""
    path = settings.database.path
    # Reading stats must not leave an empty file behind where the operator mistyped a path.
    exists = path.exists()
    try:
        db = await Database.open(path if exists else MEMORY)
        try:
            report = await compute_stats(db, days=args.days, top=args.top)
        finally:
            await db.close()
    except StoreError as exc:
        print(f"tiktok-bot: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"database": str(path), "exists": exists, **report.to_dict()}, indent=2))
    else:
        print(f"Database {path}" + ("" if exists else " (not created yet: no usage recorded)"))
        print(render_stats_table(report))
    return 0
