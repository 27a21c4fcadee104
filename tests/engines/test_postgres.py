"""The PostgreSQL fixture: a real server on loopback that never outlives the process that started it."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import asyncpg
import pytest

from tests.engines.postgres import PostgresServer, postgres_bin

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import sys, time
from pathlib import Path
from tests.engines.postgres import running_postgres

with running_postgres(Path(sys.argv[1])) as server:
    print(server.pid, server.port, server.root, flush=True)
    time.sleep(600)
"""


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for a reaper."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


async def test_server_answers_on_loopback(postgres_server: PostgresServer) -> None:
    assert postgres_server.host == "127.0.0.1" and int(postgres_server.version) >= 15
    conn = await asyncpg.connect(postgres_server.url())
    try:
        assert await conn.fetchval("SELECT 1 + 1") == 2
        assert await conn.fetchval("SHOW listen_addresses") == "127.0.0.1"
    finally:
        await conn.close()


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
async def test_no_server_outlives_a_killed_test_process() -> None:
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL binaries")
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        str(bin_dir),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert child.stdout is not None
    line = await asyncio.wait_for(child.stdout.readline(), 60)
    pid, port, root = line.decode().split()
    try:
        conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres")
        await conn.close()
        assert alive(int(pid))
        child.send_signal(signal.SIGKILL)  # no finally, no atexit: only the kernel can stop the server now
        await child.wait()
        deadline = time.monotonic() + 30
        while alive(int(pid)):
            assert time.monotonic() < deadline, "postgres outlived the process that started it"
            await asyncio.sleep(0.05)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
        if alive(int(pid)):
            os.kill(int(pid), signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)
