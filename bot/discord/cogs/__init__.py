"""One cog per feature; `add_cogs` composes them and registers the buttons that outlive a restart."""

from __future__ import annotations

from bot.discord.client import TikTokBot
from bot.discord.cogs import admin, commands, links, settings


async def add_cogs(bot: TikTokBot) -> None:
    """Add the links, commands, settings and admin cogs, and the persistent buttons."""
    await bot.add_cog(links.Links(bot))
    await bot.add_cog(commands.Lookups(bot))
    await bot.add_cog(settings.Settings(bot))
    await bot.add_cog(admin.Admin(bot))
    bot.add_dynamic_items(commands.HashtagMore, settings.SettingsToggle)
