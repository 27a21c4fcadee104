"""A download-bound burst over two replicas sharing Redis: every chat answered, every post downloaded once.

The regression it guards: a per-post lease holder whose renewal was cancelled mid-command hung, and every
later request for that post waited behind it forever (a few chats in a few hundred never got their video).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.config import settings_from
from bot.telegram.app import run_telegram
from bot.wiring import build_app
from sandbox.balancer import RoundRobin
from sandbox.catalogue import catalogue_with, synthetic_posts
from sandbox.runner import Sandbox, all_emulators
from sandbox.telegram import TelegramEmulator
from sandbox.tiktok import TikTokEmulator
from sandbox.ttsave import TTSaveEmulator
from tests.e2e.test_replicas import Replica, free_port
from tests.engines.redis import RedisServer

POSTS = synthetic_posts(50, size=16_000, serial=6_000)


async def test_every_chat_is_answered_and_every_post_downloaded_once(
    redis_server: RedisServer, redis_prefix: str, tmp_path: Path
) -> None:
    async with Sandbox(all_emulators(catalogue_with(POSTS))) as sandbox:
        ports = [free_port(), free_port()]
        async with RoundRobin([f"http://127.0.0.1:{p}" for p in ports]) as balancer:
            replicas = []
            for n, port in enumerate(ports):
                env = {
                    **sandbox.env(),
                    "DATABASE__PATH": str(tmp_path / f"replica{n}.sqlite3"),
                    "DOWNLOAD__TEMP_DIR": str(tmp_path),
                    "REDIS__URL": redis_server.url,
                    "REDIS__PREFIX": redis_prefix,
                    "REDIS__LEASE": "3",
                    "TELEGRAM__WEBHOOK_SECRET": "burst-secret",
                    "TELEGRAM__WEBHOOK_URL": f"{balancer.url}/tg/hook",
                    "TELEGRAM__WEBHOOK_LISTEN": f"127.0.0.1:{port}",
                }
                app = await build_app(settings_from(env))
                stop = asyncio.Event()
                replicas.append(Replica(app, stop, asyncio.create_task(run_telegram(app, stop))))
            try:
                tg = sandbox.get(TelegramEmulator)
                await tg.wait_until(
                    lambda: len(tg.transcript("setWebhook")) >= 2, timeout=15, what="webhooks"
                )
                ttsave, tiktok = sandbox.get(TTSaveEmulator), sandbox.get(TikTokEmulator)
                ttsave.media_latency = tiktok.media_latency = 0.2  # downloads overlap: leases are contended
                chats = [tg.private_chat(tg.add_user(f"Burst {n}")) for n in range(3 * len(POSTS))]
                mark = tg.mark()
                for n, chat in enumerate(chats):
                    tg.inject_message(chat, POSTS[n % len(POSTS)].url)
                wanted = {chat.id for chat in chats}

                def answered() -> set[int | None]:
                    return {c.chat_id for c in tg.transcript("sendVideo", after=mark, ok=True)}

                await tg.wait_until(lambda: wanted <= answered(), timeout=90, what="a video in every chat")
                assert sum(ttsave.downloads(p.id) + tiktok.downloads(p.id) for p in POSTS) == len(POSTS)
            finally:
                for replica in replicas:
                    await replica.halt()
