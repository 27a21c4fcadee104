"""/stats for the bot's operators (DISCORD__ADMINS): today, 7 and 30 days from the usage log, ephemeral."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot.chat.i18n import t
from bot.chat.stats import PERIODS, backend_lines, stats_block
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
        async with self.bot.job(), self.bot.app.interactions.track(ctx, "stats") as tracker:
            if interaction.user.id not in self.bot.app.settings.discord.admins:
                tracker.outcome = "not_allowed"
                await ephemeral(interaction, t(ctx.language, "not_allowed"))
                return
            # Ephemeral from the start: the first follow-up fills this message and keeps it private.
            await interaction.response.defer(ephemeral=True, thinking=True)
            per_block = CONTENT_LIMIT // (len(PERIODS) + 1) - 2
            blocks = []
            for days, label in PERIODS:
                report = await self.bot.app.store.stats(days)
                blocks.append(code_block(stats_block(report, label, ctx.language), limit=per_block))
            blocks.append(code_block(backend_lines(self.bot.app.downloads.figures()), limit=per_block))
            await interaction.followup.send("\n".join(blocks), ephemeral=True)
