"""The spool tree: the bot's own directory, per-process sub-directories, stale ones removed at start-up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from services.download.spool_root import clear_stale, process_spool, remove_own, spool_root


def test_the_root_is_the_bots_own_directory(tmp_path: Path) -> None:
    assert spool_root(tmp_path) == tmp_path / "tiktok-bot"
    assert spool_root(None).name == "tiktok-bot"
    assert process_spool(tmp_path) == tmp_path / str(os.getpid())


def test_clear_stale_removes_dead_processes_leftovers_and_keeps_live_ones(tmp_path: Path) -> None:
    root = spool_root(tmp_path)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        for pid in (dead.pid, sleeper.pid, os.getpid()):
            spool = root / str(pid) / "tiktok-bot-ttsave-x"
            spool.mkdir(parents=True)
            (spool / "01-video.mp4").write_bytes(b"v" * 1000)
        (root / "stray.part").write_bytes(b"s" * 10)
        (tmp_path / "someone-elses.tmp").write_bytes(b"keep")
        removed, freed = clear_stale(root)
        # This process's own directory is stale at start-up too: nothing of this run exists yet.
        assert removed == 3
        assert freed == 2010
        assert [p.name for p in root.iterdir()] == [str(sleeper.pid)]
        assert (tmp_path / "someone-elses.tmp").exists()  # outside the bot's directory: never touched
    finally:
        sleeper.kill()
        sleeper.wait()


def test_clear_stale_without_a_root_does_nothing(tmp_path: Path) -> None:
    assert clear_stale(tmp_path / "missing") == (0, 0)


def test_remove_own_leaves_other_processes_alone(tmp_path: Path) -> None:
    root = spool_root(tmp_path)
    (process_spool(root) / "d").mkdir(parents=True)
    (root / "1234567").mkdir()
    remove_own(root)
    assert [p.name for p in root.iterdir()] == ["1234567"]
    (root / "1234567").rmdir()
    remove_own(root)
    assert not root.exists()
