"""The chat settings both frontends offer as buttons: who may change them, what a press changes, what to draw.

`SettingsPanel.show` and `SettingsPanel.toggle` each yield what to render (`PanelShown`) and record one
`settings` usage row when the frontend's rendering ends; a frontend supplies only its permission check.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from bot.chat.i18n import languages, pick_language
from bot.chat.interaction import NOT_ALLOWED, ChatContext, Interactions
from services.store.chats import QUALITY_CHOICES, ChatPrefs, ChatSettings

TOGGLES = ("auto_download", "captions", "slideshow_sound", "remove_link_message")
STALE = "stale"  # a button of a setting this bot no longer has (a panel sent by an older version)
# Whether the user may change this chat's settings (Telegram asks for the member's status, Discord knows).
Permission = Callable[[], Awaitable[bool]]


def next_quality(current: str) -> str:
    """auto → compatible → best → auto."""
    cycle = list(QUALITY_CHOICES)
    return cycle[(cycle.index(current) + 1) % len(cycle)] if current in cycle else "auto"


def next_language(current: str) -> str:
    """auto → each catalogue language → auto."""
    cycle = ["auto", *languages()]
    return cycle[(cycle.index(current) + 1) % len(cycle)] if current in cycle else "auto"


def change_for(prefs: ChatPrefs, name: str) -> dict[str, Any] | None:
    """What pressing the button `name` changes: a toggle flips, language and quality cycle; None: unknown."""
    if name == "language":
        return {"language": next_language(prefs.language)}
    if name == "quality":
        return {"quality": next_quality(prefs.quality)}
    if name in TOGGLES:
        return {name: not getattr(prefs, name)}
    return None


@dataclass(frozen=True, slots=True)
class PanelShown:
    """What to draw: the panel of `prefs` in `language` (outcome `ok`), a refusal or a stale button's note."""

    outcome: str  # "ok", NOT_ALLOWED or STALE
    prefs: ChatPrefs
    language: str


class SettingsPanel:
    """Shows and changes a chat's settings for those allowed to; each request is one `settings` row."""

    def __init__(self, *, interactions: Interactions, chats: ChatSettings) -> None:
        self.interactions = interactions
        self.chats = chats

    @asynccontextmanager
    async def show(
        self, ctx: ChatContext, prefs: ChatPrefs, allowed: Permission
    ) -> AsyncIterator[PanelShown]:
        """The panel, or the refusal when the user may not change this chat's settings."""
        async with self.interactions.track(ctx, "settings") as tracker:
            if not await allowed():
                tracker.outcome = NOT_ALLOWED
            yield PanelShown(tracker.outcome, prefs, ctx.language)

    @asynccontextmanager
    async def toggle(
        self,
        ctx: ChatContext,
        key: int | str,
        prefs: ChatPrefs,
        name: str,
        allowed: Permission,
        *,
        user_language: str | None,
    ) -> AsyncIterator[PanelShown]:
        """Press the button `name` of the settings stored under `key`; the panel is redrawn in the language
        the new settings pick for this user."""
        async with self.interactions.track(ctx, "settings", name) as tracker:
            change = change_for(prefs, name)
            if not await allowed():
                tracker.outcome = NOT_ALLOWED
            elif change is None:
                tracker.outcome = STALE
            else:
                prefs = await self.chats.set(ctx.platform, key, **change)
                yield PanelShown(tracker.outcome, prefs, pick_language(user_language, prefs.language))
                return
            yield PanelShown(tracker.outcome, prefs, ctx.language)
