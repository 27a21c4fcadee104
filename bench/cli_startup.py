"""CLI start-up: wall time of `tiktok-bot COMMAND ...` runs (median and spread), like hyperfine."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Commands that must start fast; each runs to completion without reaching the network.
COMMANDS: dict[str, list[str]] = {
    "links": ["links", "see https://www.tiktok.com/@scout2015/video/6718335390845095173"],
    "resolve": ["resolve", "https://www.tiktok.com/@scout2015/video/6718335390845095173"],
    "download": ["download", "--help"],
    "info": ["info", "--help"],
    "stats": ["stats", "--days", "1"],
    "--help": ["--help"],
}


def wall_times(argv: list[str], runs: int, env: dict[str, str]) -> list[float]:
    """Seconds each of `runs` runs of the CLI took, after one warm-up run."""
    command = [sys.executable, "-m", "bot", *argv]
    subprocess.run(command, env=env, capture_output=True, check=False)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, env=env, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    """Print one line per command: median, min and max wall time."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("commands", nargs="*", default=list(COMMANDS))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        # An empty settings file and a database path that does not exist: nothing of the host leaks in.
        env_file = Path(tmp) / ".env"
        env_file.write_text("")
        env = {**os.environ, "DATABASE__PATH": str(Path(tmp) / "absent.db")}
        print(f"{'command':<10} {'median':>8} {'min':>8} {'max':>8}  ({args.runs} runs)")
        for name in args.commands:
            times = wall_times(["--env-file", str(env_file), *COMMANDS[name]], args.runs, env)
            print(f"{name:<10} {statistics.median(times):8.3f} {min(times):8.3f} {max(times):8.3f}")


if __name__ == "__main__":
    main()
