"""Scale: 1, 2 and 3 webhook replicas sharing Redis, behind a loopback round-robin, on a download-bound load.

300 link messages (one per user) over 100 posts; every upstream media answer (TTSave /download, the TikTok
CDN) starts 200 ms late; DOWNLOAD__MAX_CONCURRENT=4 per replica, so one replica's ceiling is 4 downloads per
200 ms. Each replica is a real `tiktok-bot telegram` process with its own SQLite file; they share a real
redis-server (the per-post lease, the sent-media hot layer, the rate windows, the update stream). The Telegram
emulator delivers the webhook (up to 40 connections, as Telegram) to the balancer, which spreads it over the
replicas. Also in every run: one user sends 2× LIMITS__USER_PER_MINUTE links, which must be refused beyond the
limit whichever replica takes them. A last run SIGKILLs one of 3 replicas a third of the way through.

Figures: messages/s (from the first message to the last video), the replicas' CPU time per message (all
replicas together, from the first message to the last video: what each replica costs, whatever else loads
the machine), upstream downloads, the hasty user's
answered/refused, unanswered chats, duplicate videos (a killed replica may have sent a video it never
acknowledged). Targets: 3 replicas ≥ 2.5× one; exactly 100 downloads whatever the count; the limit holds;
0 unanswered after the kill.

Run: .venv/bin/python bench/scale.py [--messages 300] [--posts 100] [--latency-ms 200] [--replicas 1,2,3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from rig import BIN, ROOT, Rig

from sandbox.balancer import RoundRobin
from sandbox.catalogue import CATALOGUE, catalogue_with, synthetic_posts
from sandbox.redis_server import RedisServer
from sandbox.tiktok import TikTokEmulator
from sandbox.ttsave import TTSaveEmulator

SECRET = "bench-scale-secret"  # noqa: S105 -- the webhook secret of a loopback benchmark
USER_LIMIT = 10
WARM_UP = next(p for p in CATALOGUE.posts.values() if p.hashtags == ("pasta", "cooking"))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Replica:
    """One bot process, listening for the webhook on its own port."""

    def __init__(self, rig: Rig, index: int, balancer_url: str, redis: RedisServer, prefix: str) -> None:
        self.port = free_port()
        empty = rig.workdir / "empty.env"
        empty.write_text("")
        env = {
            **rig.bot_env(),
            "DATABASE__PATH": str(rig.workdir / f"replica{index}.sqlite3"),
            "TELEGRAM__WEBHOOK_URL": f"{balancer_url}/tg/hook",
            "TELEGRAM__WEBHOOK_LISTEN": f"127.0.0.1:{self.port}",
            "TELEGRAM__WEBHOOK_SECRET": SECRET,
            "REDIS__URL": redis.url,
            "REDIS__PREFIX": prefix,
            "REDIS__LEASE": "3",  # a killed replica's leases and stream entries pass on after 3 s
            "DOWNLOAD__MAX_CONCURRENT": "4",
            "LIMITS__USER_PER_MINUTE": str(USER_LIMIT),
        }
        # Its log goes to a file: a pipe nobody reads would stall the bot once full.
        self.log = rig.workdir / f"replica{index}.log"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [str(BIN / "tiktok-bot"), "--env-file", str(empty), "telegram"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
                cwd=ROOT,
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def wait_ready(self, timeout: float = 60) -> None:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"replica exited: {self.proc.stderr.read() if self.proc.stderr else ''}"
                    )
                try:
                    async with http.get(self.url + "/healthz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise TimeoutError("replica not ready")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    async def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(self.proc.wait, 30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        errors = [
            line for line in self.log.read_text().splitlines() if "ERROR" in line or "Traceback" in line
        ]
        if errors:
            print(f"  replica log ({self.log.name}): {len(errors)} error lines, first: {errors[0][:200]}")


async def run(
    count: int, *, messages: int, posts: int, latency: float, kill: bool, redis: RedisServer
) -> dict[str, Any]:
    fixtures = synthetic_posts(posts, size=64_000, serial=5_000)
    prefix = f"bench-{secrets.token_hex(4)}:"
    async with Rig(catalogue_with(fixtures)) as rig:
        tg = rig.telegram
        ttsave, tiktok = rig.sandbox.get(TTSaveEmulator), rig.sandbox.get(TikTokEmulator)
        ports = [free_port() for _ in range(count)]
        async with RoundRobin([f"http://127.0.0.1:{p}" for p in ports]) as balancer:
            replicas = []
            for i in range(count):
                replica = Replica(rig, i, balancer.url, redis, prefix)
                replicas.append(replica)
            balancer.backends = [r.url for r in replicas]
            try:
                await asyncio.gather(*(r.wait_ready() for r in replicas))
                await warm_up(rig, count)
                ttsave.media_latency = tiktok.media_latency = latency
                people = [tg.add_user(f"User {i}") for i in range(messages)]
                chats = [tg.private_chat(u) for u in people]
                hasty = tg.add_user("Hasty")
                hasty_chat = tg.private_chat(hasty)
                wanted = {c.id for c in chats}
                mark = tg.mark()
                cpu_before = [cpu_seconds(r.proc.pid) for r in replicas]
                started = time.monotonic()
                for i, (user, chat) in enumerate(zip(people, chats, strict=True)):
                    tg.inject_message(chat, fixtures[i % posts].url, user=user)
                for i in range(2 * USER_LIMIT):
                    tg.inject_message(hasty_chat, fixtures[i % posts].url, user=hasty)

                def answered() -> set[int]:
                    return {
                        c.chat_id
                        for c in tg.transcript("sendVideo", after=mark, ok=True)
                        if c.chat_id in wanted and c.chat_id is not None
                    }

                killed = False
                if kill:
                    await tg.wait_until(
                        lambda: len(answered()) >= messages // 3, timeout=120, what="a third answered"
                    )
                    replicas[1].kill()
                    killed = True
                with contextlib.suppress(TimeoutError):  # the figures say how many stayed unanswered
                    await tg.wait_until(
                        lambda: len(answered()) >= messages, timeout=180, what=f"{messages} videos"
                    )
                cpu = sum(
                    cpu_seconds(r.proc.pid) - before
                    for r, before in zip(replicas, cpu_before, strict=True)
                    if r.proc.poll() is None
                )
                videos = [c for c in tg.transcript("sendVideo", after=mark, ok=True) if c.chat_id in wanted]
                last = max((c.answered for c in videos), default=time.monotonic())
                total = last - started
                await tg.wait_until(
                    lambda: len(tg.sent_to(hasty_chat.id, after=mark)) >= 2 * USER_LIMIT,
                    timeout=60,
                    what="the hasty user's replies",
                )
                hasty_calls = tg.sent_to(hasty_chat.id, after=mark)
                texts = Counter(
                    str(c.params.get("text"))[:80]
                    for c in tg.transcript("sendMessage", after=mark)
                    if c.chat_id in wanted
                )
                per_chat = Counter(c.chat_id for c in videos)
                missing = [c for c in chats if c.id not in per_chat]
                for chat in missing[:3]:  # what the chat saw instead, and what the replicas logged
                    calls = [(c.method, c.ok, c.error) for c in tg.transcript(chat_id=chat.id, after=mark)]
                    print(f"  unanswered chat {chat.id}: {calls}")
                if missing:
                    for replica in replicas:
                        print(f"  {replica.log.name}: {replica.log.read_text()[-1500:]}")
                downloads = sum(ttsave.downloads(p.id) + tiktok.downloads(p.id) for p in fixtures)
                spread = sorted(balancer.forwarded.values(), reverse=True)
            finally:
                await asyncio.gather(*(r.stop() for r in replicas))
    return {
        "replicas": count,
        "killed": float(killed),
        "messages": messages,
        "posts": posts,
        "total_s": total,
        "rate": messages / total,
        "downloads": downloads,
        "unanswered": messages - len(per_chat),
        "duplicates": sum(n - 1 for n in per_chat.values()),
        "hasty_videos": sum(1 for c in hasty_calls if c.method == "sendVideo"),
        "hasty_refused": sum(1 for c in hasty_calls if "Slow down" in str(c.params.get("text", ""))),
        "spread": "/".join(str(n) for n in spread),
        "cpu_ms": cpu * 1000 / (messages + 2 * USER_LIMIT),
        "texts": dict(texts),
    }


async def warm_up(rig: Rig, count: int) -> None:
    """A link through each replica before the load: first-use imports and connections are not counted."""
    tg = rig.telegram
    for n in range(count):
        user = tg.add_user(f"Warm-up {n}")
        chat = tg.private_chat(user)
        mark = tg.mark()
        tg.inject_message(chat, WARM_UP.url, user=user)
        await tg.wait_for(method="sendVideo", chat_id=chat.id, after=mark, timeout=60)


def line(f: dict[str, Any]) -> str:
    killed = ", one SIGKILLed at 1/3" if f["killed"] else ""
    return (
        f"  {f['replicas']:.0f} replica(s){killed}: {f['total_s']:.2f} s, {f['rate']:.1f} msg/s, "
        f"{f['downloads']:.0f} downloads, {f['unanswered']:.0f} unanswered, {f['duplicates']:.0f} duplicate "
        f"videos, replicas' CPU {f['cpu_ms']:.2f} ms/message, "
        f"hasty user {f['hasty_videos']:.0f} answered / {f['hasty_refused']:.0f} refused "
        f"(limit {USER_LIMIT}), updates per replica {f['spread']}"
        + (f"; other replies {f['texts']}" if f["texts"] else "")
    )


async def main(args: argparse.Namespace) -> None:
    counts = [int(c) for c in args.replicas.split(",")]
    results = []
    with RedisServer() as redis:
        for count in counts:
            results.append(
                await run(
                    count,
                    messages=args.messages,
                    posts=args.posts,
                    latency=args.latency_ms / 1000,
                    kill=False,
                    redis=redis,
                )
            )
            print(line(results[-1]), flush=True)
        if not args.no_kill:
            killed = await run(
                max(3, counts[-1]),
                messages=args.messages,
                posts=args.posts,
                latency=args.latency_ms / 1000,
                kill=True,
                redis=redis,
            )
            print(line(killed), flush=True)
    print(
        f"scale: {args.messages} link messages over {args.posts} posts, upstream media "
        f"+{args.latency_ms} ms, DOWNLOAD__MAX_CONCURRENT=4 per replica, "
        "webhook replicas sharing redis-server"
    )
    for f in results:
        print(line(f))
    by_count = {int(f["replicas"]): f for f in results}

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    if 1 in by_count and 3 in by_count:
        ratio = by_count[3]["rate"] / by_count[1]["rate"]
        print(f"  3 replicas / 1  {ratio:.2f}× (target ≥ 2.5×: {verdict(ratio >= 2.5)})")
    downloads = {f["downloads"] for f in results}
    print(
        f"  downloads       {', '.join(f'{d:.0f}' for d in sorted(downloads))} "
        f"(target exactly {args.posts} whatever the count: {verdict(downloads == {args.posts})})"
    )
    held = all(f["hasty_videos"] == USER_LIMIT and f["hasty_refused"] == USER_LIMIT for f in results)
    print(f"  rate limit      held across replicas: {verdict(held)}")
    if not args.no_kill:
        print(
            f"  SIGKILL         {killed['unanswered']:.0f} unanswered (target 0: "
            f"{verdict(killed['unanswered'] == 0)}), {killed['duplicates']:.0f} duplicate videos, "
            f"{killed['downloads']:.0f} downloads"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--posts", type=int, default=100)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--replicas", default="1,2,3")
    parser.add_argument("--no-kill", action="store_true")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(main(parser.parse_args()))
    sys.exit(0)
