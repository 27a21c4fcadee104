"""The demo's scripted conversation: users of the emulated Telegram and Discord talk to the bot; a transcript.

The script only drives emulators and reads what reached the chats; the caller (`tiktok-bot demo`) runs the bot
against them and hands in a reader of the bot's usage log. Every step names the reply it expects; a step that
does not get it within its time is a failure, so the demo doubles as an end-to-end check.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from sandbox.catalogue import CATALOGUE, FixturePost, Status
from sandbox.telegram import TelegramEmulator
from sandbox.telegram.transcript import Call, SentFile
from sandbox.telegram.world import Chat, User

STEP_TIMEOUT = 10.0
MEDIA_ACTIONS = ("link", "audio", "download")
TEXT_LINES = 4  # lines of a text reply the transcript shows


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
Check = Callable[[Call], str | None]  # a problem with the reply, or None


@dataclass(frozen=True, slots=True)
class Expect:
    """A reply a step waits for: a Bot API method in the step's chat, and what must hold for it."""

    method: str
    check: Check | None = None


@dataclass(slots=True)
class Outcome:
    """How the whole script went."""

    steps: int = 0
    failures: list[str] = field(default_factory=list)  # one line per problem
    failed_steps: set[str] = field(default_factory=set)
    saved: list[Path] = field(default_factory=list)

    def add(self, other: Outcome) -> None:
        """Fold one part's outcome into this one."""
        self.steps += other.steps
        self.failures += other.failures
        self.failed_steps |= other.failed_steps
        self.saved += other.saved


def _post(predicate: Callable[[FixturePost], bool]) -> FixturePost:
    return next(p for p in CATALOGUE.posts.values() if predicate(p))


CLIP = _post(lambda p: p.hashtags == ("pasta", "cooking"))
SLIDES = _post(lambda p: len(p.images) == 3)
PRIVATE = _post(lambda p: p.status is Status.PRIVATE)
SHORT_LINK = "https://vm.tiktok.com/ZSbig0001/"  # the 4K kitchen tour: 64 MB at best, over Telegram's 50 MB


def human_size(size: int) -> str:
    """Bytes as `812 B`, `52.3 kB`, `30.0 MB` (powers of 1000, as upload limits are stated)."""
    if size < 1000:
        return f"{size} B"
    if size < 1000 * 1000:
        return f"{size / 1000:.1f} kB"
    return f"{size / 1000 / 1000:.1f} MB"


