"""The benchmark rig: every emulator in this process, the bot in a child process of its own.

The child is the real bot (`tiktok-bot telegram`, or `bench/bot_child.py`: the same frontend plus an
event loop lag probe); it gets the sandbox's environment, an empty settings file and a fresh database, so
nothing from a developer's `.env` leaks in. Upstream and Telegram work happen here, the bot's work there: on a
2-core machine they run side by side, as they would in production.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sandbox.catalogue import Catalogue
from sandbox.runner import Sandbox, all_emulators
from sandbox.telegram import TelegramEmulator

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MB = 1000 * 1000


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile: the ⌈p/100·n⌉-th smallest value (always a measured one)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def status_kb(pid: int, field: str) -> int:
    """A `kB` figure of /proc/<pid>/status (VmRSS, VmHWM, ...)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


class BotProcess:
    """The bot running in a child process against a sandbox; stop() sends SIGTERM and collects its report."""

    def __init__(self, proc: subprocess.Popen[str], workdir: Path) -> None:
        self.proc = proc
        self.workdir = workdir
        self.report: dict[str, Any] = {}

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.proc.pid

    async def stop(self) -> None:
        """Ask the bot to stop (SIGTERM: graceful), wait for it, and read the report line it may print."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.to_thread(self.proc.communicate, timeout=30)
        for line in out.splitlines():
            if line.startswith("{"):
                self.report = json.loads(line)
        if self.proc.returncode not in (0, -signal.SIGTERM):
            print(err, file=sys.stderr)
            raise RuntimeError(f"the bot exited with {self.proc.returncode}")


class Rig:
    """Emulators here, the bot in a child."""

    def __init__(self, catalogue: Catalogue | None = None, env: dict[str, str] | None = None) -> None:
        self.sandbox = Sandbox(all_emulators(catalogue))
        self.extra_env = env or {}
        self._tmp = tempfile.TemporaryDirectory(prefix="tiktok-bench-")
        self.workdir = Path(self._tmp.name)

    @property
    def telegram(self) -> TelegramEmulator:
        """The Telegram emulator."""
        return self.sandbox.get(TelegramEmulator)

    async def __aenter__(self) -> Rig:
        await self.sandbox.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.sandbox.stop()
        self._tmp.cleanup()

    def bot_env(self) -> dict[str, str]:
        """The child's environment: this one without any bot settings, plus the sandbox's."""
        base = {k: v for k, v in os.environ.items() if "__" not in k and k != "UPSTREAM_ROUTES"}
        # BENCH_BOT_PYTHONPATH runs another checkout's bot against these emulators (before/after figures).
        other = os.environ.get("BENCH_BOT_PYTHONPATH")
        before = {"PYTHONPATH": other} if other else {}
        (self.workdir / "downloads").mkdir(exist_ok=True)
        return {
            **base,
            **before,
            **self.sandbox.env(),
            "DATABASE__PATH": str(self.workdir / "bot.sqlite3"),
            "DOWNLOAD__TEMP_DIR": str(self.workdir / "downloads"),
            "LOG__LEVEL": "WARNING",
            **self.extra_env,
        }

    async def start_bot(self, *, probe: bool = False) -> BotProcess:
        """Start the bot (with the lag probe: bench/bot_child.py) and wait until it polls for updates."""
        empty = self.workdir / "empty.env"
        empty.write_text("")
        if probe:
            command = [sys.executable, str(ROOT / "bench" / "bot_child.py"), str(empty)]
        else:
            command = [str(BIN / "tiktok-bot"), "--env-file", str(empty), "telegram"]
        proc = subprocess.Popen(
            command, env=self.bot_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
        )
        bot = BotProcess(proc, self.workdir)
        try:
            await self.telegram.wait_until(
                lambda: self.telegram.updates.waiting, timeout=30, what="a long poll"
            )
        except TimeoutError:
            proc.kill()
            _, err = proc.communicate()
            raise RuntimeError(f"the bot did not start:\n{err}") from None
        return bot


@contextmanager
def timed() -> Iterator[list[float]]:
    """`with timed() as t:` … `t[0]` is the block's wall time in seconds."""
    box: list[float] = []
    started = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - started)
