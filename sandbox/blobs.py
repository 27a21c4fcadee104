"""Media bytes the emulators serve: the small committed files, or large ones synthesised on the fly."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

from sandbox.catalogue import MEDIA_DIR

BLOCK = 64 * 1024


@lru_cache(maxsize=32)
def _block(seed: str) -> bytes:
    """64 KiB of deterministic, incompressible bytes for one seed."""
    out = bytearray()
    counter = 0
    while len(out) < BLOCK:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:BLOCK])


@lru_cache(maxsize=16)
def media_file(name: str) -> bytes:
    """A committed file under sandbox/media (all are small)."""
    return (MEDIA_DIR / name).read_bytes()


@dataclass(frozen=True, slots=True)
class Blob:
    """Bytes to serve: a committed file, or `size` synthesised bytes (a 64 KiB block repeated)."""

    size: int
    file: str | None = None
    seed: str = ""

    @classmethod
    def of_file(cls, name: str) -> Blob:
        """A committed media file."""
        return cls(len(media_file(name)), file=name)

    @classmethod
    def synthetic(cls, seed: str, size: int) -> Blob:
        """`size` deterministic bytes, never held in memory whole."""
        return cls(size, seed=seed)

    def chunks(self, start: int = 0, end: int | None = None, chunk_size: int = BLOCK) -> Iterator[bytes]:
        """The bytes [start, end) in pieces of at most `chunk_size`."""
        stop = self.size if end is None else min(end, self.size)
        if self.file is not None:
            data = media_file(self.file)
            for offset in range(start, stop, chunk_size):
                yield data[offset : min(offset + chunk_size, stop)]
            return
        block = _block(self.seed)
        offset = start
        while offset < stop:
            within = offset % BLOCK
            take = min(chunk_size, BLOCK - within, stop - offset)
            yield block if take == BLOCK else block[within : within + take]
            offset += take

    def sha256(self) -> str:
        """The SHA-256 of the whole content (for tests to check what arrived)."""
        digest = hashlib.sha256()
        for chunk in self.chunks():
            digest.update(chunk)
        return digest.hexdigest()


class Pace:
    """Holds a sender to `mibps` MiB/s on average (None: as fast as it can), like a network link would."""

    def __init__(self, mibps: float | None) -> None:
        self._rate = mibps * 1024 * 1024 if mibps else None
        self._start = time.monotonic()
        self._sent = 0

    async def sent(self, count: int) -> None:
        """Count bytes just sent; sleep until the rate allows the next ones."""
        if self._rate is None:
            return
        self._sent += count
        delay = self._start + self._sent / self._rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
