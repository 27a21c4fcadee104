"""The Telegram half of the demo: a private chat, a group, commands and a button, on the Bot API emulator."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sandbox.demo import script
from sandbox.demo.script import (
    Part,
    RowCheck,
    cache_hit,
    downloaded,
    first_line,
    human_size,
    outcome_is,
    text_lines,
    took,
)
from sandbox.telegram import TelegramEmulator
from sandbox.telegram.transcript import Call, SentFile
from sandbox.telegram.world import Chat, User

Check = Callable[[Call], str | None]  # a problem with the reply, or None


@dataclass(frozen=True, slots=True)
class Expect:
    """A reply a step waits for: a Bot API method in the step's chat, and what must hold for it."""

    method: str
    check: Check | None = None


class TelegramScript(Part):
    """Ann in a private chat with the bot, Dan in a group with it."""

    platform = "telegram"

    def __init__(self, emu: TelegramEmulator, *args: Any) -> None:
        super().__init__(*args)
        self.emu = emu

    async def run(self) -> None:
        """Play every step; failures are collected in the outcome, not raised."""
        emu, say = self.emu, self.printer
        ann = emu.add_user("Ann", username="ann", language_code="en")
        dan = emu.add_user("Dan", username="dan", language_code="en")
        private = emu.private_chat(ann)
        group = emu.group("Weekend plans", owner=dan)
        say.heading("Telegram")
        say.line(
            f"Ann talks to @{emu.bot.username} in private; Dan has the bot in his group “{group.title}”."
        )
        clip = script.CLIP
        await self.step(
            "a video link",
            private,
            ann,
            f"look at this: {clip.url}",
            [Expect("sendVideo", _uploaded)],
            action="link",
            row_check=downloaded,
        )
        await self.step(
            "a short link to a 4K video: TTSave's 64 MB is over Telegram's 50 MB; the web backend has 30 MB",
            private,
            ann,
            script.SHORT_LINK,
            [Expect("sendVideo", _uploaded)],
            action="link",
        )
        await self.step(
            "a photo slideshow in a group",
            group,
            dan,
            f"where we're going: {script.SLIDES.url}",
            [Expect("sendMediaGroup", _photos(len(script.SLIDES.images))), Expect("sendAudio")],
            action="link",
        )
        await self.step(
            "a private post",
            private,
            ann,
            script.PRIVATE.url,
            [Expect("sendMessage", _text_has("private"))],
            action="link",
            row_check=outcome_is("unavailable:private"),
        )
        await self.step(
            "/post: a post's stats",
            private,
            ann,
            f"/post {clip.url}",
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
            page = await self.press("More ▶ (page 2)", private, ann, listing[0], [Expect("editMessageText")])
            if page:
                await self.press("More ▶ (page 3)", private, ann, page[0], [Expect("editMessageText")])
        await self.step(
            "the same video again, in the group: a cache hit",
            group,
            dan,
            clip.url,
            [Expect("sendVideo", _by_file_id)],
            action="link",
            row_check=cache_hit,
        )

    async def step(
        self,
        title: str,
        chat: Chat,
        user: User,
        text: str,
        expect: Sequence[Expect],
        *,
        action: str,
        row_check: RowCheck | None = None,
    ) -> list[Call]:
        """A user writes `text`; wait for the expected replies and the usage row; print what happened."""
        number = self.begin(title)
        self.printer.line(f"  {user.first_name} ({_chat_kind(chat)}): {text}")
        before = await self.rows(user.id)
        mark = self.emu.mark()
        started = time.monotonic()
        self.emu.inject_message(chat, text, user=user)
        calls = await self._await_replies(number, title, chat, mark, expect)
        row = await self.await_row(number, title, user.id, action, before)
        self._show(number, chat, mark, started)
        self.show_row(number, title, row, row_check)
        return calls

    async def press(
        self, title: str, chat: Chat, user: User, message: Call, expect: Sequence[Expect]
    ) -> list[Call]:
        """A user presses the inline button of a message the bot sent; wait for the edit."""
        number = self.begin(title)
        label = _button_label(message)
        self.printer.line(f"  {user.first_name} presses “{label}”")
        before = await self.rows(user.id)
        mark = self.emu.mark()
        started = time.monotonic()
        try:
            self.emu.press_button(message, text=label, user=user)
        except ValueError as exc:
            self.fail(number, title, str(exc))
            return []
        calls = await self._await_replies(number, title, chat, mark, expect)
        row = await self.await_row(number, title, user.id, "hashtag", before)
        self._show(number, chat, mark, started)
        self.show_row(number, title, row, None)
        return calls

    async def _await_replies(
        self, number: int, title: str, chat: Chat, mark: int, expect: Sequence[Expect]
    ) -> list[Call]:
        calls: list[Call] = []
        after = mark
        for wanted in expect:
            try:
                call = await self.emu.wait_for(
                    method=wanted.method, chat_id=chat.id, after=after, timeout=script.STEP_TIMEOUT
                )
            except TimeoutError:
                self.fail(number, title, f"no {wanted.method} within {script.STEP_TIMEOUT:g} s")
                return calls
            if not call.ok:
                problem: str | None = call.error or "not ok"
            else:
                problem = wanted.check(call) if wanted.check else None
            if problem:
                self.fail(number, title, f"{wanted.method}: {problem}")
            calls.append(call)
            after = call.seq
        return calls

    def _show(self, number: int, chat: Chat, mark: int, started: float) -> None:
        """Print what the bot put into the chat since `mark` (and when), saving the files it carried."""
        shown = False
        for call in self.emu.transcript(chat_id=chat.id, after=mark):
            if not call.ok:
                self.printer.line(f"  bot ✗ {call.method}: {call.status} {call.error}")
                continue
            if call.method in ("sendChatAction", "answerCallbackQuery"):
                continue
            shown = True
            head, *rest = self._describe(number, call)
            self.printer.line(f"  bot ▸ {took(call.answered - started)}  {head}")
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
        saved = [self.save(number, f.kind, f.path, f.sha256, _extension(f)) for f in files]
        where = ["saved " + ", ".join(saved)] if saved else []
        if call.method == "sendVideo":
            video = message.get("video") or {}
            dims = f"{video.get('width')}×{video.get('height')}, {video.get('duration')} s"
            return [f"video {size} ({dims}), {how} — “{caption}”", *where]
        if call.method == "sendMediaGroup":
            first = next((str(m["caption"]) for m in call.messages if m.get("caption")), "")
            return [f"album of {len(files)} photos, {size}, {how} — “{first_line(first)}”", *where]
        if call.method == "sendAudio":
            audio = message.get("audio") or {}
            return [f"audio “{audio.get('title')}” by {audio.get('performer')}, {size}, {how}", *where]
        if call.method == "sendPhoto":
            return [f"photo {size}, {how} — “{caption}”", *where]
        verb = "edits its message" if call.method == "editMessageText" else "a message"
        return [f"{verb}{_buttons_note(message)}:", *text_lines(str(message.get("text") or ""))]


# --- checks of replies --------------------------------------------------------------------------------------


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


# --- rendering ----------------------------------------------------------------------------------------------


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


def _extension(file: SentFile) -> str:
    if file.name and "." in file.name:
        return "." + file.name.rsplit(".", 1)[1].lower()
    return {"video": ".mp4", "photo": ".jpg", "audio": ".mp3", "thumbnail": ".jpg"}.get(file.kind, ".bin")
