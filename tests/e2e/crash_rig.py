"""The bot in a child process against in-process emulators, to kill it with SIGKILL and start it again."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from sandbox.catalogue import Catalogue
from sandbox.runner import Sandbox, all_emulators

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


class Child:
    """One run of the bot."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc

    def kill(self) -> None:
        """SIGKILL: no `finally`, no flush, no goodbye."""
        self.proc.kill()
        self.proc.communicate(timeout=10)

    async def wait_exit(self, timeout: float) -> int:  # noqa: ASYNC109
        """Wait for the process to end by itself; its exit code."""
        await asyncio.to_thread(self.proc.communicate, timeout=timeout)
        return self.proc.returncode

    async def stop(self) -> str:
        """SIGTERM and wait for a clean exit; returns its stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.to_thread(self.proc.communicate, timeout=30)
        if self.proc.returncode not in (0, -signal.SIGTERM):
            raise RuntimeError(f"the bot exited with {self.proc.returncode}:\n{err}")
        return err


class CrashRig:
    """Emulators here; the bot (`tiktok-bot <frontend>`) there, with its own database and temp dir."""

    def __init__(self, workdir: Path, catalogue: Catalogue | None = None, env: dict[str, str] | None = None):
        self.sandbox = Sandbox(all_emulators(catalogue))
        self.workdir = workdir
        self.extra_env = env or {}
        self.db_path = workdir / "bot.sqlite3"
        self.temp_dir = workdir / "downloads"

    async def __aenter__(self) -> CrashRig:
        await self.sandbox.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.sandbox.stop()

    def env(self) -> dict[str, str]:
        """The child's environment: nothing of a developer's settings, the sandbox's, a fresh database."""
        base = {k: v for k, v in os.environ.items() if "__" not in k and k != "UPSTREAM_ROUTES"}
        self.temp_dir.mkdir(exist_ok=True)
        return {
            **base,
            **self.sandbox.env(),
            "DATABASE__PATH": str(self.db_path),
            "DATABASE__FLUSH_MS": "50",
            "DOWNLOAD__TEMP_DIR": str(self.temp_dir),
            "LOG__LEVEL": "WARNING",
            **self.extra_env,
        }

    def start(self, frontend: str, *, env: dict[str, str] | None = None, module: str | None = None) -> Child:
        """Start `tiktok-bot <frontend>` (or `python -m <module> …` with the same arguments)."""
        empty = self.workdir / "empty.env"
        empty.write_text("")
        head = [sys.executable, "-m", module] if module else [str(BIN / "tiktok-bot")]
        command = [*head, "--env-file", str(empty), frontend]
        proc = subprocess.Popen(
            command,
            env={**self.env(), **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        return Child(proc)

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        """Read the bot's database (after it stopped)."""
        with sqlite3.connect(self.db_path) as db:
            return list(db.execute(sql, params).fetchall())

    def leftovers(self) -> list[Path]:
        """Whatever is left under the bot's spool directory."""
        root = self.temp_dir / "tiktok-bot"
        return sorted(root.rglob("*")) if root.exists() else []
