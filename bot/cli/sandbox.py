"""`tiktok-bot sandbox`: start every emulator on loopback and print the environment to use them."""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from bot.config import Settings
from sandbox.runner import Sandbox


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `sandbox`."""
    cmd = commands.add_parser("sandbox", help="serve loopback emulators of every upstream until interrupted")
    cmd.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    cmd.add_argument("--port", type=int, default=0, help="first port; emulators take consecutive ports")
    cmd.add_argument("--env-file", dest="env_out", type=Path, help="also write the environment to this file")
    cmd.set_defaults(handler=serve)


async def serve(args: argparse.Namespace, settings: Settings) -> int:
    """Start the emulators, print KEY=VALUE lines and `sandbox ready`, serve until SIGINT/SIGTERM."""
    sandbox = Sandbox()
    await sandbox.start(args.host, args.port)
    try:
        lines = [f"{key}={value}" for key, value in sandbox.env().items()]
        if args.env_out:
            args.env_out.write_text("\n".join(lines) + "\n", encoding="utf-8")
        for line in lines:
            print(line)
        print("sandbox ready", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await sandbox.stop()
    return 0
