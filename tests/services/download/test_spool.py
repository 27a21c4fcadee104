"""The spool at the file boundary: real ENOSPC, EROFS and EMFILE become LocalResourceError; the room check."""

from __future__ import annotations

import errno
import os
import resource
from pathlib import Path

import pytest

from services.download.spool import Spool, ensure_room
from services.errors import LocalReason, LocalResourceError, error_code
from tests.local_fs import tmpfs


def fill(spool: Spool, chunks: int) -> None:
    for _ in range(chunks):
        spool.write(b"x" * 16_384)
    spool.finish()


def test_a_full_disk_mid_write_is_disk_full_and_leaves_no_file(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "tiny", size="256k") as tiny:
        spool = Spool(tiny / "video.mp4", None)
        with pytest.raises(LocalResourceError) as caught:
            fill(spool, 64)  # 1 MiB into 256 KiB
        assert caught.value.reason is LocalReason.DISK_FULL
        assert error_code(caught.value) == "local:disk_full"
        assert isinstance(caught.value.__cause__, OSError) and caught.value.__cause__.errno == errno.ENOSPC
        assert list(tiny.iterdir()) == []


def test_a_read_only_spool_directory_is_read_only(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", read_only=True) as ro:
        with pytest.raises(LocalResourceError) as caught:
            Spool(ro / "video.mp4", None)
        assert caught.value.reason is LocalReason.READ_ONLY
        assert error_code(caught.value) == "local:read_only"


def test_no_file_handles_left_is_too_many_files(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowest_free = os.open(os.devnull, os.O_RDONLY)
    os.close(lowest_free)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))  # the next open has no descriptor left
    try:
        with pytest.raises(LocalResourceError) as caught:
            Spool(tmp_path / "video.mp4", None)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert caught.value.reason is LocalReason.TOO_MANY_FILES
    assert not (tmp_path / "video.mp4").exists()


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (errno.ENOSPC, LocalReason.DISK_FULL),
        (errno.EDQUOT, LocalReason.DISK_FULL),
        (errno.EFBIG, LocalReason.DISK_FULL),
        (errno.EMFILE, LocalReason.TOO_MANY_FILES),
        (errno.ENFILE, LocalReason.TOO_MANY_FILES),
        (errno.EROFS, LocalReason.READ_ONLY),
        (errno.EACCES, LocalReason.PERMISSION),
        (errno.EPERM, LocalReason.PERMISSION),
        (errno.EIO, LocalReason.IO),
    ],
)
def test_os_errors_by_errno(code: int, reason: LocalReason) -> None:
    error = LocalResourceError.from_os_error(OSError(code, os.strerror(code), "/spool/x"), "writing x")
    assert error.reason is reason and error.path == "/spool/x"
    assert error_code(error) == f"local:{reason.value}"
    assert errno.errorcode[code] in error.message


def test_room_is_checked_against_the_known_size(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "tiny", size="1m") as tiny:
        ensure_room(tiny, 512 * 1024)
        ensure_room(tiny, None)
        with pytest.raises(LocalResourceError) as caught:
            ensure_room(tiny, 3_000_000)
        assert caught.value.reason is LocalReason.DISK_FULL and "3000000" in caught.value.message
        with pytest.raises(LocalResourceError):
            Spool(tiny / "big.mp4", None, expected=3_000_000)
        assert list(tiny.iterdir()) == []  # refused before the file was even created
