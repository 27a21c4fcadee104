"""Slash commands: /post, /user, /hashtag (with a "More" button that pages), /audio and /download.

Each acknowledges at once (Discord's 3-second rule) with a public "thinking…" message, then follows up;
a bad argument or a refused request is answered ephemerally, and so is every failure after the defer.
"""

from __future__ import annotations

import re
from contextlib import AbstractAsyncContextManager
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.chat.commands import parse_post_argument
from bot.chat.errors import error_text
from bot.chat.i18n import t
from bot.chat.interaction import INVALID_ARGUMENT, ChatContext
from bot.chat.lookups import NextPage, Shown
from bot.discord.client import TikTokBot, localised
from bot.discord.context import interaction_context
from bot.discord.errors import ephemeral, report
from bot.discord.render import card_embed
from bot.discord.sender import DiscordSender, InteractionReply
from services.download.models import Want
from services.errors import ServiceError, ShuttingDown

CUSTOM_ID_LIMIT = 100


class HashtagMore(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=r"ht:(?P<page>\d+):(?P<cursor>[^:]*):(?P<tag>\w+)",
):
    """The "More" button under a hashtag page: the tag, the next page's cursor and number live in its id."""

    def __init__(self, tag: str, cursor: str, page: int, label: str) -> None:
        super().__init__(
            discord.ui.Button(
                label=label, style=discord.ButtonStyle.secondary, custom_id=f"ht:{page}:{cursor}:{tag}"
            )
        )
        self.tag = tag
        self.cursor = cursor
        self.page = page

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> HashtagMore:
        """Rebuild the button from a click (also after a restart)."""
        return cls(match["tag"], match["cursor"], int(match["page"]), getattr(item, "label", None) or "")

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        """Edit the next page into the same message."""
        bot = interaction.client
        assert isinstance(bot, TikTokBot)
        bot.note_interaction(interaction)
        ctx, _ = await interaction_context(bot, interaction)
        if bot.stopping:
            await ephemeral(interaction, error_text(ShuttingDown(), ctx.language))
            return
        try:
            await interaction.response.defer()  # a deferred update: the message stays, no "thinking…"
            page = bot.app.lookups.hashtag_page(ctx, self.tag, self.cursor, self.page)
            async with bot.job(), page as shown:
                assert shown.card is not None  # a page always has its card
                embed = card_embed(shown.card, ctx.language)
                await interaction.edit_original_response(
                    embed=embed, view=more_view(shown.more, ctx.language)
                )
        except ServiceError as exc:
            await ephemeral(interaction, error_text(exc, ctx.language))
        except Exception as exc:
            await report(interaction, exc)


def more_view(more: NextPage | None, lang: str) -> discord.ui.View | None:
    """A view with the "More" button, or None at the end (or when the cursor does not fit a button id)."""
    if more is None:
        return None
    tag, cursor, page = more.tag, more.cursor, more.page
    if len(f"ht:{page}:{cursor}:{tag}") > CUSTOM_ID_LIMIT or ":" in cursor:
        return None
    view = discord.ui.View(timeout=None)
    view.add_item(HashtagMore(tag, cursor, page, t(lang, "hashtag.more")))
    return view


class Lookups(commands.Cog):
    """Stats cards and downloads on demand."""

    def __init__(self, bot: TikTokBot) -> None:
        self.bot = bot

    async def _usage(self, interaction: discord.Interaction[Any], ctx: ChatContext, action: str) -> None:
        """A missing or malformed link: the command's usage, to the user alone; logged as refused."""
        async with self.bot.app.interactions.track(ctx, action, outcome=INVALID_ARGUMENT):
            await ephemeral(interaction, t(ctx.language, f"usage.{action}"))

    async def _show(
        self, reply: InteractionReply, ctx: ChatContext, lookup: AbstractAsyncContextManager[Shown]
    ) -> None:
        """What a lookup found as a card (deferred once the limits let it through), or an ephemeral line
        with the command's usage or the service's failure."""

        async def cancelled() -> None:
            await reply.fail(error_text(ShuttingDown(), ctx.language))

        try:
            async with self.bot.job(on_cancel=cancelled), lookup as shown:
                if shown.card is None:
                    await reply.fail(t(ctx.language, shown.usage))
                else:
                    embed = card_embed(shown.card, ctx.language)
                    await reply.send(embed=embed, view=more_view(shown.more, ctx.language))
        except ServiceError as exc:
            await reply.fail(error_text(exc, ctx.language))

    async def _deliver(
        self, interaction: discord.Interaction[Any], argument: str, want: Want, action: str
    ) -> None:
        """The media of one post as follow-ups, within the interaction's upload limit."""
        ctx, prefs = await interaction_context(self.bot, interaction)
        link = parse_post_argument(argument)
        if link is None:
            await self._usage(interaction, ctx, action)
            return
        reply = InteractionReply(interaction)
        sender = DiscordSender(reply, lang=ctx.language, prefs=prefs, terse=False)

        async def queued() -> None:
            await sender.send_text(t(ctx.language, "queued"))

        # Cancelled by shutdown, the flow itself tells the user to send the link again.
        async with self.bot.job():
            await reply.defer()
            await self.bot.app.flow.deliver(ctx, link, sender, want=want, action=action, on_queued=queued)

    @app_commands.command(name="post", description=localised("cmd.post"))
    @app_commands.describe(link=localised("cmd.arg.link"))
    async def post(self, interaction: discord.Interaction[TikTokBot], link: str) -> None:
        """Stats card of one post."""
        ctx, _ = await interaction_context(self.bot, interaction)
        reply = InteractionReply(interaction)
        await self._show(reply, ctx, self.bot.app.lookups.post(ctx, link, admitted=reply.defer))

    @app_commands.command(name="user", description=localised("cmd.user"))
    @app_commands.describe(name=localised("cmd.arg.user"))
    async def user(self, interaction: discord.Interaction[TikTokBot], name: str) -> None:
        """Profile card of one account."""
        ctx, _ = await interaction_context(self.bot, interaction)
        reply = InteractionReply(interaction)
        await self._show(reply, ctx, self.bot.app.lookups.user(ctx, name, admitted=reply.defer))

    @app_commands.command(name="hashtag", description=localised("cmd.hashtag"))
    @app_commands.describe(tag=localised("cmd.arg.tag"))
    async def hashtag(self, interaction: discord.Interaction[TikTokBot], tag: str) -> None:
        """First page of a hashtag with a "More" button."""
        ctx, _ = await interaction_context(self.bot, interaction)
        reply = InteractionReply(interaction)
        await self._show(reply, ctx, self.bot.app.lookups.hashtag(ctx, tag, admitted=reply.defer))

    @app_commands.command(name="audio", description=localised("cmd.audio"))
    @app_commands.describe(link=localised("cmd.arg.link"))
    async def audio(self, interaction: discord.Interaction[TikTokBot], link: str) -> None:
        """Only the sound of a post."""
        await self._deliver(interaction, link, Want.AUDIO, "audio")

    @app_commands.command(name="download", description=localised("cmd.download"))
    @app_commands.describe(link=localised("cmd.arg.link"))
    async def download(self, interaction: discord.Interaction[TikTokBot], link: str) -> None:
        """The video, or the photos with their sound, of a post."""
        await self._deliver(interaction, link, Want.VIDEO, "download")
