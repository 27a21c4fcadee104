"""Reading an HTTP/1.1 answer off a raw socket, for tests that send bodies an HTTP client would not."""

from __future__ import annotations

import asyncio


async def read_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[int, bytes]:
    """The answer's status and body, read by its Content-Length; the connection is closed after."""
    try:
        # By its length: the server may linger on a body it was promised but never got.
        headers = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        status_line, *lines = headers.decode().split("\r\n")
        length = next(
            int(v) for k, _, v in (h.partition(": ") for h in lines) if k.lower() == "content-length"
        )
        payload = await asyncio.wait_for(reader.readexactly(length), 10)
    finally:
        writer.close()
    return int(status_line.split()[1]), payload
