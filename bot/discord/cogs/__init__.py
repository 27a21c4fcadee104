"""One cog per feature; `add_cogs` composes them and registers the buttons that outlive a restart."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.discord.app import TikTokBot


async def add_cogs(bot: TikTokBot) -> None:
    """Add the links, commands, settings and admin cogs, and the persistent buttons."""
    from bot.discord.cogs import admin, commands, links, settings

    await bot.add_cog(links.Links(bot))
    await bot.add_cog(commands.Lookups(bot))
    await bot.add_cog(settings.Settings(bot))
    await bot.add_cog(admin.Admin(bot))
    bot.add_dynamic_items(commands.HashtagMore, settings.SettingsToggle)