def first_line(text: str, limit: int = 72) -> str:
    """The first non-empty line of `text`, cut to `limit` characters."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _extension(file: SentFile) -> str:
    if file.name and "." in file.name:
        return "." + file.name.rsplit(".", 1)[1].lower()
    return {"video": ".mp4", "photo": ".jpg", "audio": ".mp3", "thumbnail": ".jpg"}.get(file.kind, ".bin")


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


class TelegramScript:
    """The Telegram half: a private chat, a group, commands and a button press."""

    def __init__(self, emu: TelegramEmulator, usage: UsageReader, out_dir: Path, printer: Printer) -> None:
        self.emu = emu
        self.usage = usage
        self.out_dir = out_dir / "telegram"
        self.printer = printer
        self.outcome = Outcome()
        self._saved: dict[str, Path] = {}  # sha256 -> where it was saved

    async def run(self) -> Outcome:
        """Play every step; failures are collected, not raised."""
        emu, say = self.emu, self.printer
        self.out_dir.mkdir(parents=True, exist_ok=True)
        ann = emu.add_user("Ann", username="ann", language_code="en")
        dan = emu.add_user("Dan", username="dan", language_code="en")
        private = emu.private_chat(ann)
        group = emu.group("Weekend plans", owner=dan)
        say.heading("Telegram")
        say.line(
            f"Ann talks to @{emu.bot.username} in private; Dan has the bot in his group {group.title!r}."
        )

        await self.step(
            "a video link",
            private,
            ann,
            f"look at this: {CLIP.url}",
            [Expect("sendVideo", _uploaded)],
            action="link",
            row_check=_backend_not_cache,
        )
        await self.step(
            "a short link to a 4K video: TTSave's 64 MB is over Telegram's 50 MB; the web backend has 30 MB",
            private,
            ann,
            SHORT_LINK,
            [Expect("sendVideo", _uploaded)],
            action="link",
        )
        await self.step(
            "a photo slideshow in a group",
            group,
            dan,
            f"where we're going: {SLIDES.url}",
            [Expect("sendMediaGroup", _photos(len(SLIDES.images))), Expect("sendAudio")],
            action="link",
        )
        await self.step(
            "a private post",
            private,
            ann,
            PRIVATE.url,
            [Expect("sendMessage", _text_has("private"))],
            action="link",
            row_check=_outcome("unavailable:private"),
        )
        await self.step(
            "/post: a post's stats",
            private,
            ann,
            f"/post {CLIP.url}",
            [Expect("sendMessage", _text_has("@sandbox.cook"))],
            action="post",
        )
        await self.step(
            "/user: an account's card",
            private,
            ann,
            "/user sandbox.cook",
            [Expect("sendMessage", _text_has("Sandbox Cook"))],
            action="user",
        )
        listing = await self.step(
            "/hashtag: the first page, with a More button",
            private,
            ann,
            "/hashtag food",
            [Expect("sendMessage", _has_button)],
            action="hashtag",
        )
        if listing:
            await self.press(
                "More ▶ (page 2)", private, ann, listing[0], [Expect("editMessageText", _has_button)]
            )
            edited = self.emu.transcript("editMessageText", chat_id=private.id, ok=True)
            if edited:
                await self.press("More ▶ (page 3)", private, ann, edited[-1], [Expect("editMessageText")])
        await self.step(
            "the same video again, in the group: a cache hit",
            group,
            dan,
            CLIP.url,
            [Expect("sendVideo", _by_file_id)],
            action="link",
            row_check=_cache_hit,
        )
        return self.outcome

    # --- one step -------------------------------------------------------------------------------------------

    async def step(
        self,
        title: str,
        chat: Chat,
        user: User,
        text: str,
        expect: Sequence[Expect],
        *,
        action: str,
        row_check: Callable[[Logged], str | None] | None = None,
    ) -> list[Call]:
        """A user writes `text`; wait for the expected replies and the usage row; print what happened."""
        self.outcome.steps += 1
        number = self.outcome.steps
        say = self.printer
        say.line()
        say.line(f"[{number}] {title}")
        say.line(f"  {user.first_name} ({_chat_kind(chat)}): {text}")
        rows_before = len(await self.usage("telegram", user.id))
        mark = self.emu.mark()
        started = time.monotonic()
        self.emu.inject_message(chat, text, user=user)
        calls = await self._await_replies(number, title, chat, mark, expect)
        row = await self._await_row(number, title, user, action, rows_before)
        self._show(number, chat, mark, started)
        if row is not None:
            problem = row_check(row) if row_check else None
            if problem:
                self._fail(number, title, problem)
            say.line(f"  log: {_describe_row(row)}")
        return calls

    async def press(
        self, title: str, chat: Chat, user: User, message: Call, expect: Sequence[Expect]
    ) -> None:
        """A user presses the inline button of a message the bot sent; wait for the edit."""
        self.outcome.steps += 1
        number = self.outcome.steps
        say = self.printer
        say.line()
        say.line(f"[{number}] {title}")
        say.line(f"  {user.first_name} presses {_button_label(message)!r}")
        mark = self.emu.mark()
        started = time.monotonic()
        rows_before = len(await self.usage("telegram", user.id))
        try:
            self.emu.press_button(message, text=_button_label(message), user=user)
        except ValueError as exc:
            self._fail(number, title, str(exc))
            return
        await self._await_replies(number, title, chat, mark, expect)
        row = await self._await_row(number, title, user, "hashtag", rows_before)
        self._show(number, chat, mark, started)
        if row is not None:
            say.line(f"  log: {_describe_row(row)}")

    async def _await_replies(
        self, number: int, title: str, chat: Chat, mark: int, expect: Sequence[Expect]
    ) -> list[Call]:
        calls: list[Call] = []
        after = mark
        for wanted in expect:
            try:
                call = await self.emu.wait_for(
                    method=wanted.method, chat_id=chat.id, after=after, timeout=STEP_TIMEOUT
                )
            except TimeoutError:
                self._fail(number, title, f"no {wanted.method} within {STEP_TIMEOUT:g} s")
                return calls
            problem = (
                (call.error or "not ok") if not call.ok else (wanted.check(call) if wanted.check else None)
            )
            if problem:
                self._fail(number, title, f"{wanted.method}: {problem}")
            calls.append(call)
            after = call.seq
        return calls

    async def _await_row(
        self, number: int, title: str, user: User, action: str, before: int
    ) -> Logged | None:
        # A reply goes out before its usage row is written: wait for the row too.
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            rows = [r for r in (await self.usage("telegram", user.id))[before:] if r.action == action]
            if rows:
                return rows[-1]
            if time.monotonic() > deadline:
                self._fail(number, title, f"no {action!r} row in the usage log")
                return None
            await asyncio.sleep(0.02)

    def _show(self, number: int, chat: Chat, mark: int, started: float) -> None:
        """Print what the bot put into the chat since `mark`, and save the files it carried."""
        shown = False
        for call in self.emu.transcript(chat_id=chat.id, after=mark):
            if not call.ok:
                self.printer.line(f"  bot ✗ {call.method}: {call.status} {call.error}")
                continue
            if call.method in ("sendChatAction", "answerCallbackQuery"):
                continue
            shown = True
            head, *rest = self._describe(number, call)
            self.printer.line(f"  bot ▸ {call.answered - started:5.2f} s  {head}")
            for extra in rest:
                self.printer.line(f"{'':16}{extra}")
        if not shown:
            self.printer.line("  bot ▸ (nothing)")

    def _describe(self, number: int, call: Call) -> list[str]:
        """What one call put into the chat: a headline, then detail lines."""
        message = call.message or {}
        files = [f for f in call.files if f.kind != "thumbnail"]
        size = human_size(sum(f.size for f in files))
        how = "uploaded" if any(f.uploaded for f in files) else "by file_id, nothing uploaded"
        caption = first_line(str(message.get("caption") or ""))
        saved = [self._save(number, f) for f in files]
        where = "saved " + ", ".join(str(p) for p in saved) if saved else ""
        if call.method == "sendVideo":
            video = message.get("video") or {}
            dims = f"{video.get('width')}×{video.get('height')}, {video.get('duration')} s"
            return [f"video {size} ({dims}), {how} — “{caption}”", where]
        if call.method == "sendMediaGroup":
            first = next((str(m["caption"]) for m in call.messages if m.get("caption")), "")
            return [f"album of {len(files)} photos, {size}, {how} — “{first_line(first)}”", where]
        if call.method == "sendAudio":
            audio = message.get("audio") or {}
            return [f"audio “{audio.get('title')}” by {audio.get('performer')}, {size}, {how}", where]
        if call.method == "sendPhoto":
            return [f"photo {size}, {how} — “{caption}”", where]
        verb = "edits its message to" if call.method == "editMessageText" else "text"
        lines = [ln for ln in str(message.get("text") or "").splitlines() if ln.strip()]
        shown = [f"│ {first_line(ln, 96)}" for ln in lines[:TEXT_LINES]]
        if len(lines) > TEXT_LINES:
            shown.append(f"│ … (+{len(lines) - TEXT_LINES} more)")
        return [f"{verb}:{_buttons_note(message)}", *shown]

    def _save(self, number: int, file: SentFile) -> Path:
        """Copy a file the chat received out of the emulator (it deletes them when it stops)."""
        known = self._saved.get(file.sha256)
        if known is not None:
            return Path(f"(the same file as {known})")
        index = sum(1 for p in self._saved.values() if p.name.startswith(f"{number:02d}-")) + 1
        target = self.out_dir / f"{number:02d}-{file.kind}-{index}{_extension(file)}"
        shutil.copyfile(file.path, target)
        self._saved[file.sha256] = target
        self.outcome.saved.append(target)
        return target

    def _fail(self, number: int, title: str, problem: str) -> None:
        self.outcome.failures.append(f"telegram step {number} ({title}): {problem}")
        self.outcome.failed_steps.add(f"telegram {number}")
        self.printer.line(f"  ✗ FAILED: {problem}")


# --- checks ------------------------------------------------------------------------------------------------


def _uploaded(call: Call) -> str | None:
    return None if call.files and call.files[0].uploaded else "expected a fresh upload"


def _by_file_id(call: Call) -> str | None:
    return None if call.files and not call.files[0].uploaded else "expected a re-send by file_id"


def _photos(count: int) -> Check:
    def check(call: Call) -> str | None:
        photos = [f for f in call.files if f.kind == "photo"]
        return None if len(photos) == count else f"expected {count} photos, got {len(photos)}"

    return check


def _text_has(needle: str) -> Check:
    def check(call: Call) -> str | None:
        text = str((call.message or {}).get("text") or "")
        return None if needle in text else f"expected {needle!r} in {first_line(text)!r}"

    return check


def _has_button(call: Call) -> str | None:
    return None if _button_label(call) else "expected an inline button"


def _backend_not_cache(row: Logged) -> str | None:
    return "expected a download, not the cache" if row.cache_hit else None


def _cache_hit(row: Logged) -> str | None:
    return None if row.cache_hit and row.backend == "cache" else f"expected a cache hit, got {row.backend}"


def _outcome(expected: str) -> Callable[[Logged], str | None]:
    def check(row: Logged) -> str | None:
        return None if row.outcome == expected else f"expected outcome {expected}, got {row.outcome}"

    return check


# --- rendering ---------------------------------------------------------------------------------------------


def _chat_kind(chat: Chat) -> str:
    return "private chat" if chat.type == "private" else f"{chat.type} “{chat.title}”"


def _buttons(message: dict[str, Any]) -> list[str]:
    rows = (message.get("reply_markup") or {}).get("inline_keyboard") or []
    return [str(b.get("text")) for row in rows for b in row]


def _button_label(call: Call) -> str:
    labels = _buttons(call.message or {})
    return labels[0] if labels else ""


def _buttons_note(message: dict[str, Any]) -> str:
    labels = _buttons(message)
    return f" with a button [{' | '.join(labels)}]" if labels else ""


def _describe_row(row: Logged) -> str:
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
