"""Pasted TikTok links in server channels, threads and DMs answered with their media."""

from __future__ import annotations

import logging

import discord
from discord.ext import commands

from bot.chat.i18n import t
from bot.discord.client import TikTokBot
from bot.discord.context import guild_id_of, message_context
from bot.discord.sender import ChannelReply, DiscordSender
from services.links import TikTokLink, find_links

log = logging.getLogger("tiktok_bot.discord")

USER_MESSAGES = (discord.MessageType.default, discord.MessageType.reply)
# Outcomes after which the media is in the channel ("duplicate": a second link to a post already sent).
DELIVERED = frozenset({"ok", "duplicate"})


def _guild_permissions(message: discord.Message) -> discord.Permissions | None:
    """The bot's permissions where the message was posted (None in DMs)."""
    guild, channel = message.guild, message.channel
    if guild is None or not isinstance(channel, discord.abc.GuildChannel | discord.Thread):
        return None
    return channel.permissions_for(guild.me)


def media_links(text: str, limit: int) -> list[TikTokLink]:
    """The post and short links of a message, in order."""
    return [link for link in find_links(text, limit=limit) if link.has_media]


class Links(commands.Cog):
    """Answers TikTok links with media; stays silent in servers when a message has none."""

    def __init__(self, bot: TikTokBot) -> None:
        self.bot = bot

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        """Answer the message; one stored in the inbox is completed with its usage rows."""
        entry = self.bot.inbox.take(message.id)
        if entry is None:
            await self.answer(message)
            return
        await self.bot.app.deliveries.run(entry, lambda: self.answer(message))

    async def answer(self, message: discord.Message) -> None:
        """Reply with the media of each TikTok link in the message."""
        if message.author.bot or message.type not in USER_MESSAGES or self.bot.stopping:
            return
        perms = _guild_permissions(message)
        in_thread = isinstance(message.channel, discord.Thread)
        if perms is not None and not (perms.send_messages_in_threads if in_thread else perms.send_messages):
            return  # nowhere to answer
        links = media_links(message.content, self.bot.app.settings.limits.links_per_message)
        if not links:
            if guild_id_of(message) is None and message.content.strip():
                ctx, _ = await message_context(self.bot, message)
                await message.channel.send(t(ctx.language, "usage.no_link"))
            return
        ctx, prefs = await message_context(self.bot, message)
        if not prefs.auto_download:
            return
        reply = ChannelReply(message, self.bot.upload_limit_for(message.guild))
        sender = DiscordSender(reply, lang=ctx.language, prefs=prefs, terse=not ctx.is_private)

        async def queued() -> None:
            await sender.send_text(t(ctx.language, "queued"))

        try:
            # Cancelled by shutdown, the flow itself tells the chat to send the link again.
            async with self.bot.job():
                outcomes = await self.bot.app.flow.deliver_all(ctx, links, sender, on_queued=queued)
        finally:
            await reply.aclose()
        delivered = all(o in DELIVERED for o in outcomes)
        if prefs.remove_link_message and perms is not None and delivered:
            await self._suppress_preview(message, perms)

    async def _suppress_preview(self, message: discord.Message, perms: discord.Permissions) -> None:
        """Hide Discord's own preview of the link, now that the media is in the channel."""
        if not perms.manage_messages:
            log.info("cannot hide the link preview without Manage Messages")
            return
        try:
            await message.edit(suppress=True)
        except discord.HTTPException as exc:
            log.info("could not hide the link preview: %s", exc.text or exc.status)
