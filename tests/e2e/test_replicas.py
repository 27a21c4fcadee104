"""Replicas sharing Redis, end to end: real aiogram against the Telegram emulator, real redis-server.

Webhook mode: two replicas behind a loopback round-robin balancer; any replica takes any update, a burst of
one link spread over both downloads it once, and a user's rate limit holds whichever replica they reach.
Polling mode: one replica holds the poller lease; when it stops, the other takes over.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.config import Settings
from bot.telegram.app import run_telegram
from bot.wiring import App, build_app
from sandbox.balancer import RoundRobin
from sandbox.catalogue import CATALOGUE
from sandbox.runner import Sandbox
from sandbox.telegram import TelegramEmulator
from sandbox.tiktok import TikTokEmulator
from sandbox.ttsave import TTSaveEmulator
from tests.engines.redis import RedisServer

CLIP = next(p for p in CATALOGUE.posts.values() if p.hashtags == ("pasta", "cooking"))
SECRET = "replica-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def extra_env(redis_server: RedisServer, redis_prefix: str) -> dict[str, str]:
    return {
        "REDIS__URL": redis_server.url,
        "REDIS__PREFIX": redis_prefix,
        "REDIS__LEASE": "2",
        "TELEGRAM__WEBHOOK_SECRET": SECRET,
        "LIMITS__USER_PER_MINUTE": "2",
    }


@dataclass
class Replica:
    app: App
    stop: asyncio.Event
    task: asyncio.Task[None]

    async def halt(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)
        await self.app.aclose()

    def sample(self, name: str, **labels: str) -> float:
        return self.app.metrics.registry.get_sample_value(name, labels) or 0.0


async def settled(check: Callable[[], bool]) -> None:
    """Wait until `check` holds (a reply lands a moment before its interaction is counted)."""
    async with asyncio.timeout(10):
        while not check():  # noqa: ASYNC110 -- counters have no event to wait on
            await asyncio.sleep(0.02)


async def start_replicas(
    settings: Settings, tmp_path: Path, count: int, webhook: str | None
) -> list[Replica]:
    replicas = []
    for n in range(count):
        telegram = settings.telegram.model_copy(
            update={"webhook_url": webhook, "webhook_listen": f"127.0.0.1:{free_port()}"}
            if webhook
            else {"webhook_url": None}
        )
        own = settings.model_copy(
            update={
                "telegram": telegram,
                # A database each: the replicas share only what Redis holds.
                "database": settings.database.model_copy(update={"path": tmp_path / f"replica{n}.sqlite3"}),
            }
        )
        app = await build_app(own)
        stop = asyncio.Event()
        replicas.append(Replica(app, stop, asyncio.create_task(run_telegram(app, stop))))
    return replicas


@pytest.fixture
async def webhook_replicas(
    sandbox: Sandbox, settings: Settings, tmp_path: Path
) -> AsyncIterator[tuple[list[Replica], RoundRobin]]:
    ports = [free_port(), free_port()]
    async with RoundRobin([f"http://127.0.0.1:{p}" for p in ports]) as balancer:
        replicas = []
        for n, port in enumerate(ports):
            own = settings.model_copy(
                update={
                    "telegram": settings.telegram.model_copy(
                        update={
                            "webhook_url": f"{balancer.url}/tg/hook",
                            "webhook_listen": f"127.0.0.1:{port}",
                        }
                    ),
                    "database": settings.database.model_copy(update={"path": tmp_path / f"r{n}.sqlite3"}),
                }
            )
            app = await build_app(own)
            stop = asyncio.Event()
            replicas.append(Replica(app, stop, asyncio.create_task(run_telegram(app, stop))))
        tg = sandbox.get(TelegramEmulator)
        await tg.wait_until(lambda: len(tg.transcript("setWebhook")) >= 2, timeout=15, what="both webhooks")
        try:
            yield replicas, balancer
        finally:
            for replica in replicas:
                await replica.halt()


async def test_a_burst_over_two_replicas_downloads_once(
    webhook_replicas: tuple[list[Replica], RoundRobin], sandbox: Sandbox
) -> None:
    replicas, balancer = webhook_replicas
    tg = sandbox.get(TelegramEmulator)
    chats = [tg.private_chat(tg.add_user(f"Rep{n}")) for n in range(8)]
    mark = tg.mark()
    for chat in chats:
        tg.inject_message(chat, CLIP.url)
    for chat in chats:
        await tg.wait_for(method="sendVideo", chat_id=chat.id, after=mark, timeout=30)
    downloads = sandbox.get(TikTokEmulator).downloads(CLIP.id) + sandbox.get(TTSaveEmulator).downloads(
        CLIP.id
    )
    assert downloads == 1  # one replica downloaded; the other re-sent its file_id from the shared cache
    assert len(balancer.forwarded) == 2  # both replicas took updates...
    taken = [
        r.sample("tiktok_bot_updates_received_total", platform="telegram", kind="message") for r in replicas
    ]
    assert sum(taken) == 8 and all(taken)  # ...and both worked some of the stream
    ok = {"platform": "telegram", "action": "link", "outcome": "ok"}
    await settled(lambda: sum(r.sample("tiktok_bot_replies_total", **ok) for r in replicas) == 8)
    hits = sum(r.sample("tiktok_bot_cache_hits_total", platform="telegram", action="link") for r in replicas)
    assert hits == 7


async def test_a_users_rate_limit_holds_across_replicas(
    webhook_replicas: tuple[list[Replica], RoundRobin], sandbox: Sandbox
) -> None:
    tg = sandbox.get(TelegramEmulator)
    user = tg.add_user("Hasty")
    chat = tg.private_chat(user)
    mark = tg.mark()
    for _ in range(4):
        tg.inject_message(chat, CLIP.url, user=user)
    await tg.wait_until(lambda: len(tg.sent_to(chat.id, after=mark)) >= 4, timeout=30, what="four replies")
    replies = tg.sent_to(chat.id, after=mark)
    assert sum(1 for c in replies if c.method == "sendVideo") == 2  # LIMITS__USER_PER_MINUTE=2
    assert sum(1 for c in replies if "Slow down" in str(c.params.get("text", ""))) == 2


async def test_one_poller_and_a_successor(sandbox: Sandbox, settings: Settings, tmp_path: Path) -> None:
    tg = sandbox.get(TelegramEmulator)
    replicas = await start_replicas(settings, tmp_path, 2, webhook=None)
    try:
        await tg.wait_until(
            lambda: any(r.sample("tiktok_bot_poller_leader") for r in replicas), timeout=15, what="a leader"
        )
        leaders = [r for r in replicas if r.sample("tiktok_bot_poller_leader")]
        assert len(leaders) == 1
        chat = tg.private_chat(tg.add_user("Pol"))
        mark = tg.mark()
        tg.inject_message(chat, CLIP.url)
        await tg.wait_for(method="sendVideo", chat_id=chat.id, after=mark, timeout=30)
        [leader] = leaders
        [other] = [r for r in replicas if r is not leader]
        await leader.halt()
        replicas.remove(leader)
        await tg.wait_until(lambda: other.sample("tiktok_bot_poller_leader"), timeout=15, what="a successor")
        mark = tg.mark()
        tg.inject_message(chat, CLIP.url)
        await tg.wait_for(method="sendVideo", chat_id=chat.id, after=mark, timeout=30)
    finally:
        for replica in replicas:
            await replica.halt()
