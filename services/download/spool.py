"""Spooling a stream to a temporary file while counting bytes and enforcing a size limit."""

from __future__ import annotations

import re
from pathlib import Path
from typing import BinaryIO

from services.download.growing import GrowingFile, StreamAborted, StreamInfo, announce, wants_streams
from services.download.models import Progress
from services.errors import TooLarge
from services.metadata.models import Post


class Meter:
    """Counts the bytes of one backend attempt and reports them to an optional progress callback."""

    def __init__(self, progress: Progress | None = None) -> None:
        self._progress = progress
        self.received = 0
        self.expected: int | None = None

    def expect(self, more: int | None) -> None:
        """Add a file's announced length to the expected total (unknown stays unknown)."""
        if more is None:
            return
        self.expected = (self.expected or 0) + more

    def add(self, count: int) -> None:
        """Count received bytes."""
        self.received += count
        if self._progress is not None:
            self._progress(self.received, self.expected)


WRITE_BUFFER = 256 * 1024


class Spool:
    """A file being written from a stream; TooLarge as soon as it would pass `limit` bytes."""

    def __init__(self, path: Path, limit: int | None, meter: Meter | None = None) -> None:
        self.path = path
        self.limit = limit
        self.size = 0
        self._meter = meter
        # Small synchronous writes land in the page cache; a thread hop per 64 KiB chunk would cost more. The
        # buffer gathers the parser's ~16 KiB pieces into fewer write calls: half the time for a 20 MB video.
        self._file: BinaryIO | None = path.open("xb", buffering=WRITE_BUFFER)
        self.growing: GrowingFile | None = None
        self._flushed = 0

    def offer(self, info: StreamInfo, post: Post | None = None) -> GrowingFile | None:
        """Offer this spool as a growing file to a listening upload (see services.download.growing)."""
        if self.growing is None and self._file is not None and wants_streams():
            self._file.flush()
            growing = GrowingFile(self.path, info, self.limit, post=post)
            growing.advance(self.size)
            self._flushed = self.size
            if announce(growing):
                self.growing = growing
        return self.growing

    def write(self, data: bytes) -> None:
        """Append bytes, refusing to pass the limit."""
        if self._file is None:
            raise ValueError("write to a closed spool")
        size = self.size + len(data)
        if self.limit is not None and size > self.limit:
            error = TooLarge(size=size, limit=self.limit)
            self.abort(error)
            raise error
        self._file.write(data)
        self.size = size
        if self.growing is not None and size - self._flushed >= WRITE_BUFFER:
            # A reader follows the file on disk: hand it what the buffer holds, a buffer's worth at a time.
            self._file.flush()
            self._flushed = size
            self.growing.advance(size)
        if self._meter is not None:
            self._meter.add(len(data))

    def finish(self) -> int:
        """Close the file and return its size."""
        if self._file is not None:
            self._file.close()
            self._file = None
            if self.growing is not None:
                self.growing.advance(self.size)
        return self.size

    def abort(self, error: BaseException | None = None) -> None:
        """Close and delete the file; a reader following it is told the download failed."""
        if self.growing is not None:
            self.growing.fail(error or StreamAborted("the spool was abandoned", upstream="spool"))
        self.finish()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if isinstance(exc, BaseException):
            self.abort(exc)
        else:
            self.finish()


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(name: str, default: str) -> str:
    """A file name safe to create in our directory: no path parts, no odd characters, not too long."""
    base = _UNSAFE.sub("_", name.replace("\\", "/").rsplit("/", 1)[-1]).strip("._")
    return base[-80:] or default
