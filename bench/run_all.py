"""Every benchmark, one after another, each in its own process: what `make bench` runs (a few minutes).

Each prints its own figures; this adds a heading, the wall time of each, and at the end the machine it ran on
(the figures in bench/README.md come from such a run). A benchmark that fails is reported and the rest still
run; the exit code is 1 if any failed.

Run: .venv/bin/python bench/run_all.py [NAME ...]   (names: relay, memory, cache, load, crash,
multipart, breaker, usage_log, media_cache, links, telegram_upload, wire, frontdoor; default all)
"""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name -> arguments; sizes chosen so the whole run stays within a few minutes on a 2-core machine.
BENCHMARKS: dict[str, list[str]] = {
    "relay": ["--runs", "12"],
    "memory": [],
    "cache": ["--runs", "100"],
    "load": ["--rounds", "3"],
    "crash": ["--kills", "10"],
    "multipart": ["--quick"],
    "breaker": [],
    "usage_log": ["--runs", "3"],
    "media_cache": [],
    "links": [],
    "telegram_upload": [],
    "wire": ["--runs", "10"],
    "frontdoor": ["--solves", "30", "--visits", "10", "--downloads", "60"],
}


def machine() -> str:
    """The machine in one line: CPU, cores, memory, Python, SQLite, OS."""
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        total_kb = int(meminfo.read_text().split()[1])
        memory = f", {total_kb / 1024 / 1024:.1f} GiB RAM"
    load = ""
    if hasattr(os, "getloadavg"):
        load = ", load average {:.2f} {:.2f} {:.2f} before the run".format(*os.getloadavg())
    return (
        f"{cpu}, {os.cpu_count()} cores{memory}; Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}; {platform.system()} {platform.release()}{load}"
    )


def main(names: list[str]) -> int:
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
        return 2
    host = machine()
    started = time.monotonic()
    failed: list[str] = []
    for name in names or list(BENCHMARKS):
        script = name.split()[0]
        command = [sys.executable, str(HERE / f"{script}.py"), *BENCHMARKS[name]]
        print(f"\n=== {name}: {' '.join([f'bench/{script}.py', *BENCHMARKS[name]])}", flush=True)
        began = time.monotonic()
        code = subprocess.call(command, cwd=HERE.parent)
        print(f"--- {name}: {time.monotonic() - began:.1f} s" + (f", FAILED (exit {code})" if code else ""))
        if code:
            failed.append(name)
    print(f"\nall benchmarks: {time.monotonic() - started:.0f} s on {host}")
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
