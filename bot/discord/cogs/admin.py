"""/stats for the bot's operators (DISCORD__ADMINS): today, 7 and 30 days from the usage log, ephemeral."""

from __future__ import annotations

from functools import partial

import discord
from discord import app_commands
from discord.ext import commands

from bot.chat.i18n import t
from bot.discord.client import TikTokBot, localised
from bot.discord.context import interaction_context
from bot.discord.errors import ephemeral
from bot.discord.render import CONTENT_LIMIT, code_block


class Admin(commands.Cog):
    """Operator commands."""

    def __init__(self, bot: TikTokBot) -> None:
        self.bot = bot

    @app_commands.command(name="stats", description=localised("cmd.stats"))
    async def stats(self, interaction: discord.Interaction[TikTokBot]) -> None:
        """The usage figures for operators, to them alone; everyone else is told it is not theirs."""
        ctx, _ = await interaction_context(self.bot, interaction)
        # Ephemeral from the start: the first follow-up fills this message and keeps it private.
        defer = partial(interaction.response.defer, ephemeral=True, thinking=True)
        report = self.bot.app.operator_stats.report(ctx, self.bot.app.settings.discord.admins, admitted=defer)
        async with self.bot.job(), report as shown:
            if not shown.allowed:
                await ephemeral(interaction, t(ctx.language, "not_allowed"))
            else:
                per_block = CONTENT_LIMIT // len(shown.blocks) - 2
                text = "\n".join(code_block(block, limit=per_block) for block in shown.blocks)
                await interaction.followup.send(text, ephemeral=True)
