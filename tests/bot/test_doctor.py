"""`tiktok-bot doctor` against the whole sandbox: green as configured, red with the right hint when one
upstream is broken (a wrong Telegram token, a dead TTSave, a Research quota at zero)."""

from __future__ import annotations

import argparse
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.cli.doctor import doctor
from bot.config import Settings, settings_from
from sandbox.research import ResearchEmulator
from sandbox.runner import Sandbox
from sandbox.telegram import TelegramEmulator
from sandbox.tiktok import TikTokEmulator
from sandbox.ttsave import TTSaveEmulator
from tests.services.download.conftest import CLIP, link

NAMES = ("Telegram", "Discord", "TTSave", "TikTok", "EnsembleData", "Research API")


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox() as running:
        yield running


def settings_for(sandbox: Sandbox, tmp_path: Path, **changes: str) -> Settings:
    env = {**sandbox.env(), "DATABASE__PATH": str(tmp_path / "db.sqlite3"), **changes}
    return settings_from(env)


async def run(settings: Settings, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, list[str]]]:
    """Exit code, and each upstream's row (plus its fix line, if any)."""
    code = await doctor(argparse.Namespace(post=link(CLIP).url, timeout=10.0), settings)
    rows: dict[str, list[str]] = {}
    current = ""
    for line in capsys.readouterr().out.splitlines():
        name = next((n for n in NAMES if line.startswith(n)), None)
        if name is not None:
            current = name
        rows.setdefault(current, []).append(line)
    return code, rows


async def test_green_against_the_sandbox(
    sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, rows = await run(settings_for(sandbox, tmp_path), capsys)
    assert code == 0, rows
    assert set(rows) == set(NAMES)
    for name in NAMES:
        assert rows[name][0].split()[1 if name != "Research API" else 2] == "ok", rows[name]
        assert " ms " in rows[name][0] and len(rows[name]) == 1  # a latency, no fix line
    assert "@tiktok_sandbox_bot" in rows["Telegram"][0] and "inline on" in rows["Telegram"][0]
    assert "intents granted: message content" in rows["Discord"][0]
    assert "CDN v16-webapp-prime.tiktok.com answered 206 with 1024 bytes" in rows["TikTok"][0]
    assert "tt_chain_token" in rows["TikTok"][0] and "no challenge" in rows["TikTok"][0]
    assert "units used today" in rows["EnsembleData"][0]
    assert sandbox.get(TTSaveEmulator).hits("/api/v3/ping")
    assert [r.host for r in sandbox.get(TikTokEmulator).requests][:1] == ["www.tiktok.com"]


async def test_tiktok_row_passes_the_challenge(
    sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox.get(TikTokEmulator).fault_next("challenge")
    code, rows = await run(settings_for(sandbox, tmp_path), capsys)
    assert code == 0
    row = rows["TikTok"][0]
    assert "page ok (universal, challenge solved" in row and "206 with 1024 bytes" in row


async def test_tiktok_row_red_when_the_door_stays_shut(
    sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox.get(TikTokEmulator).fault_next("challenge_unsolvable", count=20)
    code, rows = await run(settings_for(sandbox, tmp_path), capsys)
    assert code == 1
    assert "FAIL" in rows["TikTok"][0] and rows["TikTok"][1].lstrip().startswith("fix: TikTok")


async def test_tiktok_unreachable_says_so(
    sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    routes = json.dumps(dict.fromkeys(sandbox.get(TikTokEmulator).routed_hosts(), f"http://127.0.0.1:{dead}"))
    code, rows = await run(settings_for(sandbox, tmp_path, UPSTREAM_ROUTES=routes), capsys)
    assert code == 1
    assert "FAIL" in rows["TikTok"][0] and "unreachable" in rows["TikTok"][0]
    assert "fix: TikTok cannot be reached from here: check the network and DNS" in rows["TikTok"][1]


async def test_wrong_telegram_token(
    sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(sandbox, tmp_path, TELEGRAM__TOKEN="123456:WRONG-token")
    code, rows = await run(settings, capsys)
    assert code == 1
    assert "FAIL" in rows["Telegram"][0] and "token refused" in rows["Telegram"][0]
    assert "fix: TELEGRAM__TOKEN is wrong or revoked: copy it again from @BotFather" in rows["Telegram"][1]
    assert "WRONG-token" not in "".join(
        line for lines in rows.values() for line in lines
    )  # the token is never printed
    assert all("FAIL" not in rows[n][0] for n in NAMES if n != "Telegram")
    assert sandbox.get(TelegramEmulator) is not None


async def test_dead_ttsave(sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    settings = settings_for(sandbox, tmp_path, TTSAVE__URL=f"http://127.0.0.1:{dead}/api/v3")
    code, rows = await run(settings, capsys)
    assert code == 1
    assert "FAIL" in rows["TTSave"][0] and "no pong" in rows["TTSave"][0]
    assert "fix: TTSave is down or TTSAVE__URL is wrong" in rows["TTSave"][1]


async def test_research_quota_at_zero(
    sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox.get(ResearchEmulator).daily_quota = 0
    code, rows = await run(settings_for(sandbox, tmp_path), capsys)
    assert code == 1
    assert "FAIL" in rows["Research API"][0] and "token ok; data request refused" in rows["Research API"][0]
    assert "fix: the Research API's daily quota is spent (resets 00:00 UTC)" in rows["Research API"][1]


async def test_unconfigured_upstreams_are_skipped_not_failed(
    sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {
        k: v for k, v in sandbox.env().items() if not k.startswith(("TELEGRAM__", "DISCORD__", "RESEARCH__"))
    }
    code, rows = await run(settings_from({**env, "DATABASE__PATH": str(tmp_path / "db")}), capsys)
    assert code == 0
    for name in ("Telegram", "Discord"):
        assert rows[name][0].split()[1] == "skipped"
    assert rows["Research API"][0].split()[2] == "skipped"
