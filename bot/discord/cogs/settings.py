"""/settings: buttons toggling a server's (or a DM's) settings, for members with Manage Server."""

from __future__ import annotations

import re
from functools import partial
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.chat.i18n import t
from bot.chat.interaction import NOT_ALLOWED, ChatContext
from bot.chat.settings import STALE, TOGGLES
from bot.discord.client import TikTokBot, localised
from bot.discord.context import interaction_context, interaction_settings_key
from bot.discord.errors import ephemeral, report
from services.store.chats import ChatPrefs

# On Discord the bot cannot delete someone's link without taking it away; it hides the preview instead.
LABEL_KEYS = {"remove_link_message": "settings.suppress_embeds"}


async def may_change_settings(interaction: discord.Interaction[Any]) -> bool:
    """Anyone in their DM; in a server, members with Manage Server there."""
    return interaction.guild_id is None or interaction.permissions.manage_guild


class SettingsToggle(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=r"st:(?P<name>\w+)"
):
    """A settings button: which setting it flips (`language` cycles); works after a restart too."""

    def __init__(self, name: str, label: str, on: bool | None) -> None:
        style = discord.ButtonStyle.secondary
        if on is not None:
            style = discord.ButtonStyle.success if on else discord.ButtonStyle.secondary
        super().__init__(discord.ui.Button(label=label[:80], style=style, custom_id=f"st:{name}"))
        self.name = name

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> SettingsToggle:
        """Rebuild the button from a click."""
        return cls(match["name"], getattr(item, "label", None) or "", None)

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        """Flip the setting and redraw the buttons; it applies to the next message at once."""
        bot = interaction.client
        assert isinstance(bot, TikTokBot)
        bot.note_interaction(interaction)
        try:
            ctx, prefs = await interaction_context(bot, interaction)
            await toggle(bot, interaction, ctx, prefs, self.name)
        except Exception as exc:
            await report(interaction, exc)


async def toggle(
    bot: TikTokBot, interaction: discord.Interaction[Any], ctx: ChatContext, prefs: ChatPrefs, name: str
) -> None:
    """Change one setting if the user may; log it either way."""
    allowed = partial(may_change_settings, interaction)
    key = interaction_settings_key(interaction)
    locale = str(interaction.locale)
    async with bot.app.settings_panel.toggle(ctx, key, prefs, name, allowed, user_language=locale) as shown:
        if shown.outcome == NOT_ALLOWED:
            await ephemeral(interaction, t(shown.language, "settings.manage_server_only"))
        elif shown.outcome == STALE:
            await ephemeral(interaction, t(shown.language, "error.stale"))
        else:
            view = settings_view(shown.prefs, shown.language)
            await interaction.response.edit_message(content=settings_title(shown.language), view=view)


def settings_title(lang: str) -> str:
    """The line above the buttons."""
    return f"**{t(lang, 'settings.title')}**"


def settings_view(prefs: ChatPrefs, lang: str) -> discord.ui.View:
    """One button per setting showing its state (green when on); the last one cycles the language."""
    view = discord.ui.View(timeout=None)
    for row, name in enumerate(TOGGLES):
        on = bool(getattr(prefs, name))
        label = f"{'✅' if on else '⬜'} {t(lang, LABEL_KEYS.get(name, f'settings.{name}'))}"
        item = SettingsToggle(name, label, on)
        item.item.row = row
        view.add_item(item)
    language = prefs.language if prefs.language != "auto" else t(lang, "settings.language.auto")
    last = SettingsToggle("language", f"🌐 {t(lang, 'settings.language')}: {language}", None)
    last.item.row = len(TOGGLES)
    view.add_item(last)
    quality = t(lang, f"settings.quality.{prefs.quality}")
    cycle = SettingsToggle("quality", f"🎞 {t(lang, 'settings.quality')}: {quality}", None)
    cycle.item.row = len(TOGGLES)  # beside the language: Discord allows five rows
    view.add_item(cycle)
    return view


class Settings(commands.Cog):
    """The /settings command."""

    def __init__(self, bot: TikTokBot) -> None:
        self.bot = bot

    @app_commands.command(name="settings", description=localised("cmd.settings"))
    @app_commands.default_permissions(manage_guild=True)
    async def settings(self, interaction: discord.Interaction[TikTokBot]) -> None:
        """The settings buttons, to the user alone; a polite refusal without Manage Server."""
        ctx, prefs = await interaction_context(self.bot, interaction)
        allowed = partial(may_change_settings, interaction)
        async with self.bot.app.settings_panel.show(ctx, prefs, allowed) as shown:
            if shown.outcome == NOT_ALLOWED:
                await ephemeral(interaction, t(shown.language, "settings.manage_server_only"))
            else:
                view = settings_view(shown.prefs, shown.language)
                await interaction.response.send_message(
                    settings_title(shown.language), view=view, ephemeral=True
                )
