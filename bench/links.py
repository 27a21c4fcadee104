"""Benchmark find_links on large and hostile chat text; prints the median time of each case."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable

from services.links import find_links

MB = 1_000_000


def chat_megabyte() -> str:
    """1 MB of ordinary chat words with a TikTok link every ~10 KB."""
    rng = random.Random(1)
    words = ["lorem", "ipsum", "смотри", "これ", "link:", "(see)", "https://example.com/x", "tiktok"]
    parts: list[str] = []
    size = 0
    while size < MB:
        word = rng.choice(words)
        if rng.random() < 0.0008:
            word = f"https://www.tiktok.com/@user.name/video/{rng.randrange(10**18, 10**19)}?lang=en."
        parts.append(word)
        size += len(word) + 1
    return " ".join(parts)[:MB]


CASES: list[tuple[str, Callable[[], str], int]] = [
    ("1 MB chat text, links sprinkled (limit 5)", chat_megabyte, 5),
    ("1 MB chat text, links sprinkled (no limit)", chat_megabyte, 10**9),
    ("1 MB binary garbage", lambda: random.Random(2).randbytes(MB).decode("latin-1"), 5),
    ("1 MB one huge URL token", lambda: "https://www.tiktok.com/@" + "a" * MB, 5),
    (
        "1 MB of 'https://tiktok.com/x ' (worst case: every hit judged)",
        lambda: "https://tiktok.com/x " * 50_000,
        5,
    ),
    ("1 MB of look-alikes", lambda: "faketiktok.com/@a/video/1 " * 40_000, 5),
    (
        "10,000 post links (limit 5)",
        lambda: " ".join(f"https://www.tiktok.com/@u/video/{i}" for i in range(10_000)),
        5,
    ),
    (
        "10,000 post links (no limit)",
        lambda: " ".join(f"https://www.tiktok.com/@u/video/{i}" for i in range(10_000)),
        10**9,
    ),
    ("10,000 copies of one short link", lambda: " ".join(["https://vm.tiktok.com/ZMabc/"] * 10_000), 5),
]


def main() -> None:
    """Time every case a few times and print the median."""
    print("find_links benchmark (median of 5 runs)")
    for name, make, limit in CASES:
        text = make()
        times = []
        found = 0
        for _ in range(5):
            started = time.perf_counter()
            found = len(find_links(text, limit=limit))
            times.append(time.perf_counter() - started)
        median_ms = statistics.median(times) * 1000
        print(f"  {name:<66} {median_ms:8.1f} ms  ({len(text) / MB:.2f} MB, {found} links)")


if __name__ == "__main__":
    main()
