"""Relay: the bot answering a pasted link with a 20 MB video, against the bare baseline of the same bytes.

Bot: a user pastes a post link in a private chat of the Telegram emulator; the time runs from the message
being injected to the emulator's answer to the bot's sendVideo (download through the backend chain, the
caption's metadata, the upload). Each run is a different 20 MB post, so nothing comes from a cache.

Baseline, in a child process of its own like the bot: one httpx streaming GET of the same rendition from the
emulated CDN into a temporary file, then one aiohttp multipart POST of that file to the emulator's sendVideo,
on clients kept for the whole run (as the bot keeps its own).

Runs alternate bot and baseline. Prints p50 and p95 (nearest rank) of both and the ratio (target ≤ 1.25×).
Run: .venv/bin/python bench/relay.py [--runs N] [--size-mb M] [--backends ttsave,web] [--ttsave-chunk B]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from rig import MB, Rig, percentile

from sandbox.catalogue import catalogue_with, synthetic_posts
from sandbox.tiktok import TikTokEmulator
from sandbox.ttsave import TTSaveEmulator

TOKEN = "bench-baseline-token"  # noqa: S105 - a cookie value the emulated CDN is told to accept


async def baseline_once(
    client: httpx.AsyncClient, session: aiohttp.ClientSession, job: dict[str, Any]
) -> float:
    """GET the file (streamed to disk), then POST it as sendVideo; seconds taken."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        spool = Path(tmp) / "video.mp4"
        headers = {
            "Host": job["host"],
            "Referer": "https://www.tiktok.com/",
            "Cookie": f"tt_chain_token={TOKEN}",
        }
        with spool.open("wb") as sink:
            async with client.stream("GET", job["url"], headers=headers) as response:
                response.raise_for_status()
                async for chunk in response.aiter_bytes(64 * 1024):
                    sink.write(chunk)
        with spool.open("rb") as source:
            form = aiohttp.FormData()
            form.add_field("chat_id", str(job["chat_id"]))
            form.add_field("video", source, filename="video.mp4", content_type="video/mp4")
            async with session.post(job["upload_url"], data=form) as reply:
                body = await reply.json()
                if not body.get("ok"):
                    raise RuntimeError(body)
    return time.perf_counter() - started


async def baseline_child() -> None:
    """Read jobs (JSON lines) from stdin and answer each with its seconds; one pair of clients for all."""
    # Pooled clients, as the bot's are: a client per run would add TLS-context set-up and new connections.
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient() as client, aiohttp.ClientSession() as session:
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            print(await baseline_once(client, session, json.loads(line)), flush=True)


async def main(runs: int, size_mb: int, backends: str, ttsave_chunk: int | None = None) -> dict[str, float]:
    posts = synthetic_posts(runs + 1, size=size_mb * MB, serial=2_000)
    env = {"DOWNLOAD__BACKENDS": backends} if backends else {}
    async with Rig(catalogue_with(posts), env) as rig:
        ttsave = rig.sandbox.get(TTSaveEmulator)
        ttsave.chunk_size = ttsave_chunk or ttsave.chunk_size
        tg, tiktok = rig.telegram, rig.sandbox.get(TikTokEmulator)
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

        async def bot_run(index: int) -> float:
            post = posts[index]
            # A user and chat per run: the default limit is 10 links per user per minute.
            user = tg.add_user(f"Bench {index}")
            chat = tg.private_chat(user)
            mark = tg.mark()
            started = time.monotonic()
            tg.inject_message(chat, post.url, user=user)
            call = await tg.wait_for(method="sendVideo", chat_id=chat.id, after=mark, timeout=60)
            if not call.ok or call.files[0].size != size_mb * MB:
                raise RuntimeError(f"unexpected reply: {call.status} {call.error}")
            return call.answered - started

        base_chat = tg.private_chat(tg.add_user("Baseline"))

        async def baseline_run(index: int) -> float:
            post = posts[index]
            rendition = post.renditions[0]
            full = tiktok.video_url(post, rendition.gear)
            path_and_query = full.split("tiktok.com", 1)[1]
            job = {
                "url": tiktok.base_url + path_and_query,
                "host": full.split("/")[2],
                "upload_url": upload_url,
                "chat_id": base_chat.id,
            }
            assert child.stdin is not None and child.stdout is not None
            child.stdin.write(json.dumps(job) + "\n")
            child.stdin.flush()
            return float(await asyncio.to_thread(child.stdout.readline))

        try:
            await bot_run(runs)  # warm-up: first-use imports, connections, the metadata provider's token
            await baseline_run(runs)
            bot_times: list[float] = []
            base_times: list[float] = []
            for index in range(runs):
                bot_times.append(await bot_run(index))
                base_times.append(await baseline_run(index))
        finally:
            child.stdin.close()
            child.wait(10)
            await bot.stop()
    figures = {
        "bot_p50": percentile(bot_times, 50),
        "bot_p95": percentile(bot_times, 95),
        "base_p50": percentile(base_times, 50),
        "base_p95": percentile(base_times, 95),
    }
    figures["ratio_p50"] = figures["bot_p50"] / figures["base_p50"]
    figures["ratio_p95"] = figures["bot_p95"] / figures["base_p95"]
    return figures


def report(figures: dict[str, float], args: argparse.Namespace) -> None:
    backends = args.backends or "default (ttsave,web)"
    print(
        f"relay: a {args.size_mb} MB video, {args.runs} runs each; backends {backends}; "
        f"TTSave emulator writes of {args.ttsave_chunk or 16381} bytes"
    )
    print(f"  bot      p50 {figures['bot_p50'] * 1000:7.1f} ms   p95 {figures['bot_p95'] * 1000:7.1f} ms")
    print(f"  baseline p50 {figures['base_p50'] * 1000:7.1f} ms   p95 {figures['base_p95'] * 1000:7.1f} ms")
    met = figures["ratio_p50"] <= 1.25 and figures["ratio_p95"] <= 1.25
    print(
        f"  ratio    p50 {figures['ratio_p50']:.2f}×   p95 {figures['ratio_p95']:.2f}×   "
        f"(target ≤ 1.25×: {'met' if met else 'MISSED'})"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--size-mb", type=int, default=20)
    parser.add_argument("--backends", default="", help="DOWNLOAD__BACKENDS for the bot (default: its own)")
    parser.add_argument(
        "--ttsave-chunk", type=int, help="TTSave emulator write size (default: its own, 16381)"
    )
    parser.add_argument("--baseline-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_child:
        asyncio.run(baseline_child())
    else:
        report(asyncio.run(main(args.runs, args.size_mb, args.backends, args.ttsave_chunk)), args)
