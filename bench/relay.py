"""Relay: the bot answering a pasted link with a 20 MiB video, against bare baselines of the same bytes.

Bot: a user pastes a post link in a private chat of the Telegram emulator; the time runs from the message
being injected to the emulator's answer to the bot's sendVideo (page or TTSave, the caption's metadata, the
download, the upload). Each run is a different post, so nothing comes from a cache. The bot's CPU time per run
is read from /proc/<pid>/task/*/schedstat (all its threads, in ns).

Baselines, in a child process of their own (clients kept for the whole run, as the bot keeps its own):
- sequential: one httpx streaming GET of the rendition from the emulated CDN (with the page's cookie) into a
  temporary file, then one aiohttp multipart POST of that file to the emulator's sendVideo;
- pipelined: the same GET streamed straight into the POST's body (the physical limit of a relay).

The CDN and TTSave generate the bytes as they send them (a 64 KiB pattern, no file). Paced runs hold both
legs to `--mibps` MiB/s, as networks would: the CDN and TTSave send at that rate and the Bot API emulator
reads uploads at it. Unpaced runs go as fast as the loopback and the 2 cores allow. Each scenario (backend ×
pace) alternates bot, sequential and pipelined runs. Prints p50/p95 (nearest rank), the ratios, and the CPU
seconds per relayed MiB.
Run: .venv/bin/python bench/relay.py [--runs 12] [--size-mib 20] [--mibps 64] [--backends web,ttsave]
     [--paces paced,unpaced] [--ttsave-chunk B]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from rig import Rig, percentile

from sandbox.catalogue import catalogue_with, synthetic_posts
from sandbox.tiktok import TikTokEmulator
from sandbox.ttsave import TTSaveEmulator

MIB = 1024 * 1024
TOKEN = "bench-baseline-token"  # noqa: S105 - a cookie value the emulated CDN is told to accept


def cpu_seconds(pid: int) -> float:
    """CPU seconds a process's live threads have used, to the nanosecond (/proc/<pid>/task/*/schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue  # a worker thread that just ended
    return total / 1e9


# --- the baseline child -------------------------------------------------------------------------------------


def _get(client: httpx.AsyncClient, job: dict[str, Any]) -> Any:
    headers = {
        "Host": job["host"],
        "Referer": "https://www.tiktok.com/",
        "Cookie": f"tt_chain_token={TOKEN}",
    }
    return client.stream("GET", job["url"], headers=headers)


async def _post(session: aiohttp.ClientSession, job: dict[str, Any], video: Any) -> None:
    form = aiohttp.FormData()
    form.add_field("chat_id", str(job["chat_id"]))
    form.add_field("video", video, filename="video.mp4", content_type="video/mp4")
    async with session.post(job["upload_url"], data=form) as reply:
        body = await reply.json()
        if not body.get("ok"):
            raise RuntimeError(body)


async def sequential(client: httpx.AsyncClient, session: aiohttp.ClientSession, job: dict[str, Any]) -> None:
    """GET the file (streamed to disk), then POST it as sendVideo."""
    with tempfile.TemporaryDirectory() as tmp:
        spool = Path(tmp) / "video.mp4"
        with spool.open("wb") as sink:
            async with _get(client, job) as response:
                response.raise_for_status()
                async for chunk in response.aiter_raw():
                    sink.write(chunk)
        with spool.open("rb") as source:
            await _post(session, job, source)


async def pipelined(client: httpx.AsyncClient, session: aiohttp.ClientSession, job: dict[str, Any]) -> None:
    """GET the file and stream it straight into the sendVideo POST."""
    async with _get(client, job) as response:
        response.raise_for_status()

        async def body() -> AsyncIterator[bytes]:
            async for chunk in response.aiter_raw():
                yield chunk

        await _post(session, job, body())


async def baseline_child() -> None:
    """Read jobs (JSON lines) from stdin; answer each with its seconds and CPU seconds."""
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient() as client, aiohttp.ClientSession() as session:
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            job = json.loads(line)
            started, cpu = time.perf_counter(), time.process_time()
            await (pipelined if job["mode"] == "pipelined" else sequential)(client, session, job)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            print(json.dumps({"seconds": seconds, "cpu": cpu}), flush=True)


# --- the scenarios ------------------------------------------------------------------------------------------


@dataclass
class Series:
    """Wall and CPU seconds of one kind of run."""

    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def p(self, q: float) -> float:
        """The q-th percentile of the wall times."""
        return percentile(self.seconds, q)

    def cpu_per_mib(self, size_mib: float) -> float:
        """CPU seconds per relayed MiB, over all runs."""
        return sum(self.cpu) / (size_mib * len(self.cpu))


