"""A spool file readable while it is still being written, so an upload can start before its download ends.

A backend that knows what a video is before its bytes arrive (size, width, height, duration) announces a
`GrowingFile` through `announce()`; the download service hands it to whoever asked (`on_stream`), and marks it
complete only when the whole attempt succeeded, or failed when the attempt did. A reader (`chunks()`) follows
the writer through the file on disk — never more than one chunk in memory — and withholds the last byte until
the download is declared complete, so a body streamed from it can never end, and be accepted, early.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from services.errors import TruncatedStream, UpstreamError
from services.metadata.models import Post

READ_CHUNK = 256 * 1024


class StreamAborted(UpstreamError):
    """The download feeding a streamed upload failed; the upload must not complete."""


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What is known of a video before its bytes: its size (None: unknown), pixels and seconds."""

    size: int | None
    mime: str
    width: int
    height: int
    duration: float


class GrowingFile:
    """A video being spooled to `path`: `written` bytes are on disk so far; read it with `chunks()`."""

    def __init__(
        self, path: Path, info: StreamInfo, limit: int | None = None, *, post: Post | None = None
    ) -> None:
        self.path = path
        self.info = info
        self.limit = limit
        self.post = post  # what the backend knows of the post already, for the caption
        self.written = 0
        self.complete = False
        self.error: BaseException | None = None
        self._changed = asyncio.Event()

    @property
    def size(self) -> int | None:
        """The final size when known up front."""
        return self.info.size

    @property
    def settled(self) -> bool:
        """Whether the download behind it is over (complete or failed)."""
        return self.complete or self.error is not None

    def advance(self, written: int) -> None:
        """The writer has `written` bytes on disk (flushed)."""
        if written != self.written:
            self.written = written
            self._changed.set()

    def finish(self) -> None:
        """The download succeeded: every byte is on disk."""
        if not self.settled:
            self.complete = True
            self._changed.set()

    def fail(self, error: BaseException) -> None:
        """The download failed: readers raise StreamAborted instead of ending the body."""
        if not self.settled:
            self.error = error
            self._changed.set()

    async def chunks(self, chunk_size: int = READ_CHUNK) -> AsyncIterator[bytes]:
        """The file's bytes as they land; StreamAborted if the download fails before the end."""
        # Reads come from the page cache the writer just filled: cheaper in the loop than a thread hop each.
        fd = os.open(self.path, os.O_RDONLY)
        try:
            offset = 0
            while True:
                # The last byte waits for the verdict on the whole download.
                ready = self.written if self.complete else self.written - 1
                if offset < ready:
                    data = os.pread(fd, min(chunk_size, ready - offset), offset)
                    if not data:
                        raise StreamAborted(f"the spool shrank at {offset} bytes", upstream="spool")
                    offset += len(data)
                    yield data
                    continue
                if self.error is not None:
                    error = self.error
                    raise StreamAborted(f"the download failed: {error}", upstream="spool") from error
                if self.complete:
                    if self.size is not None and offset != self.size:
                        raise TruncatedStream(
                            f"the download ended at {offset} of {self.size} bytes", upstream="spool"
                        )
                    return
                self._changed.clear()
                await self._changed.wait()
        finally:
            os.close(fd)


Announce = Callable[[GrowingFile], None]

# Set by the download service around one backend attempt; backends that can tell a video early call it.
_announce: ContextVar[Announce | None] = ContextVar("growing_announce", default=None)


def announce(growing: GrowingFile) -> bool:
    """Offer a growing video to whoever asked for early streams; whether anyone did."""
    listener = _announce.get()
    if listener is None:
        return False
    listener(growing)
    return True


def wants_streams() -> bool:
    """Whether the current download attempt has a listener for early streams."""
    return _announce.get() is not None


def listen(listener: Announce | None) -> object:
    """Route announcements of the current context to `listener`; returns a token for `unlisten`."""
    return _announce.set(listener)


def unlisten(token: object) -> None:
    """Undo `listen`."""
    _announce.reset(token)  # type: ignore[arg-type]
