"""MP4 probing: dimensions and duration from box headers, wherever the moov box sits; never an error."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.catalogue import MEDIA_DIR
from services.download.probe import VideoInfo, probe_mp4


def box(kind: bytes, body: bytes, *, large: bool = False) -> bytes:
    if large:
        return struct.pack(">I4sQ", 1, kind, len(body) + 16) + body
    return struct.pack(">I4s", len(body) + 8, kind) + body


def mvhd(timescale: int, duration: int, version: int = 0) -> bytes:
    if version == 1:
        return box(b"mvhd", bytes([1, 0, 0, 0]) + struct.pack(">QQIQ", 0, 0, timescale, duration) + bytes(80))
    return box(b"mvhd", bytes(4) + struct.pack(">IIII", 0, 0, timescale, duration) + bytes(80))


def tkhd(width: int, height: int, version: int = 0) -> bytes:
    head = bytes([version, 0, 0, 3])
    fixed = (88 if version == 1 else 76) - 4
    return box(b"tkhd", head + bytes(fixed) + struct.pack(">II", width << 16, height << 16))


def trak(handler: bytes, width: int, height: int, version: int = 0) -> bytes:
    hdlr = box(b"hdlr", bytes(8) + handler + bytes(12))
    return box(b"trak", tkhd(width, height, version) + box(b"mdia", hdlr + box(b"minf", b"")))


def mp4(*, moov_last: bool = False, version: int = 0, large_mdat: bool = False) -> bytes:
    ftyp = box(b"ftyp", b"isom\x00\x00\x02\x00isomiso2avc1mp41")
    moov = box(
        b"moov",
        mvhd(1000, 12_500, version) + trak(b"soun", 0, 0, version) + trak(b"vide", 720, 1280, version),
    )
    mdat = box(b"mdat", bytes(5000), large=large_mdat)
    return ftyp + (mdat + moov if moov_last else moov + mdat)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (mp4(), VideoInfo(720, 1280, 12.5)),
        (mp4(moov_last=True), VideoInfo(720, 1280, 12.5)),
        (mp4(moov_last=True, large_mdat=True), VideoInfo(720, 1280, 12.5)),
        (mp4(version=1), VideoInfo(720, 1280, 12.5)),
        (
            box(b"ftyp", b"isom") + box(b"moov", mvhd(600, 1200) + trak(b"soun", 0, 0)),
            VideoInfo(None, None, 2.0),
        ),
        (mp4()[:40], VideoInfo()),  # cut inside the moov box
        (b"", VideoInfo()),
        (b"\xff\xd8\xff\xe0 not a video at all", VideoInfo()),
        (struct.pack(">I4s", 4, b"moov"), VideoInfo()),  # a box smaller than its header
    ],
    ids=[
        "moov-first",
        "moov-last",
        "64-bit-mdat",
        "version-1",
        "audio-only",
        "truncated",
        "empty",
        "jpeg",
        "bad",
    ],
)
def test_probe_table(tmp_path: Path, data: bytes, expected: VideoInfo) -> None:
    path = tmp_path / "v.mp4"
    path.write_bytes(data)
    assert probe_mp4(path) == expected


def test_the_sandbox_clip() -> None:
    assert probe_mp4(MEDIA_DIR / "clip.mp4") == VideoInfo(320, 568, 3.0)


def test_missing_file() -> None:
    assert probe_mp4(Path("/nonexistent/file.mp4")) == VideoInfo()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400), st.integers(min_value=0, max_value=400))
def test_never_raises(tmp_path_factory: pytest.TempPathFactory, noise: bytes, cut: int) -> None:
    path = tmp_path_factory.mktemp("probe") / "x.mp4"
    path.write_bytes((mp4() + noise)[: cut + len(noise)] if cut % 2 else noise + mp4())
    info = probe_mp4(path)
    assert info.width is None or info.width >= 0
