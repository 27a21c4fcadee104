"""Telegram end to end with the spool on a real 1 MiB filesystem: a full disk is its own outcome."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.wiring import App
from sandbox.catalogue import CATALOGUE, FixturePost, Rendition, post_id_at
from sandbox.runner import Sandbox
from sandbox.telegram import TelegramEmulator
from sandbox.tiktok import TikTokEmulator
from tests.e2e.conftest import wait_rows
from tests.local_fs import tmpfs

CLIP = next(
    p
    for p in CATALOGUE.posts.values()
    if p.renditions and p.renditions[-1].file and p.hashtags == ("pasta", "cooking")
)


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Path]:
    """The download directory: a 1 MiB tmpfs."""
    with tmpfs(tmp_path / "spool", size="1m") as where:
        yield where


@pytest.fixture
def backends() -> str:
    """The download chain (a test parametrizes it to try one backend)."""
    return "ttsave,web"


@pytest.fixture
def extra_env(spool: Path, backends: str) -> dict[str, str]:
    return {"DOWNLOAD__TEMP_DIR": str(spool), "DOWNLOAD__BACKENDS": backends}


@pytest.fixture
def three_mb(monkeypatch: pytest.MonkeyPatch) -> FixturePost:
    """A 3 MB video: more than the spool holds."""
    post = dataclasses.replace(
        CLIP,
        id=post_id_at(1_700_950_000, 3),
        renditions=(Rendition("normal_720_0", "h264", 720, 1280, 900_000, 3_000_000),),
        hashtags=(),
    )
    monkeypatch.setitem(CATALOGUE.posts, post.id, post)
    return post


def local_problems(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "local resource problem" in r.getMessage()]


async def test_a_full_disk_is_disk_full_and_the_bot_keeps_serving(
    tg: TelegramEmulator, app: App, spool: Path, three_mb: FixturePost, caplog: pytest.LogCaptureFixture
) -> None:
    user = tg.add_user("Pia")
    chat = tg.private_chat(user)
    mark = tg.mark()
    tg.inject_message(chat, three_mb.url, user=user)
    call = await tg.wait_for(method="sendMessage", chat_id=chat.id, after=mark, timeout=30)
    assert "short of room" in call.params["text"]
    rows = await wait_rows(app, "link")
    assert rows[-1]["outcome"] == "local:disk_full"
    [line] = local_problems(caplog)
    assert line.levelno == logging.ERROR and "disk_full" in line.getMessage()
    assert not [r for r in caplog.records if r.exc_info is not None]
    # Nothing left behind to keep the disk full: no file anywhere under the spool (the bot keeps only its own
    # empty per-process directory, tiktok-bot/<pid>/, until it stops).
    assert [f for _, _, files in os.walk(spool) for f in files] == []
    # The next request that fits is served as usual.
    mark = tg.mark()
    tg.inject_message(chat, CLIP.url, user=user)
    video = await tg.wait_for(method="sendVideo", chat_id=chat.id, after=mark, ok=True, timeout=30)
    assert video.files[0].uploaded
    rows = await wait_rows(app, "link", 2)
    assert rows[-1]["outcome"] == "ok"


@pytest.mark.parametrize("backends", ["web"])
async def test_no_room_for_the_known_size_means_no_download(
    tg: TelegramEmulator, app: App, sandbox: Sandbox, three_mb: FixturePost, caplog: pytest.LogCaptureFixture
) -> None:
    user = tg.add_user("Quinn")
    chat = tg.private_chat(user)
    mark = tg.mark()
    tg.inject_message(chat, three_mb.url, user=user)
    call = await tg.wait_for(method="sendMessage", chat_id=chat.id, after=mark, timeout=30)
    assert "short of room" in call.params["text"]
    rows = await wait_rows(app, "link")
    assert rows[-1]["outcome"] == "local:disk_full"
    # The page said 3,000,000 bytes; with 1 MiB free the CDN was never asked for them.
    assert sandbox.get(TikTokEmulator).downloads(three_mb.id) == 0
    assert "needs 3000000" in local_problems(caplog)[0].getMessage()
