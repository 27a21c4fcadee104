"""The spool directory tree: the bot's own sub-directory of the temp root, one directory per process.

`<base>/tiktok-bot/<pid>/` holds this process's spool directories. At start-up `clear_stale` removes what
processes that are gone left behind (a SIGKILL skips every `finally`), and never touches a live process's
directory — two bots may share a temp dir. Nothing outside `<base>/tiktok-bot` is ever removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

SPOOL_DIR_NAME = "tiktok-bot"


def spool_root(base: Path | None) -> Path:
    """The bot's own directory under `base` (the system temp dir when None)."""
    return (base if base is not None else Path(tempfile.gettempdir())) / SPOOL_DIR_NAME


def process_spool(root: Path) -> Path:
    """This process's spool directory under `root`."""
    return root / str(os.getpid())


def _alive(name: str) -> bool:
    """Whether `name` is the pid of another live process (this one's own leftovers are stale at start-up)."""
    if not name.isdigit() or int(name) == os.getpid():
        return False
    try:
        os.kill(int(name), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def _size(path: Path) -> int:
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def clear_stale(root: Path) -> tuple[int, int]:
    """Remove spool files and directories of processes that are gone; return (entries removed, bytes)."""
    if not root.is_dir():
        return 0, 0
    removed = freed = 0
    for child in root.iterdir():
        if _alive(child.name):
            continue
        with contextlib.suppress(OSError):
            freed += _size(child)
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
        removed += 1
    return removed, freed


def remove_own(root: Path) -> None:
    """Remove this process's spool directory (a clean shutdown), and the root if nothing else is left."""
    shutil.rmtree(process_spool(root), ignore_errors=True)
    with contextlib.suppress(OSError):  # another process's directory is still there
        root.rmdir()
