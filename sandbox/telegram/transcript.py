"""What the bot asked the emulated Telegram, in order, and event-based waiting on it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Json = dict[str, Any]

# Methods that poll or configure rather than act; left out of the default views of the transcript.
POLLING_METHODS = {"getUpdates"}


@dataclass(frozen=True, slots=True)
class SentFile:
    """A file a call sent: uploaded now, or reused by file_id (then nothing was uploaded)."""

    field: str  # where it was in the call: "video", "thumbnail", "media[1]", "media[1].thumbnail"
    kind: str  # photo, video, audio, document, animation, thumbnail
    file_id: str
    file_unique_id: str
    uploaded: bool  # False when the call named an existing file_id (or a URL / local path)
    source: str  # "upload", "file_id", "url" or "local"
    name: str | None  # the upload's file name
    size: int
    sha256: str
    path: Path  # the bytes Telegram holds, kept until the emulator stops
    mime_type: str | None = None

    def json(self) -> Json:
        """A JSON-ready view."""
        return {
            "field": self.field,
            "kind": self.kind,
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "uploaded": self.uploaded,
            "source": self.source,
            "name": self.name,
            "size": self.size,
            "sha256": self.sha256,
            "path": str(self.path),
            "mime_type": self.mime_type,
        }


@dataclass(slots=True)
class Call:
    """One Bot API call the bot made, and what the emulator answered."""

    seq: int
    method: str  # canonical spelling, e.g. "sendVideo" (unknown methods as sent)
    params: Json  # decoded: JSON-string fields (reply_markup, media, ...) parsed; uploads as "attach://..."
    chat_id: int | None = None  # the resolved chat, when the method addresses one
    thread_id: int | None = None  # the forum topic the message went to
    files: list[SentFile] = field(default_factory=list)
    status: int = 200
    ok: bool = True
    result: Any = None
    error: str | None = None  # the error description when not ok
    description: str | None = None  # the description of a successful answer ("Webhook was set")
    via: str = "http"  # "http", or "webhook-reply" for a method answered in a webhook response
    at: float = field(default_factory=time.monotonic)  # when the request arrived
    answered: float = 0.0  # when the emulator answered it (time.monotonic()); uploads make the two differ
    first_byte: float = 0.0  # when the first bytes of a multipart body arrived (0: not multipart)
    content_length: int | None = None  # the request's Content-Length (None: chunked, or no body)

    @property
    def messages(self) -> list[Json]:
        """Messages the call produced (one, several for an album, none otherwise)."""
        if isinstance(self.result, dict) and "message_id" in self.result:
            return [self.result]
        if isinstance(self.result, list):
            return [m for m in self.result if isinstance(m, dict) and "message_id" in m]
        return []

    @property
    def message(self) -> Json | None:
        """The first message the call produced."""
        messages = self.messages
        return messages[0] if messages else None

    @property
    def uploads(self) -> list[SentFile]:
        """Files whose bytes this call uploaded."""
        return [f for f in self.files if f.uploaded]

    def json(self) -> Json:
        """A JSON-ready view (for the HTTP control API and the demo transcript)."""
        return {
            "seq": self.seq,
            "method": self.method,
            "params": self.params,
            "chat_id": self.chat_id,
            "thread_id": self.thread_id,
            "files": [f.json() for f in self.files],
            "status": self.status,
            "ok": self.ok,
            "result": self.result,
            "error": self.error,
            "via": self.via,
        }


class Changes:
    """A level-triggered change signal: waiters re-check their condition after every change."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        """Wake every waiter."""
        self._event.set()
        self._event = asyncio.Event()

    async def wait_until(
        self,
        condition: Callable[[], Any],
        within: float | None,
        what: Callable[[], str] = lambda: "condition",
    ) -> Any:
        """Return `condition()` as soon as it is truthy; TimeoutError (saying `what()`) after `within` s."""
        try:
            async with asyncio.timeout(within):
                while True:
                    event = self._event
                    value = condition()
                    if value:
                        return value
                    await event.wait()
        except TimeoutError:
            raise TimeoutError(f"after {within}s: {what()}") from None
