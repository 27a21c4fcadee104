"""What both halves of the demo share: posts to paste, the outcome, the printer, usage rows, saved files."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from sandbox.catalogue import CATALOGUE, FixturePost, Status

STEP_TIMEOUT = 10.0  # seconds a step waits for each reply it expects
TEXT_LINES = 4  # lines of a text reply the transcript shows
MEDIA_ACTIONS = ("link", "audio", "download")


def _post(predicate: Callable[[FixturePost], bool]) -> FixturePost:
    return next(p for p in CATALOGUE.posts.values() if predicate(p))


CLIP = _post(lambda p: p.hashtags == ("pasta", "cooking"))  # 3 s, 45.8 kB
SLIDES = _post(lambda p: len(p.images) == 3)  # three photos and a sound
PRIVATE = _post(lambda p: p.status is Status.PRIVATE)
SHORT_LINK = "https://vm.tiktok.com/ZSbig0001/"  # the 4K kitchen tour: 64 MB at best, over Telegram's 50 MB


@dataclass(frozen=True, slots=True)
class Logged:
    """One usage-log row, as much of it as the transcript shows."""

    action: str
    outcome: str
    backend: str | None
    cache_hit: bool
    latency_ms: float
    bytes_sent: int


# (platform, user id) -> that user's usage rows, oldest first.
UsageReader = Callable[[str, int], Awaitable[Sequence[Logged]]]
RowCheck = Callable[[Logged], str | None]  # a problem with the row, or None


@dataclass(slots=True)
class Outcome:
    """How the script went: steps played (numbered across both halves), problems, files saved."""

    steps: int = 0
    failures: list[str] = field(default_factory=list)  # one line per problem
    failed_steps: set[int] = field(default_factory=set)
    saved: list[Path] = field(default_factory=list)


class Printer:
    """Writes the transcript: headings, who said what, and what the bot sent."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def line(self, text: str = "") -> None:
        """One line, flushed so a watcher sees the demo progress."""
        print(text, file=self.out, flush=True)

    def heading(self, text: str) -> None:
        """A section heading."""
        self.line()
        self.line(f"── {text} " + "─" * max(3, 100 - len(text)))


class Part:
    """One platform's half of the script: numbered steps, their usage rows, the files the chats received."""

    platform = ""

    def __init__(self, usage: UsageReader, out_dir: Path, printer: Printer, outcome: Outcome) -> None:
        self.usage = usage
        self.out_dir = out_dir / self.platform
        self.printer = printer
        self.outcome = outcome
        self._saved: dict[str, Path] = {}  # sha256 -> where it was saved

    def begin(self, title: str) -> int:
        """Number and announce a step."""
        self.outcome.steps += 1
        self.printer.line()
        self.printer.line(f"[{self.outcome.steps}] {title}")
        return self.outcome.steps

    def fail(self, number: int, title: str, problem: str) -> None:
        """Record (and print) a problem with a step."""
        self.outcome.failures.append(f"{self.platform} step {number} ({title}): {problem}")
        self.outcome.failed_steps.add(number)
        self.printer.line(f"  ✗ FAILED: {problem}")

    async def rows(self, user_id: int) -> int:
        """How many usage rows a user has so far."""
        return len(await self.usage(self.platform, user_id))

    async def await_row(
        self, number: int, title: str, user_id: int, action: str, before: int
    ) -> Logged | None:
        """The usage row of the step (a reply goes out before its row is written, so this waits)."""
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            rows = [r for r in (await self.usage(self.platform, user_id))[before:] if r.action == action]
            if rows:
                return rows[-1]
            if time.monotonic() > deadline:
                self.fail(number, title, f"no {action!r} row in the usage log")
                return None
            await asyncio.sleep(0.02)

    def show_row(self, number: int, title: str, row: Logged | None, check: RowCheck | None) -> None:
        """Print the step's usage row and check it."""
        if row is None:
            return
        problem = check(row) if check else None
        if problem:
            self.fail(number, title, problem)
        self.printer.line(f"  log: {describe_row(row)}")

    def save(self, number: int, kind: str, source: Path, sha256: str, suffix: str) -> str:
        """Copy a file a chat received out of the emulator (it deletes them when it stops); where it went."""
        known = self._saved.get(sha256)
        if known is not None:
            return f"(the same file as {known})"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        index = sum(1 for p in self._saved.values() if p.name.startswith(f"{number:02d}-")) + 1
        target = self.out_dir / f"{number:02d}-{kind}-{index}{suffix}"
        shutil.copyfile(source, target)
        self._saved[sha256] = target
        self.outcome.saved.append(target)
        return str(target)


# --- checks of usage rows -----------------------------------------------------------------------------------


def downloaded(row: Logged) -> str | None:
    """The media was downloaded, not re-sent from the cache."""
    return "expected a download, not the cache" if row.cache_hit else None


def cache_hit(row: Logged) -> str | None:
    """The media went out from the sent-media cache."""
    return None if row.cache_hit and row.backend == "cache" else f"expected a cache hit, got {row.backend}"


def outcome_is(expected: str) -> RowCheck:
    """The row's outcome is `expected`."""

    def check(row: Logged) -> str | None:
        return None if row.outcome == expected else f"expected outcome {expected}, got {row.outcome}"

    return check


# --- rendering ----------------------------------------------------------------------------------------------


def human_size(size: int) -> str:
    """Bytes as `812 B`, `52.3 kB`, `30.0 MB` (powers of 1000, as upload limits are stated)."""
    if size < 1000:
        return f"{size} B"
    if size < 1000 * 1000:
        return f"{size / 1000:.1f} kB"
    return f"{size / 1000 / 1000:.1f} MB"


def took(seconds: float) -> str:
    """A duration in a fixed width: `  45 ms`, `1.23 s`."""
    return f"{seconds * 1000:4.0f} ms" if seconds < 1 else f"{seconds:5.2f} s"


def first_line(text: str, limit: int = 72) -> str:
    """The first non-empty line of `text`, cut to `limit` characters."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def text_lines(text: str) -> list[str]:
    """Up to TEXT_LINES lines of a text reply, quoted, and how many more there were."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    shown = [f"│ {first_line(ln, 96)}" for ln in lines[:TEXT_LINES]]
    if len(lines) > TEXT_LINES:
        shown.append(f"│ … (+{len(lines) - TEXT_LINES} more)")
    return shown


def describe_row(row: Logged) -> str:
    """A usage row in one line: action, outcome, who served it, cache, bytes, latency."""
    parts = [f"{row.action} {row.outcome}"]
    if row.backend:
        parts.append(f"via {row.backend}")
    if row.cache_hit:
        parts.append("cache hit" if row.action in MEDIA_ACTIONS else "cached answer")
    elif row.action in MEDIA_ACTIONS and row.outcome == "ok":
        parts.append("downloaded")
    if row.bytes_sent:
        parts.append(f"{human_size(row.bytes_sent)} sent")
    parts.append(f"{row.latency_ms:.0f} ms")
    return " · ".join(parts)
