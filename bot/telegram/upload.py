"""Uploads read straight from the spool: exact sizes, and no worker-thread hop per chunk.

aiogram hands an upload to aiohttp as an async generator: aiohttp cannot size it, so the request goes out with
chunked transfer encoding, and aiogram's `FSInputFile` reads each chunk through a worker thread. Here `read()`
returns an aiohttp payload that knows its size when the spool does (a finished file, or a growing one whose
size the page announced), so the multipart body carries an exact Content-Length; a growing file of unknown
size (TTSave) still goes chunked, which the Bot API server accepts (td's HttpReader, HttpChunkedByteFlow).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from aiogram.types import InputFile
from aiohttp.payload import AsyncIterablePayload

from services.download.growing import READ_CHUNK, GrowingFile

if TYPE_CHECKING:
    from aiogram import Bot


class _SizedStream(AsyncIterablePayload):
    """A streamed payload whose length is known before it is read (None: unknown, sent chunked)."""

    def __init__(self, chunks: AsyncIterator[bytes], size: int | None, content_type: str) -> None:
        super().__init__(chunks, content_type=content_type)
        self._size = size


async def _file_chunks(path: Path, size: int, chunk_size: int) -> AsyncIterator[bytes]:
    """A finished file's bytes; its size as measured when the upload was built."""
    fd = os.open(path, os.O_RDONLY)
    try:
        offset = 0
        while offset < size:
            data = os.pread(fd, min(chunk_size, size - offset), offset)
            if not data:
                raise OSError(f"{path.name} shrank to {offset} of {size} bytes while uploading")
            offset += len(data)
            yield data
    finally:
        os.close(fd)


class SpoolUpload(InputFile):
    """A file to upload from the spool: a finished path, or a GrowingFile still being downloaded."""

    def __init__(
        self,
        source: Path | GrowingFile,
        filename: str | None = None,
        *,
        content_type: str = "application/octet-stream",
        chunk_size: int = READ_CHUNK,
    ) -> None:
        path = source.path if isinstance(source, GrowingFile) else source
        super().__init__(filename=filename or path.name, chunk_size=chunk_size)
        self.source = source
        self.content_type = content_type

    @property
    def size(self) -> int | None:
        """Bytes the upload will carry, when known before it starts."""
        if isinstance(self.source, GrowingFile):
            return self.source.size
        return self.source.stat().st_size

    def read(self, bot: Bot) -> AsyncIterablePayload:  # type: ignore[override]
        """The payload aiohttp sends (aiogram passes what `read` returns to its FormData as is)."""
        # aiogram declares an async generator; aiohttp takes any payload, and only a payload can say its size.
        if isinstance(self.source, GrowingFile):
            return _SizedStream(self.source.chunks(self.chunk_size), self.source.size, self.content_type)
        size = self.source.stat().st_size
        return _SizedStream(_file_chunks(self.source, size, self.chunk_size), size, self.content_type)
