"""Slash commands: /post, /user, /hashtag (with a "More" button that pages), /audio and /download.

Each acknowledges at once (Discord's 3-second rule) with a public "thinking…" message, then follows up;
a bad argument or a refused request is answered ephemerally, and so is every failure after the defer.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.chat.cards import HASHTAG_PAGE_SIZE, hashtag_card, post_card, profile_card
from bot.chat.commands import (
    parse_post_argument,
    parse_tag,
    parse_username,
    require_metadata,
    user_usage_key,
)
from bot.chat.errors import error_text
from bot.chat.flow import ChatContext, Tracker
from bot.chat.i18n import t
from bot.discord.client import TikTokBot, localised
from bot.discord.context import interaction_context
from bot.discord.errors import ephemeral, report
from bot.discord.render import card_embed
from bot.discord.sender import DiscordSender, InteractionReply
from services.download.models import Want
from services.errors import ServiceError, ShuttingDown

CUSTOM_ID_LIMIT = 100
Lookup = Callable[[Tracker], Awaitable[tuple[discord.Embed, discord.ui.View | None]]]


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
            async with bot.job():
                embed, view = await hashtag_page(bot, ctx, self.tag, self.cursor, self.page)
            await interaction.edit_original_response(embed=embed, view=view)
        except ServiceError as exc:
            await ephemeral(interaction, error_text(exc, ctx.language))
        except Exception as exc:
            await report(interaction, exc)


def more_view(tag: str, cursor: str | None, page: int, lang: str) -> discord.ui.View | None:
    """A view with the "More" button, or None at the end (or when the cursor does not fit a button id)."""
    if not cursor or len(f"ht:{page}:{cursor}:{tag}") > CUSTOM_ID_LIMIT or ":" in cursor:
        return None
    view = discord.ui.View(timeout=None)
    view.add_item(HashtagMore(tag, cursor, page, t(lang, "hashtag.more")))
    return view


async def hashtag_page(
    bot: TikTokBot, ctx: ChatContext, tag: str, cursor: str | None, page: int
) -> tuple[discord.Embed, discord.ui.View | None]:
    """One page of a hashtag as an embed, with the button to the next one; logged as one request."""
    flow = bot.app.flow
    async with flow.track(ctx, "hashtag", tag) as tracker:
        await flow.check_limits(ctx)
        answer = await require_metadata(bot.app.metadata).hashtag(tag, cursor, limit=HASHTAG_PAGE_SIZE)
        tracker.backend, tracker.units, tracker.cache_hit = answer.provider, answer.units, answer.cached
        card = hashtag_card(
            answer.value, ctx.language, page_number=page, offset=(page - 1) * HASHTAG_PAGE_SIZE
        )
        view = more_view(tag, answer.value.next_cursor, page + 1, ctx.language)
        return card_embed(card, ctx.language), view


class Lookups(commands.Cog):
    """Stats cards and downloads on demand."""

    def __init__(self, bot: TikTokBot) -> None:
        self.bot = bot

    async def _usage(
        self, interaction: discord.Interaction[Any], ctx: ChatContext, action: str, key: str | None = None
    ) -> None:
        """A missing or malformed argument: the command's usage, to the user alone; logged as refused."""
        async with self.bot.app.flow.track(ctx, action) as tracker:
            tracker.outcome = "invalid_argument"
            text = t(ctx.language, key or f"usage.{action}")
            await interaction.response.send_message(text, ephemeral=True)

    async def _lookup(
        self,
        interaction: discord.Interaction[Any],
        ctx: ChatContext,
        action: str,
        target: str | None,
        lookup: Lookup,
    ) -> None:
        """Limits, defer, the lookup, the card; any service failure as an ephemeral line."""
        reply = InteractionReply(interaction)

        async def cancelled() -> None:
            await reply.fail(error_text(ShuttingDown(), ctx.language))

        flow = self.bot.app.flow
        try:
            async with self.bot.job(on_cancel=cancelled), flow.track(ctx, action, target) as tracker:
                await flow.check_limits(ctx)
                await reply.defer()
                embed, view = await lookup(tracker)
                await reply.send(embed=embed, view=view)
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
        parsed = parse_post_argument(link)
        if parsed is None:
            await self._usage(interaction, ctx, "post")
            return

        async def lookup(tracker: Tracker) -> tuple[discord.Embed, discord.ui.View | None]:
            resolved = await self.bot.app.flow.resolve(parsed)
            tracker.target = resolved.post_id
            answer = await require_metadata(self.bot.app.metadata).post(resolved)
            tracker.backend, tracker.units, tracker.cache_hit = answer.provider, answer.units, answer.cached
            return card_embed(post_card(answer.value, ctx.language), ctx.language), None

        await self._lookup(interaction, ctx, "post", parsed.post_id or parsed.code, lookup)

    @app_commands.command(name="user", description=localised("cmd.user"))
    @app_commands.describe(name=localised("cmd.arg.user"))
    async def user(self, interaction: discord.Interaction[TikTokBot], name: str) -> None:
        """Profile card of one account."""
        ctx, _ = await interaction_context(self.bot, interaction)
        username = parse_username(name)
        if username is None:
            await self._usage(interaction, ctx, "user", user_usage_key(name))
            return

        async def lookup(tracker: Tracker) -> tuple[discord.Embed, discord.ui.View | None]:
            answer = await require_metadata(self.bot.app.metadata).profile(username)
            tracker.backend, tracker.units, tracker.cache_hit = answer.provider, answer.units, answer.cached
            return card_embed(profile_card(answer.value, ctx.language), ctx.language), None

        await self._lookup(interaction, ctx, "user", username, lookup)

    @app_commands.command(name="hashtag", description=localised("cmd.hashtag"))
    @app_commands.describe(tag=localised("cmd.arg.tag"))
    async def hashtag(self, interaction: discord.Interaction[TikTokBot], tag: str) -> None:
        """First page of a hashtag with a "More" button."""
        ctx, _ = await interaction_context(self.bot, interaction)
        parsed = parse_tag(tag)
        if parsed is None:
            await self._usage(interaction, ctx, "hashtag")
            return
        reply = InteractionReply(interaction)

        async def cancelled() -> None:
            await reply.fail(error_text(ShuttingDown(), ctx.language))

        try:
            async with self.bot.job(on_cancel=cancelled):
                await reply.defer()
                embed, view = await hashtag_page(self.bot, ctx, parsed, None, 1)
                await reply.send(embed=embed, view=view)
        except ServiceError as exc:
            await reply.fail(error_text(exc, ctx.language))

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
