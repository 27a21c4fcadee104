"""`tiktok-bot telegram` with an event-loop lag probe; on SIGTERM it prints one JSON line with the lag seen.

The probe asks to wake every millisecond and records how late it woke: the worst lag is the longest stretch
the bot's loop was busy with one thing. SIGUSR1 resets it (the benchmark sends it when the load starts).
Run by bench/rig.py: `python bench/bot_child.py ENV_FILE`.
"""

from __future__ import annotations

import asyncio
import json
import resource
import signal
import sys
import time

from bot.cli.run import run_frontends
from bot.config import load_settings


def cpu_seconds() -> float:
    """User and system CPU time this process has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class LagProbe:
    """How late a 1 ms sleep wakes, over the life of the loop."""

    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self.worst = 0.0
        self.lags: list[float] = []
        self.cpu_at_reset = 0.0

    def reset(self) -> None:
        """Forget what was seen so far (start-up imports block the loop; the benchmark wants the load)."""
        self.worst = 0.0
        self.lags = []
        self.cpu_at_reset = cpu_seconds()

    async def run(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(self.interval)
            lag = time.perf_counter() - started - self.interval
            self.lags.append(lag)
            self.worst = max(self.worst, lag)


async def main(env_file: str) -> int:
    settings = load_settings(env_file)
    probe = LagProbe()
    task = asyncio.create_task(probe.run())
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, probe.reset)
    try:
        code = await run_frontends(settings, ("telegram",))
    finally:
        task.cancel()
    lags = sorted(probe.lags) or [0.0]
    print(
        json.dumps(
            {
                "worst_lag_ms": probe.worst * 1000,
                "p99_lag_ms": lags[int(len(lags) * 0.99)] * 1000,
                "ticks": len(probe.lags),
                "cpu_s": cpu_seconds() - probe.cpu_at_reset,
            }
        ),
        flush=True,
    )
    return code


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(sys.argv[1])))