async def scenario(
    backend: str, mibps: float | None, runs: int, size_mib: int, ttsave_chunk: int | None, serial: int
) -> dict[str, Series]:
    """Bot, sequential and pipelined runs, alternating, for one backend at one pace."""
    posts = synthetic_posts(runs + 1, size=size_mib * MIB, serial=serial)
    async with Rig(catalogue_with(posts), {"DOWNLOAD__BACKENDS": backend}) as rig:
        ttsave = rig.sandbox.get(TTSaveEmulator)
        ttsave.chunk_size = ttsave_chunk or ttsave.chunk_size
        ttsave.mibps = mibps
        tg, tiktok = rig.telegram, rig.sandbox.get(TikTokEmulator)
        tiktok.cdn_mibps = mibps
        tg.upload_mibps = mibps  # the bot's uplink is a network too
        tiktok.issued_tokens.add(TOKEN)
        upload_url = f"{tg.base_url}/bot{tg.token}/sendVideo"
        child = subprocess.Popen(
            [sys.executable, __file__, "--baseline-child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdin is not None and child.stdout is not None
        bot = await rig.start_bot()
        base_chat = tg.private_chat(tg.add_user("Baseline"))
        series = {"bot": Series(), "sequential": Series(), "pipelined": Series()}

        async def bot_run(index: int) -> tuple[float, float]:
            post = posts[index]
            # A user and chat per run: the default limit is 10 links per user per minute.
            user = tg.add_user(f"Bench {index}")
            chat = tg.private_chat(user)
            mark = tg.mark()
            cpu = cpu_seconds(bot.pid)
            started = time.monotonic()
            tg.inject_message(chat, post.url, user=user)
            call = await tg.wait_for(method="sendVideo", chat_id=chat.id, after=mark, timeout=120)
            if not call.ok or call.files[0].size != size_mib * MIB:
                raise RuntimeError(f"unexpected reply: {call.status} {call.error}")
            seconds = call.answered - started
            # The bot logs the usage row and returns to polling right after; let it settle before reading.
            await asyncio.sleep(0.05)
            return seconds, cpu_seconds(bot.pid) - cpu

        async def baseline_run(index: int, mode: str) -> tuple[float, float]:
            post = posts[index]
            full = tiktok.video_url(post, post.renditions[0].gear)
            job = {
                "mode": mode,
                "url": tiktok.base_url + full.split("tiktok.com", 1)[1],
                "host": full.split("/")[2],
                "upload_url": upload_url,
                "chat_id": base_chat.id,
            }
            assert child.stdin is not None and child.stdout is not None
            child.stdin.write(json.dumps(job) + "\n")
            child.stdin.flush()
            answer = json.loads(await asyncio.to_thread(child.stdout.readline))
            return float(answer["seconds"]), float(answer["cpu"])

        try:
            await bot_run(runs)  # warm-up: first-use imports, connections, the metadata provider's token
            await baseline_run(runs, "sequential")
            await baseline_run(runs, "pipelined")
            for index in range(runs):
                for name in series:
                    seconds, cpu = await (bot_run(index) if name == "bot" else baseline_run(index, name))
                    series[name].seconds.append(seconds)
                    series[name].cpu.append(cpu)
        finally:
            child.stdin.close()
            child.wait(10)
            await bot.stop()
    return series


def report(backend: str, mibps: float | None, series: dict[str, Series], size_mib: int) -> None:
    """Print one scenario's figures."""
    pace = f"paced at {mibps:g} MiB/s" if mibps else "unpaced"
    print(f"relay, {backend} backend, {pace}: a {size_mib} MiB video, {len(series['bot'].seconds)} runs each")
    for name, s in series.items():
        print(
            f"  {name:<10} p50 {s.p(50) * 1000:7.1f} ms   p95 {s.p(95) * 1000:7.1f} ms   "
            f"CPU {s.cpu_per_mib(size_mib) * 1000:5.2f} ms/MiB"
        )
    bot, seq, pipe = series["bot"], series["sequential"], series["pipelined"]
    print(
        f"  bot ÷ sequential  p50 {bot.p(50) / seq.p(50):.2f}×  p95 {bot.p(95) / seq.p(95):.2f}×   "
        f"bot ÷ pipelined  p50 {bot.p(50) / pipe.p(50):.2f}×  p95 {bot.p(95) / pipe.p(95):.2f}×"
    )
    print(
        f"  bot CPU ÷ sequential baseline's: {bot.cpu_per_mib(size_mib) / seq.cpu_per_mib(size_mib):.2f}×"
        f"   ÷ pipelined's: {bot.cpu_per_mib(size_mib) / pipe.cpu_per_mib(size_mib):.2f}×",
        flush=True,
    )


async def main(args: argparse.Namespace) -> None:
    serial = 2_000
    for backend in args.backends.split(","):
        for pace in args.paces.split(","):
            mibps = args.mibps if pace == "paced" else None
            series = await scenario(backend, mibps, args.runs, args.size_mib, args.ttsave_chunk, serial)
            serial += args.runs + 1
            report(backend, mibps, series, args.size_mib)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--size-mib", type=int, default=20)
    parser.add_argument("--mibps", type=float, default=64.0, help="the pace of the paced runs, MiB/s")
    parser.add_argument("--backends", default="web,ttsave", help="one scenario per backend, alone")
    parser.add_argument("--paces", default="paced,unpaced")
    parser.add_argument("--ttsave-chunk", type=int, help="TTSave emulator write size (default: its own)")
    parser.add_argument("--baseline-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_child:
        asyncio.run(baseline_child())
    else:
        asyncio.run(main(args))
