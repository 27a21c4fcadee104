"""Media bytes the emulators serve: the small committed files, or large ones synthesised on the fly."""

from __future__ import annotations

import asyncio
import hashlib
import struct
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
    head: bytes = b""  # leading bytes (an MP4's boxes) before the synthesised ones

    @classmethod
    def of_file(cls, name: str) -> Blob:
        """A committed media file."""
        return cls(len(media_file(name)), file=name)

    @classmethod
    def synthetic(cls, seed: str, size: int) -> Blob:
        """`size` deterministic bytes, never held in memory whole."""
        return cls(size, seed=seed)

    @classmethod
    def synthetic_mp4(cls, seed: str, size: int, width: int, height: int, duration: float) -> Blob:
        """`size` bytes that start like a fast-start MP4 (ftyp, moov, then an mdat of synthesised bytes)."""
        head = mp4_head(size, width, height, duration)
        return cls(size, seed=seed, head=head) if size > len(head) else cls(size, seed=seed)

    def chunks(self, start: int = 0, end: int | None = None, chunk_size: int = BLOCK) -> Iterator[bytes]:
        """The bytes [start, end) in pieces of at most `chunk_size`."""
        stop = self.size if end is None else min(end, self.size)
        if self.file is not None:
            data = media_file(self.file)
            for offset in range(start, stop, chunk_size):
                yield data[offset : min(offset + chunk_size, stop)]
            return
        offset = start
        if offset < len(self.head):
            for piece in range(offset, min(stop, len(self.head)), chunk_size):
                yield self.head[piece : min(piece + chunk_size, stop, len(self.head))]
            offset = min(stop, len(self.head))
        base = _block(self.seed)
        while offset < stop:
            within = offset % BLOCK
            take = min(chunk_size, BLOCK - within, stop - offset)
            # Each 64 KiB block is made afresh as it is sent (the seed's block turned by its index), as a
            # server producing or reading its bytes would: the cost is the sender's; no two blocks repeat.
            turn = (offset // BLOCK) * 4099 % BLOCK
            block = base[turn:] + base[:turn]
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


def _box(kind: bytes, *body: bytes) -> bytes:
    payload = b"".join(body)
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def mp4_head(size: int, width: int, height: int, duration: float) -> bytes:
    """The first boxes of a fast-start MP4 of `size` bytes: ftyp, a moov with one video track, mdat's header.

    Enough for a reader of the `moov` (the bot's probe, a player's first look) to know pixels and seconds.
    """
    timescale = 1000
    length = round(duration * timescale)
    matrix = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    mvhd = _box(
        b"mvhd",
        struct.pack(">IIIII", 0, 0, 0, timescale, length),
        struct.pack(">IH10x", 0x10000, 0x100),
        matrix,
        bytes(24),
        struct.pack(">I", 2),
    )
    tkhd = _box(
        b"tkhd",
        struct.pack(">IIIII", 3, 0, 0, 1, 0),
        struct.pack(">I8xHHH2x", length, 0, 0, 0),
        matrix,
        struct.pack(">II", width << 16, height << 16),
    )
    hdlr = _box(b"hdlr", struct.pack(">II4s12x", 0, 0, b"vide"), b"VideoHandler\0")
    moov = _box(b"moov", mvhd, _box(b"trak", tkhd, _box(b"mdia", hdlr)))
    ftyp = _box(b"ftyp", b"isom", struct.pack(">I", 0x200), b"isomiso2avc1mp41")
    head = ftyp + moov
    return head + struct.pack(">I4s", size - len(head), b"mdat")
