"""The last line of defence for commands and buttons: log with the traceback, apologise ephemerally."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import discord
from discord import app_commands

from bot.chat.errors import error_text
from bot.chat.i18n import pick_language
from bot.discord.context import bind_log_context

log = logging.getLogger("tiktok_bot.discord")


def unwrap(error: BaseException) -> BaseException:
    """The exception a command raised, without discord.py's CommandInvokeError wrapper."""
    if isinstance(error, app_commands.CommandInvokeError):
        return error.original
    return error


async def ephemeral(interaction: discord.Interaction[Any], text: str, *, loading: bool | None = None) -> None:
    """Say `text` to the user alone, whatever state the interaction is in.

    Not answered yet: an ephemeral reply. Deferred and still "thinking…" (`loading`; asked of Discord when
    unknown): that public placeholder is deleted first, since Discord's first follow-up would fill it and
    keep it public.
    """
    if not interaction.response.is_done():
        await interaction.response.send_message(text, ephemeral=True)
        return
    with contextlib.suppress(discord.NotFound):
        if loading is None:
            loading = (await interaction.original_response()).flags.loading
        if loading:
            await interaction.delete_original_response()
    await interaction.followup.send(text, ephemeral=True)


async def report(interaction: discord.Interaction[Any], error: BaseException) -> None:
    """Log an unhandled command or button failure with its traceback; tell the user briefly."""
    original = unwrap(error)
    name = interaction.command.qualified_name if interaction.command is not None else None
    data: dict[str, Any] = dict(interaction.data or {})
    # The failure may have come before the handler bound its context: bind it here (its own task).
    user_id = interaction.user.id
    bind_log_context("interaction", interaction.id, interaction.channel_id or user_id, user_id)
    log.error(
        "unhandled error in %s",
        f"/{name}" if name else f"component {data.get('custom_id', '?')}",
        exc_info=original,
        extra={"action": name or "component"},
    )
    lang = pick_language(str(interaction.locale))
    try:
        await ephemeral(interaction, error_text(original, lang))
    except discord.HTTPException:
        log.exception("could not send the apology")
