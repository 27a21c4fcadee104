"""CLI start-up: wall time of `tiktok-bot COMMAND ...` runs (median and spread), like hyperfine, and CPU time.

On a shared machine the wall time follows the other jobs' load; the CPU time (user + system of the child)
is the steadier figure of what start-up itself costs.
"""

from __future__ import annotations

import argparse
import os
import resource
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


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_times(argv: list[str], runs: int, env: dict[str, str]) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds each of `runs` runs of the CLI took, after one warm-up run."""
    command = [sys.executable, "-m", "bot", *argv]
    subprocess.run(command, env=env, capture_output=True, check=False)
    walls, cpus = [], []
    for _ in range(runs):
        cpu = _children_cpu()
        start = time.perf_counter()
        subprocess.run(command, env=env, capture_output=True, check=False)
        walls.append(time.perf_counter() - start)
        cpus.append(_children_cpu() - cpu)
    return walls, cpus


def main() -> None:
    """Print one line per command: median, min and max wall time, and the median CPU time."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("commands", nargs="*", default=list(COMMANDS))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        # An empty settings file and a database path that does not exist: nothing of the host leaks in.
        env_file = Path(tmp) / ".env"
        env_file.write_text("")
        env = {**os.environ, "DATABASE__PATH": str(Path(tmp) / "absent.db")}
        print(f"{'command':<10} {'median':>8} {'min':>8} {'max':>8} {'cpu':>8}  ({args.runs} runs, seconds)")
        for name in args.commands:
            walls, cpus = run_times(["--env-file", str(env_file), *COMMANDS[name]], args.runs, env)
            print(
                f"{name:<10} {statistics.median(walls):8.3f} {min(walls):8.3f} {max(walls):8.3f}"
                f" {statistics.median(cpus):8.3f}"
            )


if __name__ == "__main__":
    main()
