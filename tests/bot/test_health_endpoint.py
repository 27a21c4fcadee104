"""The polling-mode health endpoint (HEALTH__LISTEN): each upstream up / degraded / down in JSON."""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bot.cli.run import listeners
from bot.cli.stats import show_stats
from bot.config import settings_from
from bot.health import serve_health
from bot.wiring import App, build_app
from sandbox.runner import Sandbox
from sandbox.tiktok import TikTokEmulator
from sandbox.ttsave import TTSaveEmulator
from services.download.models import Want
from tests.services.download.conftest import CLIP, link


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox([TikTokEmulator(), TTSaveEmulator()]) as running:
        yield running


async def get_health(port: int) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as resp:
        return resp.status, await resp.json()


async def serve(app: App, port: int) -> tuple[asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(serve_health(app, f"127.0.0.1:{port}", stop))
    for _ in range(200):  # until the listener is up
        try:
            await get_health(port)
            break
        except aiohttp.ClientConnectionError:
            await asyncio.sleep(0.02)
    return stop, task


async def test_reports_a_dead_ttsave_down_and_the_web_up(sandbox: Sandbox, tmp_path: Path) -> None:
    port = free_port()
    dead = free_port()  # nobody listens there: the start-up /ping is refused
    env = {
        **sandbox.env(),
        "TTSAVE__URL": f"http://127.0.0.1:{dead}/api/v3",
        "DATABASE__PATH": str(tmp_path / "db.sqlite3"),
        "HEALTH__LISTEN": f"127.0.0.1:{port}",
    }
    settings = settings_from(env)
    app = await build_app(settings)
    stop, task = await serve(app, port)
    try:
        await app.downloads.wait_probes()
        status, body = await get_health(port)
        assert status == 200  # a dead upstream is not a reason to restart the bot
        assert body["ready"] is True and body["status"] == "degraded"
        upstreams = {u["backend"]: u for u in body["upstreams"]}  # type: ignore[attr-defined]
        assert upstreams["ttsave"]["status"] == "down" and upstreams["ttsave"]["breaker"] == "open"
        assert upstreams["web"]["status"] == "up" and upstreams["web"]["breaker"] == "closed"
    finally:
        stop.set()
        await task
        await app.aclose()


async def test_off_by_default() -> None:
    assert settings_from({}).health.listen is None
    assert listeners(settings_from({})) == {}


async def test_run_starts_the_listener_beside_the_frontends(sandbox: Sandbox, tmp_path: Path) -> None:
    port = free_port()
    settings = settings_from(
        {
            **sandbox.env(),
            "DATABASE__PATH": str(tmp_path / "db.sqlite3"),
            "HEALTH__LISTEN": f"127.0.0.1:{port}",
        }
    )
    app = await build_app(settings)
    stop = asyncio.Event()
    (runner,) = listeners(settings).values()
    task = asyncio.create_task(runner(app, stop))
    try:
        for _ in range(200):
            try:
                status, body = await get_health(port)
                break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.02)
        assert status == 200 and body["status"] == "up"
        # Every download backend open: the bot is down for media, and says so (still 200: it is alive).
        for name in ("ttsave", "web"):
            app.downloads.health(name).breaker.probe_result(False)
        status, body = await get_health(port)
        assert status == 200 and body["status"] == "down"
        assert {u["backend"]: u["retry_in"] for u in body["upstreams"]}["web"] == pytest.approx(30, abs=1)  # type: ignore[index]
    finally:
        stop.set()
        await task
        await app.aclose()


async def test_stats_cli_shows_each_backend_and_its_breaker(
    sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    env = {
        **sandbox.env(),
        "DATABASE__PATH": str(tmp_path / "db.sqlite3"),
        "HEALTH__LISTEN": f"0.0.0.0:{port}",
    }
    settings = settings_from(env)
    app = await build_app(settings)
    stop, task = await serve(app, port)
    try:
        await app.downloads.wait_probes()
        sandbox.get(TTSaveEmulator).fault_next("500", count=9)  # three failed attempts: the breaker opens
        for _ in range(3):
            async with await app.downloads.fetch(link(CLIP)) as media:
                assert media.backend == "web"
        async with await app.downloads.fetch(link(CLIP), Want.AUDIO) as media:
            assert [(a.backend, a.error_code) for a in media.attempts] == [
                ("ttsave", "circuit_open"),
                ("web", None),
            ]
        args = argparse.Namespace(days=1.0, top=5, json=False, health=None)
        assert await show_stats(args, settings) == 0
        out = capsys.readouterr().out
        assert f"Download backends (live, since the bot started; http://127.0.0.1:{port}/healthz)" in out
        lines = {
            line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("ttsave", "web"))
        }
        assert lines["ttsave"][1:3] == ["3", "0"] and lines["ttsave"][-2:] == ["open", "down"]
        assert lines["web"][1:3] == ["4", "4"] and lines["web"][-2:] == ["closed", "up"]
        assert "100%" in lines["web"] and "1" in lines["ttsave"]  # all served by the web; one skip
        args.json = True
        assert await show_stats(args, settings) == 0
        data = json.loads(capsys.readouterr().out)
        assert [(b["backend"], b["breaker"]) for b in data["live_backends"]] == [
            ("ttsave", "open"),
            ("web", "closed"),
        ]
    finally:
        stop.set()
        await task
        await app.aclose()


async def test_stats_cli_without_a_running_bot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = settings_from({"DATABASE__PATH": str(tmp_path / "db.sqlite3")})
    args = argparse.Namespace(days=1.0, top=5, json=False, health=None)
    assert await show_stats(args, settings) == 0
    assert "Download backends (live): not available: no health endpoint configured" in capsys.readouterr().out
