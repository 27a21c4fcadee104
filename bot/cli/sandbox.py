"""`tiktok-bot sandbox`: start every emulator on loopback and print the environment to use them."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from pathlib import Path

from bot.config import Settings
from sandbox.proxy import ForwardProxy
from sandbox.runner import Sandbox
from sandbox.tiktok import TikTokEmulator
from sandbox.tls import SandboxCA


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `sandbox`."""
    cmd = commands.add_parser("sandbox", help="serve loopback emulators of every upstream until interrupted")
    cmd.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    cmd.add_argument("--port", type=int, default=0, help="first port; emulators take consecutive ports")
    cmd.add_argument("--env-file", dest="env_out", type=Path, help="also write the environment to this file")
    cmd.add_argument(
        "--https",
        dest="ca_out",
        type=Path,
        metavar="CA_FILE",
        help="serve TikTok over https with a run-time CA, written to CA_FILE (UPSTREAM_CA_FILE)",
    )
    cmd.add_argument(
        "--proxy",
        action="store_true",
        help="start a loopback forward proxy (from 127.0.0.2) for TikTok traffic (DOWNLOAD__PROXIES)",
    )
    cmd.set_defaults(handler=serve)


async def serve(args: argparse.Namespace, settings: Settings) -> int:
    """Start the emulators, print KEY=VALUE lines and `sandbox ready`, serve until SIGINT/SIGTERM."""
    sandbox = Sandbox()
    await sandbox.start(args.host, args.port)
    proxy = ForwardProxy(source="127.0.0.2") if args.proxy else None
    try:
        env = sandbox.env()
        if args.ca_out:
            tiktok = sandbox.get(TikTokEmulator)
            authority = SandboxCA()
            https = await tiktok.serve_https(authority.server_context())
            routes = json.loads(env["UPSTREAM_ROUTES"])
            routes.update(dict.fromkeys(tiktok.routed_hosts(), https))
            env["UPSTREAM_ROUTES"] = json.dumps(routes, separators=(",", ":"))
            env["UPSTREAM_CA_FILE"] = str(authority.write_ca(args.ca_out).resolve())
        if proxy is not None:
            await proxy.start()
            env["DOWNLOAD__PROXIES"] = proxy.url
        lines = [f"{key}={value}" for key, value in env.items()]
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
        if proxy is not None:
            await proxy.stop()
            print(f"proxy: {proxy.count()} request(s) forwarded", flush=True)
        await sandbox.stop()
    return 0
