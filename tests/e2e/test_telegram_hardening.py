"""Telegram end to end under hostile conditions: flood control on every call, exact upload limits, full disks."""

from __future__ import annotations

import dataclasses

import pytest

from bot.wiring import App
from sandbox.catalogue import CATALOGUE, FixturePost, Rendition, post_id_at
from sandbox.telegram import TelegramEmulator
from sandbox.telegram.methods import CLOUD_UPLOAD_LIMIT
from tests.e2e.conftest import wait_rows

MIB = 1024 * 1024
CLIP = next(
    p
    for p in CATALOGUE.posts.values()
    if p.renditions and p.renditions[-1].file and p.hashtags == ("pasta", "cooking")
)


def added_post(monkeypatch: pytest.MonkeyPatch, serial: int, size: int) -> FixturePost:
    """A video post of `size` synthesised bytes, served by every emulator until the test ends."""
    post = dataclasses.replace(
        CLIP,
        id=post_id_at(1_700_900_000, serial),
        renditions=(Rendition("normal_720_0", "h264", 720, 1280, 900_000, size),),
        hashtags=(),
    )
    monkeypatch.setitem(CATALOGUE.posts, post.id, post)
    return post


async def test_a_48_mib_video_fits_telegrams_50_mb(
    tg: TelegramEmulator, app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Telegram's 50 MB is 50 << 20 bytes: 48 MiB (50.3 decimal MB) goes through.
    assert CLOUD_UPLOAD_LIMIT == app.settings.telegram.upload_limit == 50 * MIB
    post = added_post(monkeypatch, 48, 48 * MIB)
    user = tg.add_user("Max")
    chat = tg.private_chat(user)
    mark = tg.mark()
    tg.inject_message(chat, post.url, user=user)
    call = await tg.wait_for(method="sendVideo", chat_id=chat.id, after=mark, timeout=60)
    assert call.ok
    [video] = call.files
    assert video.size == 48 * MIB
    rows = await wait_rows(app, "link")
    assert rows[-1]["outcome"] == "ok"


async def test_a_video_over_50_mib_names_the_limit_in_telegrams_units(
    tg: TelegramEmulator, app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    post = added_post(monkeypatch, 56, 56 * MIB)
    user = tg.add_user("Mia")
    chat = tg.private_chat(user)
    mark = tg.mark()
    tg.inject_message(chat, post.url, user=user)
    call = await tg.wait_for(method="sendMessage", chat_id=chat.id, after=mark, timeout=60)
    assert "56.0 MB; the limit is 50.0 MB" in call.params["text"]
    assert not tg.transcript("sendVideo", chat_id=chat.id)
    rows = await wait_rows(app, "link")
    assert rows[-1]["outcome"] == "too_large"
