"""Pipelined relay end to end: the Telegram upload follows the download while the CDN is still sending."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bot.wiring import App
from sandbox.catalogue import FixturePost, catalogue_with, synthetic_posts
from sandbox.runner import Sandbox, all_emulators
from sandbox.telegram import TelegramEmulator
from sandbox.telegram.transcript import Call
from sandbox.tiktok import MediaHit, TikTokEmulator
from tests.e2e.conftest import wait_rows

MB = 1024 * 1024
POSTS = synthetic_posts(4, size=6 * MB, serial=7_000)


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    """Every emulator, serving the fixtures plus a few 6 MiB synthetic posts."""
    box = Sandbox(all_emulators(catalogue_with(POSTS)))
    await box.start()
    try:
        yield box
    finally:
        await box.stop()


@pytest.fixture
def extra_env() -> dict[str, str]:
    """The web backend first: it knows a video's size and shape from the page, before the bytes."""
    return {"DOWNLOAD__BACKENDS": "web,ttsave"}


def rendition_sha(post: FixturePost) -> str:
    return TikTokEmulator.rendition_blob(post, post.renditions[0]).sha256()


def video_hits(tiktok: TikTokEmulator, post: FixturePost) -> list[MediaHit]:
    return [h for h in tiktok.media_log if h.key == post.id and h.kind == "video"]


async def paste(tg: TelegramEmulator, post: FixturePost, name: str) -> tuple[int, int]:
    """A user pastes the post's link in a private chat; (chat id, transcript mark)."""
    user = tg.add_user(name)
    chat = tg.private_chat(user)
    mark = tg.mark()
    tg.inject_message(chat, post.url, user=user)
    return chat.id, mark


async def test_upload_starts_before_the_cdn_sends_its_last_byte(
    tg: TelegramEmulator, sandbox: Sandbox, app: App
) -> None:
    tiktok = sandbox.get(TikTokEmulator)
    tiktok.cdn_mibps = 24  # 6 MiB in a quarter of a second: long enough to see the overlap under load
    post = POSTS[0]
    chat_id, mark = await paste(tg, post, "Ann")
    call = await tg.wait_for(method="sendVideo", chat_id=chat_id, after=mark, timeout=30)
    assert call.ok, call.error
    [video] = call.files
    assert video.uploaded and video.size == 6 * MB
    assert video.sha256 == rendition_sha(post)
    [hit] = video_hits(tiktok, post)
    assert hit.finished > 0
    # The emulator held the first upload bytes before the CDN let go of its last.
    assert 0 < call.first_byte < hit.finished
    # Exact length, not chunked: the emulator checks it against the multipart body it read.
    assert call.content_length is not None and call.content_length > video.size
    assert (int(call.params["width"]), int(call.params["height"]), int(call.params["duration"])) == (
        720,
        1280,
        10,
    )
    assert f"@{post.author}" in call.params["caption"]
    [row] = await wait_rows(app, "link")
    assert (row["outcome"], row["backend"], row["bytes_sent"]) == ("ok", "web", 6 * MB)


def failed_uploads(tg: TelegramEmulator, mark: int) -> list[Call]:
    """sendVideo calls refused since `mark` (a body that broke off never names its chat to the server)."""
    return tg.transcript("sendVideo", after=mark, ok=False)


async def test_cdn_breaking_off_posts_nothing_and_the_next_source_serves(
    tg: TelegramEmulator, sandbox: Sandbox, app: App
) -> None:
    tiktok = sandbox.get(TikTokEmulator)
    tiktok.cdn_mibps = 24
    tiktok.fault_next("cdn_truncated")  # the first CDN answer announces 6 MiB and breaks off halfway
    post = POSTS[1]
    chat_id, mark = await paste(tg, post, "Bea")
    call = await tg.wait_for(method="sendVideo", chat_id=chat_id, after=mark, ok=True, timeout=30)
    assert call.files[0].sha256 == rendition_sha(post)
    # The upload that followed the broken download had begun, and was never accepted.
    [aborted] = failed_uploads(tg, mark)
    assert aborted.first_byte > 0
    first, second = video_hits(tiktok, post)
    assert first.finished == 0 and second.finished > 0
    assert len(tg.messages_in(chat_id)) == 1  # only the good video reached the chat
    [row] = await wait_rows(app, "link")
    assert (row["outcome"], row["backend"]) == ("ok", "web")


async def test_web_failing_mid_stream_falls_back_to_ttsave(
    tg: TelegramEmulator, sandbox: Sandbox, app: App
) -> None:
    tiktok = sandbox.get(TikTokEmulator)
    tiktok.cdn_mibps = 24
    tiktok.fault_next("cdn_truncated", count=10)  # every source of the web backend breaks off
    post = POSTS[2]
    chat_id, mark = await paste(tg, post, "Cid")
    call = await tg.wait_for(method="sendVideo", chat_id=chat_id, after=mark, ok=True, timeout=30)
    assert call.files[0].sha256 == rendition_sha(post)
    assert failed_uploads(tg, mark), "the streamed upload should have begun and been dropped"
    assert len(tg.messages_in(chat_id)) == 1
    [row] = await wait_rows(app, "link")
    assert (row["outcome"], row["backend"]) == ("ok", "ttsave")


async def test_unpaced_relay_delivers_the_same_bytes(tg: TelegramEmulator, sandbox: Sandbox) -> None:
    post = POSTS[3]
    chat_id, mark = await paste(tg, post, "Dee")
    call = await tg.wait_for(method="sendVideo", chat_id=chat_id, after=mark, timeout=30)
    assert call.ok and call.files[0].sha256 == rendition_sha(post)
    # The same post again goes out by file_id: the streamed upload's reference was cached.
    mark = tg.mark()
    user = tg.add_user("Eve")
    chat = tg.private_chat(user)
    tg.inject_message(chat, post.url, user=user)
    again = await tg.wait_for(method="sendVideo", chat_id=chat.id, after=mark, timeout=30)
    assert again.ok and not again.files[0].uploaded
    await asyncio.sleep(0)
