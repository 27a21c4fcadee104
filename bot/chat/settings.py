"""The chat settings both frontends offer as buttons: which ones toggle, and how the language cycles."""

from __future__ import annotations

from bot.chat.i18n import languages
from services.store.chats import QUALITY_CHOICES

TOGGLES = ("auto_download", "captions", "slideshow_sound", "remove_link_message")


def next_quality(current: str) -> str:
    """auto → compatible → best → auto."""
    cycle = list(QUALITY_CHOICES)
    return cycle[(cycle.index(current) + 1) % len(cycle)] if current in cycle else "auto"


def next_language(current: str) -> str:
    """auto → each catalogue language → auto."""
    cycle = ["auto", *languages()]
    return cycle[(cycle.index(current) + 1) % len(cycle)] if current in cycle else "auto"
