"""The growing spool: a reader follows the writer, never ends early, and fails when the download does."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sandbox.blobs import Blob, mp4_head
from services.download.growing import GrowingFile, StreamAborted, StreamInfo, listen, unlisten
from services.download.probe import NOT_LEADING, probe_leading
from services.download.spool import WRITE_BUFFER, Spool
from services.errors import TooLarge


async def read_all(growing: GrowingFile, into: list[bytes]) -> None:
    async for chunk in growing.chunks(64 * 1024):
        into.append(chunk)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_reader_follows_the_spool_and_waits_for_the_verdict(tmp_path: Path) -> None:
    offered: list[GrowingFile] = []
    token = listen(offered.append)
    try:
        spool = Spool(tmp_path / "v.mp4", None)
        spool.write(b"a" * 10)
        growing = spool.offer(StreamInfo(3 * WRITE_BUFFER + 10, "video/mp4", 720, 1280, 10.0))
    finally:
        unlisten(token)
    assert offered == [growing] and growing is not None
    got: list[bytes] = []
    reader = asyncio.create_task(read_all(growing, got))
    await settle()
    assert sum(map(len, got)) == 9  # everything on disk but the last byte
    spool.write(b"b" * 3 * WRITE_BUFFER)
    await settle()
    assert sum(map(len, got)) == 3 * WRITE_BUFFER + 9  # flushed a buffer at a time, last byte held
    spool.finish()
    await settle()
    assert not reader.done()  # every byte is on disk, but the download has not been declared good
    growing.finish()
    await reader
    assert b"".join(got) == b"a" * 10 + b"b" * 3 * WRITE_BUFFER


async def test_a_failed_download_fails_the_reader(tmp_path: Path) -> None:
    token = listen(lambda growing: None)
    try:
        spool = Spool(tmp_path / "v.mp4", 2 * WRITE_BUFFER)
        growing = spool.offer(StreamInfo(None, "video/mp4", 720, 1280, 10.0))
    finally:
        unlisten(token)
    assert growing is not None
    got: list[bytes] = []
    reader = asyncio.create_task(read_all(growing, got))
    spool.write(b"x" * WRITE_BUFFER)
    await settle()
    with pytest.raises(TooLarge):
        spool.write(b"x" * 2 * WRITE_BUFFER)  # the size limit, enforced while streaming
    with pytest.raises(StreamAborted):
        await reader
    assert isinstance(growing.error, TooLarge)
    assert sum(map(len, got)) < WRITE_BUFFER  # never the whole first buffer: its last byte was held


async def test_nobody_listening_means_no_stream(tmp_path: Path) -> None:
    with Spool(tmp_path / "v.mp4", None) as spool:
        assert spool.offer(StreamInfo(10, "video/mp4", 1, 1, 1.0)) is None


def test_leading_moov_read_from_any_prefix() -> None:
    blob = Blob.synthetic_mp4("probe", 500_000, 720, 1280, 10)
    data = b"".join(blob.chunks())
    head = len(mp4_head(500_000, 720, 1280, 10)) - 8  # up to the mdat header
    for cut in range(head + 1):
        info = probe_leading(bytearray(data[:cut]))
        if cut < head:
            assert info is None, cut  # the moov is not whole yet
        else:
            assert info is not None and (info.width, info.height, info.duration) == (720, 1280, 10.0)


def test_media_data_first_is_not_a_leading_moov() -> None:
    mdat_first = b"\x00\x00\x00\x10mdat" + bytes(8) + b"\x00\x00\x00\x08moov"
    assert probe_leading(bytearray(mdat_first)) is NOT_LEADING
    assert probe_leading(bytearray(b"\x00\x00\x00\x08fre")) is None
