"""Spooling a stream to a temporary file while counting bytes and enforcing a size limit.

The spool is where the bot meets its own disk: every OSError from its files (ENOSPC, EMFILE, EROFS, EACCES...)
leaves it as a LocalResourceError, and a file of known size is refused before a byte is fetched when the
directory has no room for it.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

from services.download.growing import GrowingFile, StreamAborted, StreamInfo, announce, wants_streams
from services.download.models import Progress
from services.errors import LocalReason, LocalResourceError, TooLarge
from services.metadata.models import Post


def ensure_room(directory: Path, size: int | None) -> None:
    """Raise LocalResourceError(disk_full) if `directory` has fewer than `size` bytes free (None: unknown)."""
    if not size:
        return
    with local_errors(f"checking free space in {directory}"):
        free = shutil.disk_usage(directory).free
    if free < size:
        raise LocalResourceError(
            LocalReason.DISK_FULL,
            f"{directory} has {free} bytes free, the file needs {size}",
            path=str(directory),
        )


@contextmanager
def local_errors(what: str) -> Iterator[None]:
    """Turn an OSError from our own files into a LocalResourceError naming `what` was being done."""
    try:
        yield
    except OSError as exc:
        raise LocalResourceError.from_os_error(exc, what) from exc


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

    def __init__(
        self, path: Path, limit: int | None, meter: Meter | None = None, *, expected: int | None = None
    ) -> None:
        self.path = path
        self.limit = limit
        self.size = 0
        self._meter = meter
        ensure_room(path.parent, expected)
        # Small synchronous writes land in the page cache; a thread hop per 64 KiB chunk would cost more. The
        # buffer gathers the parser's ~16 KiB pieces into fewer write calls: half the time for a 20 MB video.
        with local_errors(f"creating {path.name}"):
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
        try:
            self._file.write(data)
        except OSError as exc:
            local = LocalResourceError.from_os_error(exc, f"writing {self.path.name}")
            self.abort(local)
            raise local from exc
        self.size = size
        if self.growing is not None and size - self._flushed >= WRITE_BUFFER:
            # A reader follows the file on disk: hand it what the buffer holds, a buffer's worth at a time.
            self._file.flush()
            self._flushed = size
            self.growing.advance(size)
        if self._meter is not None:
            self._meter.add(len(data))

    def finish(self) -> int:
        """Close the file (flushing its buffer) and return its size."""
        if self._file is not None:
            file, self._file = self._file, None
            try:
                file.close()
            except OSError as exc:
                self.path.unlink(missing_ok=True)
                local = LocalResourceError.from_os_error(exc, f"closing {self.path.name}")
                if self.growing is not None:
                    self.growing.fail(local)
                raise local from exc
            if self.growing is not None:
                self.growing.advance(self.size)
        return self.size

    def abort(self, error: BaseException | None = None) -> None:
        """Close and delete the file, whatever state the disk is in; a reader following it is told."""
        if self.growing is not None:
            self.growing.fail(error or StreamAborted("the spool was abandoned", upstream="spool"))
        file, self._file = self._file, None
        # Best effort: the buffer may not flush and the directory may refuse the unlink (the very failure
        # being handled); the file object closes its descriptor either way.
        with suppress(OSError):
            if file is not None:
                file.close()
        with suppress(OSError):
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
