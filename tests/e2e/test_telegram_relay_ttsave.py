"""Pipelined relay through TTSave: no size up front, so the upload goes chunked once the moov is read."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.wiring import App
from sandbox.catalogue import catalogue_with, synthetic_posts
from sandbox.runner import Sandbox, all_emulators
from sandbox.telegram import TelegramEmulator
from sandbox.ttsave import TTSaveEmulator
from tests.e2e.conftest import wait_rows
from tests.e2e.test_telegram_relay import MB, failed_uploads, paste, rendition_sha

POSTS = synthetic_posts(2, size=6 * MB, serial=7_100)
# Over the cloud Bot API's 50 MiB: TTSave's stream has to be cut off by the size limit while it uploads.
HUGE = synthetic_posts(1, size=51 * MB, serial=7_200)[0]


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    """Every emulator, serving the fixtures plus synthetic posts whose videos start with their moov."""
    box = Sandbox(all_emulators(catalogue_with([*POSTS, HUGE])))
    await box.start()
    try:
        yield box
    finally:
        await box.stop()


@pytest.fixture
def extra_env() -> dict[str, str]:
    """TTSave alone: it says nothing of the video before the bytes."""
    return {"DOWNLOAD__BACKENDS": "ttsave"}


async def test_ttsave_video_uploads_chunked_while_it_downloads(
    tg: TelegramEmulator, sandbox: Sandbox, app: App
) -> None:
    ttsave = sandbox.get(TTSaveEmulator)
    ttsave.mibps = 24
    post = POSTS[0]
    chat_id, mark = await paste(tg, post, "Ann")
    call = await tg.wait_for(method="sendVideo", chat_id=chat_id, after=mark, timeout=30)
    assert call.ok, call.error
    assert call.files[0].sha256 == rendition_sha(post) and call.files[0].size == 6 * MB
    [served] = [s for s in ttsave.served if s.post_id == post.id]
    assert 0 < call.first_byte < served.finished
    assert call.content_length is None  # chunked: the size was not known when the upload began
    # Pixels and seconds came from the moov at the head of the stream.
    assert (int(call.params["width"]), int(call.params["height"]), int(call.params["duration"])) == (
        720,
        1280,
        10,
    )
    [row] = await wait_rows(app, "link")
    assert (row["outcome"], row["backend"], row["bytes_sent"]) == ("ok", "ttsave", 6 * MB)


async def test_ttsave_breaking_off_mid_stream_posts_nothing(
    tg: TelegramEmulator, sandbox: Sandbox, app: App
) -> None:
    ttsave = sandbox.get(TTSaveEmulator)
    ttsave.mibps = 24
    ttsave.fault_next("truncated")  # half the video, then the stream ends
    post = POSTS[1]
    chat_id, mark = await paste(tg, post, "Bea")
    [row] = await wait_rows(app, "link", timeout=30)
    assert row["outcome"] != "ok"
    assert failed_uploads(tg, mark), "the streamed upload should have begun and been dropped"
    assert not tg.transcript("sendVideo", after=mark, ok=True)
    assert all("video" not in m for m in tg.messages_in(chat_id))


async def test_size_limit_is_enforced_while_streaming(
    tg: TelegramEmulator, sandbox: Sandbox, app: App
) -> None:
    chat_id, mark = await paste(tg, HUGE, "Cid")
    [row] = await wait_rows(app, "link", timeout=60)
    assert row["outcome"] == "too_large"
    assert failed_uploads(tg, mark), "the streamed upload should have begun and been cut off"
    assert not tg.transcript("sendVideo", after=mark, ok=True)
    answer = await tg.wait_for(method="sendMessage", chat_id=chat_id, after=mark, timeout=30)
    assert answer.ok and [c.method for c in tg.sent_to(chat_id, after=mark)] == ["sendMessage"]
