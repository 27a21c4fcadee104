"""The `tiktok-bot` command line (also `python -m bot`)."""

from __future__ import annotations

import sys

from bot.cli import run_cli


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with `argv` (default: the process arguments) and return its exit code."""
    return run_cli(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    raise SystemExit(main())
