"""Benchmark: our multipart parser vs python-multipart, and memory while downloading a 64 MB video.

1. Parser throughput: the same 50 MB body (a TTSave-like stream: a video, three images, a sound) fed in
   64 KiB chunks to `services.download.multipart.MultipartParser` and to python-multipart's streaming
   `MultipartParser`; best of several rounds, MiB/s of each and the ratio. A second body of 1,000 small
   parts shows the per-part cost.
2. Peak memory while one backend downloads the catalogue's 64 MB rendition from the emulators (run in a
   subprocess, so their buffers do not count): Python heap (tracemalloc) and resident set, above idle.

Run: `.venv/bin/python bench/multipart.py` (add `--quick` for fewer rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from python_multipart.multipart import MultipartParser as BaselineParser

from services.download.models import Want
from services.download.multipart import MultipartParser, PartData
from services.download.service import DownloadService, build_backends
from services.http import HttpOptions, make_client, parse_routes
from services.links import LinkKind, TikTokLink, canonical_post_url

BOUNDARY = "ttsave_boundary_7MA4YWxkTrZu0gW"
CHUNK = 64 * 1024
MB = 1000 * 1000
MiB = 1024 * 1024


def body_of(parts: list[tuple[str, str, int]], rng: random.Random) -> bytes:
    """A multipart/x-mixed-replace body with random data for each (content type, filename, size)."""
    out = bytearray()
    for index, (ctype, name, size) in enumerate(parts):
        out += (b"\r\n" if index else b"") + f"--{BOUNDARY}\r\n".encode()
        out += f'Content-Type: {ctype}\r\nContent-Disposition: attachment; filename="{name}"\r\n\r\n'.encode()
        out += rng.randbytes(size)
    out += f"\r\n--{BOUNDARY}--\r\n".encode()
    return bytes(out)


def ours(chunks: list[bytes]) -> int:
    parser = MultipartParser(BOUNDARY, max_parts=10_000)
    received = 0
    for chunk in chunks:
        for event in parser.feed(chunk):
            if type(event) is PartData:
                received += len(event.data)
    parser.close()
    return received


def baseline(chunks: list[bytes]) -> int:
    received = 0

    def on_part_data(data: bytes, start: int, end: int) -> None:
        nonlocal received
        received += end - start

    parser = BaselineParser(BOUNDARY, {"on_part_data": on_part_data})
    for chunk in chunks:
        parser.write(chunk)
    parser.finalize()
    return received


def best_rate(parse: Callable[[list[bytes]], int], chunks: list[bytes], size: int, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        gc.collect()
        started = time.perf_counter()
        parse(chunks)
        times.append(time.perf_counter() - started)
    return size / min(times) / MiB


def parser_figures(rounds: int) -> None:
    rng = random.Random(2026)
    video = 50 * MB - 3 * 120_000 - 60_000 - 600  # the whole body comes to 50 MB
    shapes = {
        "50 MB TTSave-like body (5 parts)": [
            ("video/mp4", "video.mp4", video),
            *[("image/jpeg", f"image_{i}.jpg", 120_000) for i in (1, 2, 3)],
            ("audio/mpeg", "audio.mp3", 60_000),
        ],
        "50 MB of 1,000 parts (50 kB each)": [("image/jpeg", f"p{i}.jpg", 50_000) for i in range(1000)],
    }
    print(f"Parser throughput, 64 KiB chunks, best of {rounds} rounds")
    print(f"{'body':<36} {'ours MiB/s':>11} {'python-multipart':>17} {'ratio':>7}")
    for label, parts in shapes.items():
        body = body_of(parts, rng)
        chunks = [body[i : i + CHUNK] for i in range(0, len(body), CHUNK)]
        expected = sum(size for _, _, size in parts)
        assert ours(chunks) == expected and baseline(chunks) == expected, "parsers disagree"
        rates = {"ours": 0.0, "baseline": 0.0}
        for _ in range(2):  # alternate, so neither parser always runs on a warmer machine
            rates["ours"] = max(rates["ours"], best_rate(ours, chunks, len(body), rounds))
            rates["baseline"] = max(rates["baseline"], best_rate(baseline, chunks, len(body), rounds))
        ratio = rates["ours"] / rates["baseline"]
        print(f"{label:<36} {rates['ours']:>11.0f} {rates['baseline']:>17.0f} {ratio:>6.2f}x")


# --- memory while downloading ---


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


class RssPeak:
    """Samples the resident set every millisecond in a thread."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss())
            time.sleep(0.001)

    def __enter__(self) -> RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())


def start_sandbox(directory: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    env_file = directory / "sandbox.env"
    server = subprocess.Popen(
        [sys.executable, "-m", "bot", "sandbox", "--env-file", str(env_file)],
        cwd=directory,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    for line in server.stdout:
        if line.strip() == "sandbox ready":
            break
    else:
        raise RuntimeError("the sandbox did not start")
    return server, dict(line.split("=", 1) for line in env_file.read_text().splitlines())


async def memory_figures() -> None:
    from sandbox.catalogue import T0, post_id_at  # the bench's only use of the sandbox package

    big = post_id_at(T0 + 86_400, 2)
    clip = post_id_at(T0, 1)
    with tempfile.TemporaryDirectory() as scratch:
        server, env = start_sandbox(Path(scratch))
        try:
            routes = parse_routes(env["UPSTREAM_ROUTES"])
            async with (
                make_client(routes=routes, browser=True) as tiktok,
                make_client(options=HttpOptions(read_timeout=60)) as ttsave,
            ):
                print("\nPeak memory while downloading the 64 MB rendition (above idle)")
                print(f"{'backend':<8} {'seconds':>8} {'MB/s':>7} {'heap peak':>11} {'RSS peak':>10}")
                for name in ("ttsave", "web"):
                    backends = build_backends(
                        [name], tiktok_client=tiktok, ttsave_client=ttsave, ttsave_url=env["TTSAVE__URL"]
                    )
                    service = DownloadService(backends, temp_root=Path(scratch))
                    for post_id in (clip, big):  # warm up: imports, connection pools, page cache
                        async with await service.fetch(_link(post_id), Want.VIDEO):
                            pass
                    gc.collect()
                    idle = rss()
                    tracemalloc.start()
                    base = tracemalloc.get_traced_memory()[0]
                    with RssPeak() as sampled:
                        started = time.perf_counter()
                        async with await service.fetch(_link(big), Want.VIDEO) as media:
                            seconds = time.perf_counter() - started
                            size = media.files[0].size
                    heap = tracemalloc.get_traced_memory()[1] - base
                    tracemalloc.stop()
                    print(
                        f"{name:<8} {seconds:>8.2f} {size / MB / seconds:>7.0f} {heap / MiB:>8.2f} MiB"
                        f" {(sampled.peak - idle) / MiB:>6.1f} MiB"
                    )
                    await service.aclose()
        finally:
            server.terminate()
            server.wait(10)


def _link(post_id: str) -> TikTokLink:
    return TikTokLink(LinkKind.POST, canonical_post_url(post_id), post_id=post_id)


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    options.add_argument("--quick", action="store_true", help="fewer rounds")
    args = options.parse_args()
    parser_figures(rounds=3 if args.quick else 7)
    asyncio.run(memory_figures())


if __name__ == "__main__":
    main()
