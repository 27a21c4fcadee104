"""The Discord half of the demo: a link in a channel, the same link in a thread, a paged slash command."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sandbox.demo import script
from sandbox.demo.script import (
    Part,
    RowCheck,
    cache_hit,
    downloaded,
    first_line,
    human_size,
    text_lines,
    took,
)
from sandbox.discord import DiscordEmulator, Interaction, MessageFlag, StoredMessage

_MD_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")  # [text](url) -> text


class DiscordScript(Part):
    """Alice (English) and Bob (Russian client) in the sandbox server."""

    platform = "discord"

    def __init__(self, emu: DiscordEmulator, *args: Any) -> None:
        super().__init__(*args)
        self.emu = emu

    async def run(self) -> None:
        """Play every step; failures are collected in the outcome, not raised."""
        emu, say = self.emu, self.printer
        demo = emu.demo
        if demo is None:
            raise ValueError("the Discord emulator needs its demo world")
        guild = emu.world.guilds[demo.guild_id]
        say.heading("Discord")
        say.line(
            f"Alice and Bob are in the server “{guild.name}” with the bot: "
            f"{self._where(demo.channel_id)} and its thread {self._where(demo.thread_id)}."
        )
        clip = script.CLIP
        await self.paste(
            "a link in a server channel",
            demo.channel_id,
            demo.admin_id,
            f"{clip.url} 🍝",
            attachments=1,
            row_check=downloaded,
        )
        await self.paste(
            "the same link in the thread: sent before on Discord, it goes out again by its attachment's URL",
            demo.thread_id,
            demo.member_id,
            clip.url,
            attachments=0,
            check=_links_an_attachment,
            row_check=cache_hit,
        )
        listing = await self.command(
            "/hashtag: a slash command, deferred, then the first page", "hashtag", demo.admin_id, tag="food"
        )
        if listing is not None:
            await self.click("More ▶ (page 2)", listing, demo.admin_id)

    def _where(self, channel_id: int) -> str:
        return f"#{self.emu.world.channels[channel_id].name}"

    def _who(self, user_id: int) -> str:
        user = self.emu.world.user(user_id)
        return user.global_name or user.username

    async def paste(
        self,
        title: str,
        channel_id: int,
        user_id: int,
        text: str,
        *,
        attachments: int,
        check: Callable[[StoredMessage], str | None] | None = None,
        row_check: RowCheck | None = None,
    ) -> None:
        """A user posts `text`; wait for the bot's reply with its attachments, and the usage row."""
        number = self.begin(title)
        self.printer.line(f"  {self._who(user_id)} ({self._where(channel_id)}): {text}")
        before = await self.rows(user_id)
        started = time.monotonic()
        pasted = await self.emu.send_message(channel_id, user_id, text)

        def replies(m: StoredMessage) -> bool:
            return m.reference is not None and m.reference.get("message_id") == str(pasted.id)

        try:
            reply = await self.emu.wait_for_message(
                channel_id, replies, after=pasted.id, timeout=script.STEP_TIMEOUT
            )
        except TimeoutError:
            self.fail(number, title, f"no reply within {script.STEP_TIMEOUT:g} s")
            return
        elapsed = time.monotonic() - started
        if len(reply.attachments) != attachments:
            self.fail(number, title, f"expected {attachments} attachment(s), got {len(reply.attachments)}")
        problem = check(reply) if check else None
        if problem:
            self.fail(number, title, problem)
        row = await self.await_row(number, title, user_id, "link", before)
        self._show(number, reply, elapsed)
        self.show_row(number, title, row, row_check)

    async def command(self, title: str, name: str, user_id: int, **options: Any) -> StoredMessage | None:
        """A user runs a slash command; wait for the deferred answer to be filled in."""
        number = self.begin(title)
        shown = " ".join(f"{k}:{v}" for k, v in options.items())
        self.printer.line(f"  {self._who(user_id)} runs /{name} {shown}")
        demo = self.emu.demo
        assert demo is not None
        before = await self.rows(user_id)
        started = time.monotonic()
        try:
            inter = await self.emu.invoke_command(
                name, user_id=user_id, channel_id=demo.channel_id, options=options, locale="en-US"
            )
            answer = await self._answered(inter)
        except (TimeoutError, LookupError, PermissionError) as exc:
            self.fail(number, title, f"no answer: {exc!r}")
            return None
        elapsed = time.monotonic() - started
        callback = self.emu.interaction_responses(inter.id)[0]
        deferred = isinstance(callback.payload, dict) and callback.payload.get("type") == 5
        verb = "defers (“thinking…”), then fills in its answer" if deferred else "answers"
        row = await self.await_row(number, title, user_id, name, before)
        self._show(number, answer, elapsed, verb=verb)
        self.show_row(number, title, row, None)
        if not _buttons(answer):
            self.fail(number, title, "expected a More button")
        return answer

    async def click(self, title: str, message: StoredMessage, user_id: int) -> None:
        """A user clicks the message's first button; wait for the bot to edit the message."""
        number = self.begin(title)
        buttons = _buttons(message)
        if not buttons:
            self.fail(number, title, "the message has no button")
            return
        label, custom_id = buttons[0]
        self.printer.line(f"  {self._who(user_id)} clicks “{label}”")
        before = await self.rows(user_id)
        started = time.monotonic()
        try:
            click = await self.emu.click_component(message.id, custom_id, user_id=user_id)
            await self.emu.wait_for(
                lambda c: c.interaction_id == click.id and c.method == "PATCH", timeout=script.STEP_TIMEOUT
            )
        except (TimeoutError, LookupError, PermissionError) as exc:
            self.fail(number, title, f"no edit: {exc!r}")
            return
        elapsed = time.monotonic() - started
        row = await self.await_row(number, title, user_id, "hashtag", before)
        self._show(number, self.emu.message(message.id), elapsed, verb="edits its answer")
        self.show_row(number, title, row, None)

    async def _answered(self, inter: Interaction) -> StoredMessage:
        """The interaction's first finished (no longer "thinking…") message."""

        def done() -> bool:
            return any(not m.flags & MessageFlag.LOADING for m in self.emu.interaction_messages(inter.id))

        await self.emu.transcript.wait_until(done, timeout=script.STEP_TIMEOUT)
        return next(m for m in self.emu.interaction_messages(inter.id) if not m.flags & MessageFlag.LOADING)

    def _show(self, number: int, message: StoredMessage, seconds: float, verb: str = "replies") -> None:
        """Print a message of the bot: attachments (saved), embed, buttons."""
        files = ", ".join(f"{a.filename} {human_size(a.size)}" for a in message.attachments)
        head = f"{verb}" + (f" with {files}" if files else "")
        if message.ephemeral:
            head += " (only the user sees it)"
        labels = [label for label, _ in _buttons(message)]
        if labels:
            head += f" with a button [{' | '.join(labels)}]"
        self.printer.line(f"  bot ▸ {took(seconds)}  {head}")
        for attachment in message.attachments:
            where = self.save(
                number,
                "attachment",
                Path(attachment.path),
                attachment.sha256,
                Path(attachment.filename).suffix,
            )
            self.printer.line(f"{'':16}saved {where}")
        if message.content:
            self.printer.line(f"{'':16}│ {first_line(message.content, 96)}")
        for embed in message.embeds[:1]:
            for line in _embed_lines(embed):
                self.printer.line(f"{'':16}{line}")


def _links_an_attachment(message: StoredMessage) -> str | None:
    """The reply carries the URL of a file the bot uploaded before instead of uploading it again."""
    return None if "/attachments/" in message.content else "expected the earlier attachment's URL"


def _buttons(message: StoredMessage) -> list[tuple[str, str]]:
    """(label, custom_id) of every button of a message."""
    return [
        (str(c.get("label")), str(c.get("custom_id")))
        for row in message.components
        for c in row.get("components", [])
        if c.get("custom_id")
    ]


def _embed_lines(embed: dict[str, Any]) -> list[str]:
    """An embed in a few quoted lines: author, title, description, fields, footer."""
    lines: list[str] = []
    author = (embed.get("author") or {}).get("name")
    if author:
        lines.append(f"│ {author}")
    if embed.get("title"):
        lines.append(f"│ {embed['title']}")
    description = _MD_LINK.sub(r"\1", str(embed.get("description") or ""))
    lines += text_lines(description)[:3]
    fields = embed.get("fields") or []
    if fields:
        lines.append("│ " + "  ".join(f"{f['name']}: {f['value']}" for f in fields))
    footer = (embed.get("footer") or {}).get("text")
    if footer:
        lines.append(f"│ {first_line(str(footer), 96)}")
    return lines
