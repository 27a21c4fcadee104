"""The Bot API emulator refuses a multipart upload whose Content-Length disagrees with its body."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from yarl import URL

from sandbox.telegram import TelegramEmulator
from tests.sandbox.raw_http import read_answer

BOUNDARY = "b0undary"


def multipart(chat_id: int, video: bytes) -> bytes:
    """A sendVideo body: chat_id and a video file part."""
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="chat_id"\r\n\r\n{chat_id}\r\n'
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="video"; filename="v.mp4"\r\n'
            "Content-Type: video/mp4\r\n\r\n"
        ).encode()
        + video
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


async def post_raw(emu: TelegramEmulator, body: bytes, declared: int) -> tuple[int, bytes]:
    """POST sendVideo over a plain socket with `declared` as Content-Length; (status, answer body)."""
    url = URL(emu.base_url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    head = (
        f"POST /bot{emu.token}/sendVideo HTTP/1.1\r\nHost: {url.host}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    )
    writer.write(head.encode() + body)
    await writer.drain()
    return await read_answer(reader, writer)


@pytest.fixture
async def emu() -> AsyncIterator[TelegramEmulator]:
    emulator = TelegramEmulator()
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


async def test_exact_content_length_is_accepted(emu: TelegramEmulator) -> None:
    chat = emu.private_chat(emu.add_user("Ann"))
    body = multipart(chat.id, b"\x00" * 5000)
    status, answer = await post_raw(emu, body, len(body))
    assert (status, json.loads(answer)["ok"]) == (200, True)
    [call] = emu.transcript("sendVideo")
    assert call.content_length == len(body) and call.first_byte > 0


@pytest.mark.parametrize("error", [1, 2, 100])
async def test_content_length_past_the_body_is_refused_at_once(emu: TelegramEmulator, error: int) -> None:
    chat = emu.private_chat(emu.add_user("Ann"))
    body = multipart(chat.id, b"\x00" * 5000)
    status, answer = await post_raw(emu, body, len(body) + error)
    assert status == 400
    assert f"Content-Length is {len(body) + error}" in json.loads(answer)["description"]
    assert not emu.messages_in(chat.id)


@pytest.mark.parametrize("error", [1, 2, 100])
async def test_content_length_short_of_the_body_is_refused(emu: TelegramEmulator, error: int) -> None:
    chat = emu.private_chat(emu.add_user("Ann"))
    body = multipart(chat.id, b"\x00" * 5000)
    # The body "ends" early, and what follows is garbage where the next request should start: either the
    # multipart reader or the HTTP layer answers 400 first.
    status, _ = await post_raw(emu, body, len(body) - error)
    assert status == 400
    assert not emu.messages_in(chat.id)
    assert not emu.transcript("sendVideo", ok=True)
