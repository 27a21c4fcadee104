"""Wire: what impersonation costs — CDN throughput and CPU per MiB, and a cold visitor versus a warm session.

In one process, against the TikTok emulator on loopback (http, and https with the sandbox CA):

- stream: one streaming GET of a 64 MB rendition from the emulated CDN into /dev/null, through the bot's
  TikTok client with `DOWNLOAD__IMPERSONATE=chrome` (curl-impersonate) and `off` (plain httpx); MB/s p50
  and CPU ms per MiB (process time), runs alternating.
- visit: `WebBackend.fetch` of a 3 s clip (page + CDN) in a cold session (a new pool: new connection, TLS
  handshake, empty jar, cookies to collect) versus a warm one (the same pool again: connection and cookies
  kept), over https with the impersonated TLS; ms p50 / p95.

Run: .venv/bin/python bench/wire.py [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from rig import MB, percentile

from bot.config import settings_from
from bot.upstreams import tiktok_sessions
from sandbox.catalogue import T0, catalogue_with, post_id_at, synthetic_posts
from sandbox.runner import Sandbox
from sandbox.tiktok import TikTokEmulator
from sandbox.tls import SandboxCA
from services.download.models import Want
from services.download.web import WebBackend
from services.links import LinkKind, TikTokLink, canonical_post_url

MIB = 1024 * 1024
CLIP = post_id_at(T0, 1)


async def stream_once(impersonate: str, routes: str, url: str) -> tuple[float, float]:
    """Seconds and CPU seconds for one streaming GET of `url` through the bot's TikTok client."""
    pool = tiktok_sessions(settings_from({"UPSTREAM_ROUTES": routes, "DOWNLOAD__IMPERSONATE": impersonate}))
    client = pool.client()
    try:
        headers = {"Referer": "https://www.tiktok.com/", "Cookie": "tt_chain_token=bench-wire"}
        wall, cpu = time.perf_counter(), time.process_time()
        size = 0
        async with client.stream("GET", url, headers=headers) as response:
            response.raise_for_status()
            async for chunk in response.aiter_raw():
                size += len(chunk)
        return time.perf_counter() - wall, time.process_time() - cpu
    finally:
        await pool.aclose()


async def visit_times(routes: str, ca_file: Path, runs: int) -> tuple[list[float], list[float]]:
    """Milliseconds of a download in a cold session and in a warm one."""
    link = TikTokLink(LinkKind.POST, canonical_post_url(CLIP), post_id=CLIP)
    settings = settings_from({"UPSTREAM_ROUTES": routes, "UPSTREAM_CA_FILE": str(ca_file)})
    cold: list[float] = []
    warm: list[float] = []
    warm_pool = tiktok_sessions(settings)
    warm_backend = WebBackend(sessions=warm_pool)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            await warm_backend.fetch(link, Want.VIDEO, None, Path(tmp))  # warm it up once
        for _ in range(runs):
            pool = tiktok_sessions(settings)
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    started = time.perf_counter()
                    await WebBackend(sessions=pool).fetch(link, Want.VIDEO, None, Path(tmp))
                    cold.append((time.perf_counter() - started) * 1000)
            finally:
                await pool.aclose()
            with tempfile.TemporaryDirectory() as tmp:
                started = time.perf_counter()
                await warm_backend.fetch(link, Want.VIDEO, None, Path(tmp))
                warm.append((time.perf_counter() - started) * 1000)
    finally:
        await warm_pool.aclose()
    return cold, warm


async def main(runs: int) -> dict[str, float]:
    big = synthetic_posts(1, size=64 * MB, serial=3_000)
    tiktok = TikTokEmulator(catalogue_with(big))
    async with Sandbox([tiktok]) as sandbox:
        post = big[0]
        url = tiktok.video_url(post, post.renditions[0].gear)
        routes = sandbox.env()["UPSTREAM_ROUTES"]
        figures: dict[str, list[float]] = {"chrome": [], "off": [], "chrome_cpu": [], "off_cpu": []}
        size = tiktok.rendition_blob(post, post.renditions[0]).size
        tiktok.issued_tokens.add("bench-wire")
        for _ in range(runs):
            for impersonate in ("chrome", "off"):
                wall, cpu = await stream_once(impersonate, routes, url)
                figures[impersonate].append(size / MB / wall)
                figures[f"{impersonate}_cpu"].append(cpu * 1000 / (size / MIB))

        authority = SandboxCA()
        https = await tiktok.serve_https(authority.server_context())
        with tempfile.TemporaryDirectory() as tmp:
            ca_file = authority.write_ca(Path(tmp) / "ca.pem")
            https_routes = json.dumps(dict.fromkeys(tiktok.routed_hosts(), https))
            cold, warm = await visit_times(https_routes, ca_file, runs)
    return {
        "chrome_mbps": percentile(figures["chrome"], 50),
        "off_mbps": percentile(figures["off"], 50),
        "chrome_cpu_ms_per_mib": percentile(figures["chrome_cpu"], 50),
        "off_cpu_ms_per_mib": percentile(figures["off_cpu"], 50),
        "cold_p50": percentile(cold, 50),
        "cold_p95": percentile(cold, 95),
        "warm_p50": percentile(warm, 50),
        "warm_p95": percentile(warm, 95),
    }


def report(result: dict[str, float], runs: int) -> None:
    print(f"wire: {runs} runs each")
    r = result
    print(
        f"  CDN stream, 64 MB   impersonated (chrome) {r['chrome_mbps']:7.0f} MB/s "
        f"{r['chrome_cpu_ms_per_mib']:5.2f} CPU ms/MiB   plain httpx (off) {r['off_mbps']:7.0f} MB/s "
        f"{r['off_cpu_ms_per_mib']:5.2f} CPU ms/MiB"
    )
    print(
        f"  a clip over https   cold session p50 {r['cold_p50']:6.1f} ms  p95 {r['cold_p95']:6.1f} ms"
        f"   warm session p50 {r['warm_p50']:6.1f} ms  p95 {r['warm_p95']:6.1f} ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    report(asyncio.run(main(args.runs)), args.runs)
