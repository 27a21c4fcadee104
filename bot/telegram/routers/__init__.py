"""One router per feature; `build_router` composes them in the order updates should meet them."""

from __future__ import annotations

from aiogram import Router


def build_router() -> Router:
    """The root router: commands first, so `/post <link>` is a command and not a pasted link."""
    from bot.telegram.routers import admin, commands, inline, links, privacy, settings

    root = Router(name="root")
    root.include_routers(
        settings.build(), privacy.build(), admin.build(), commands.build(), inline.build(), links.build()
    )
    return root
