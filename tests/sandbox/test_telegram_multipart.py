"""The Bot API emulator reads multipart bodies however they are split, and refuses malformed ones."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator

import pytest
from yarl import URL

from sandbox.telegram import TelegramEmulator
from tests.sandbox.raw_http import read_answer

BOUNDARY = "webhookBoundaryXyZ123"
# Part bodies full of near-boundaries: CRLFs, dashes and prefixes of the boundary itself.
TRICKY = b"".join([b"\r\n", b"--", b"\r\n--", BOUNDARY[:7].encode(), b"x", b"\x00\xff"] * 40)


def encode(chat_id: int, caption: str, document: bytes) -> bytes:
    """A sendDocument body with a preamble and an epilogue, the file named the RFC 5987 way."""
    head = f"--{BOUNDARY}\r\nContent-Disposition: form-data; "
    return (
        b"preamble to ignore\r\n"
        + f'{head}name="chat_id"\r\n\r\n{chat_id}\r\n'.encode()
        + f'{head}name="caption"\r\n\r\n{caption}\r\n'.encode()
        + f"{head}name=\"document\"; filename*=UTF-8''%D1%84.bin\r\n".encode()
        + b"Content-Type: application/octet-stream\r\n\r\n"
        + document
        + f"\r\n--{BOUNDARY}--\r\nepilogue".encode()
    )


async def post_raw(
    emu: TelegramEmulator, body: bytes, piece: int | None = None
) -> tuple[int, dict[str, object]]:
    """POST sendDocument over a socket: with a Content-Length, or chunked in `piece`-byte writes."""
    url = URL(emu.base_url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    framing = "Transfer-Encoding: chunked" if piece else f"Content-Length: {len(body)}"
    writer.write(
        f"POST /bot{emu.token}/sendDocument HTTP/1.1\r\nHost: {url.host}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n{framing}\r\n\r\n".encode()
    )
    if piece:
        for start in range(0, len(body), piece):
            chunk = body[start : start + piece]
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
    else:
        writer.write(body)
    await writer.drain()
    status, payload = await read_answer(reader, writer)
    return status, json.loads(payload)


@pytest.fixture
async def emu() -> AsyncIterator[TelegramEmulator]:
    emulator = TelegramEmulator()
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


@pytest.mark.parametrize("piece", [1, 7, 64, 4096])
async def test_any_split_of_the_body_gives_the_same_parts(emu: TelegramEmulator, piece: int) -> None:
    chat = emu.private_chat()
    caption = "a caption -- with dashes"
    status, answer = await post_raw(emu, encode(chat.id, caption, TRICKY), piece)
    assert (status, answer["ok"]) == (200, True), answer
    [call] = emu.transcript("sendDocument")
    [sent] = call.files
    assert (sent.name, sent.size, sent.sha256) == ("ф.bin", len(TRICKY), hashlib.sha256(TRICKY).hexdigest())
    assert call.params["caption"] == caption and call.chat_id == chat.id


@pytest.mark.parametrize(
    "body",
    [
        b'--b\r\nContent-Disposition: form-data; name="x"\r\n\r\nno closing boundary',
        b"--b\r\nX-Other: 1\r\n\r\nbody\r\n--b--\r\n",
        b"--b\r\n\r\nheaderless\r\n--b--\r\n",
        b"--bGARBAGE\r\n",
    ],
)
async def test_malformed_bodies_are_refused(emu: TelegramEmulator, body: bytes) -> None:
    url = URL(emu.base_url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(
        f"POST /bot{emu.token}/sendDocument HTTP/1.1\r\nHost: {url.host}\r\n"
        f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    try:
        status_line = await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
    assert status_line.split()[1] == b"400"
    assert not emu.transcript("sendDocument", ok=True)
