"""Read a video's width, height and duration from its MP4 boxes, for backends that do not say them.

Only the box headers are read: top-level boxes are skipped by seeking, and the `moov` box (a few KB to a few
hundred KB, wherever it sits in the file) is the only one read whole, up to a bound.

Written here rather than taken from a library: three numbers from two boxes (`mvhd`, `tkhd`) with bounded
reads of a file that may still be growing. ffprobe and pymediainfo need a binary or native library that a
plain `pip install` does not bring; mutagen reads an MP4's duration and tags but not the video's size;
general box parsers (pymp4) parse whole boxes from a stream with no bound on what they read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

MAX_MOOV = 8 * 1024 * 1024  # a moov larger than this is not worth reading for three numbers
MAX_LEADING = 2 * 1024 * 1024  # how far into a stream to look for a leading moov before giving up
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts"}


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What the container says about the video: pixels and seconds, None where it does not say."""

    width: int | None = None
    height: int | None = None
    duration: float | None = None


def _boxes(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[bytes, int, int]]:
    """(type, body start, body end) of each box between `start` and `end` of `data`."""
    end = len(data) if end is None else end
    found = []
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1 and pos + 16 <= end:
            size = struct.unpack_from(">Q", data, pos + 8)[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            break
        found.append((kind, pos + header, pos + size))
        pos += size
    return found


def _find_moov(stream: BinaryIO, file_size: int) -> bytes | None:
    pos = 0
    while pos + 8 <= file_size:
        stream.seek(pos)
        head = stream.read(16)
        if len(head) < 8:
            return None
        size, kind = struct.unpack_from(">I4s", head)
        header = 8
        if size == 1:
            if len(head) < 16:
                return None
            size, header = struct.unpack_from(">Q", head, 8)[0], 16
        elif size == 0:
            size = file_size - pos
        if size < header:
            return None
        if kind == b"moov":
            if size > MAX_MOOV:
                return None
            stream.seek(pos)
            return stream.read(size)
        pos += size
    return None


def _parse_moov(moov: bytes) -> VideoInfo:
    width = height = None
    duration = None
    top = _boxes(moov)
    if not top or top[0][0] != b"moov":
        return VideoInfo()
    _, start, end = top[0]
    for kind, body, stop in _boxes(moov, start, end):
        if kind == b"mvhd" and stop - body >= 20:
            version = moov[body]
            if version == 1 and stop - body >= 32:
                timescale, length = struct.unpack_from(">IQ", moov, body + 20)
            else:
                timescale, length = struct.unpack_from(">II", moov, body + 12)
            if timescale:
                duration = length / timescale
        elif kind == b"trak":
            track = _track(moov, body, stop)
            if track is not None and width is None:
                width, height = track
    return VideoInfo(width, height, duration)


def _track(data: bytes, start: int, end: int) -> tuple[int, int] | None:
    """A video track's (width, height) from its `tkhd`, if the track is video and says so."""
    size: tuple[int, int] | None = None
    is_video = False
    stack = [(start, end)]
    while stack:
        lo, hi = stack.pop()
        for kind, body, stop in _boxes(data, lo, hi):
            if kind == b"tkhd" and stop - body >= 84:
                version = data[body]
                offset = body + (88 if version == 1 else 76)
                if offset + 8 <= stop:
                    w, h = struct.unpack_from(">II", data, offset)
                    size = (w >> 16, h >> 16)
            elif kind == b"hdlr" and stop - body >= 12:
                is_video = data[body + 8 : body + 12] == b"vide"
            elif kind in _CONTAINERS:
                stack.append((body, stop))
    if is_video and size and size[0] and size[1]:
        return size
    return None


def probe_mp4(path: Path) -> VideoInfo:
    """Width, height and duration of an MP4 file; an unreadable file gives an empty VideoInfo."""
    try:
        with path.open("rb") as stream:
            moov = _find_moov(stream, path.stat().st_size)
        return _parse_moov(moov) if moov else VideoInfo()
    except (OSError, struct.error, IndexError):
        return VideoInfo()


NOT_LEADING = VideoInfo()


def probe_leading(prefix: bytes | bytearray) -> VideoInfo | None:
    """What the leading `moov` of a stream's first bytes says: None until the moov is whole, NOT_LEADING
    (nothing known) when media data or too many bytes come first."""
    data = prefix  # not copied: called again as the prefix grows
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if pos + 16 > len(data):
                return None
            size, header = struct.unpack_from(">Q", data, pos + 8)[0], 16
        if kind == b"mdat" or size < header or pos + size > MAX_LEADING:
            return NOT_LEADING
        if kind == b"moov":
            if pos + size > len(data):
                return None
            try:
                return _parse_moov(bytes(data[pos : pos + size]))
            except (struct.error, IndexError):
                return NOT_LEADING
        pos += size
    return None if len(data) < MAX_LEADING else NOT_LEADING
