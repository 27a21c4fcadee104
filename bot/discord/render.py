"""Cards as Discord embeds: the shared card contents, within Discord's embed limits, markdown escaped."""

from __future__ import annotations

import re

import discord
from discord.utils import escape_markdown

from bot.chat.cards import Card, trim
from bot.chat.i18n import t

TITLE_LIMIT = 256
AUTHOR_LIMIT = 256
DESCRIPTION_LIMIT = 4096
FOOTER_LIMIT = 2048
FIELD_LIMIT = 25
CONTENT_LIMIT = 2000
# TikTok's red, so the bot's cards are recognisable in a busy channel.
COLOUR = discord.Colour(0xFE2C55)


_BARE_BRACKET = re.compile(r"(?<!\\)([\[\]])")


def _escape(text: str) -> str:
    # Brackets too (unless already escaped): a description inside a markdown link must not close it early.
    return _BARE_BRACKET.sub(r"\\\1", escape_markdown(text))


def card_embed(card: Card, lang: str) -> discord.Embed:
    """The card as an embed: author, linked title, description (and linked rows), figures, footer."""
    # A post card's title is its author; the embed shows the author line and links the title instead.
    title = t(lang, "card.open") if card.author and card.title == card.author else card.title
    embed = discord.Embed(title=trim(title, TITLE_LIMIT), url=card.url, colour=COLOUR)
    if card.author:
        embed.set_author(name=trim(card.author, AUTHOR_LIMIT), url=card.url)
    description = _escape(card.text) if card.text else ""
    for text, url in card.lines:
        row = f"[{_escape(text)}]({url})"
        candidate = f"{description}\n{row}" if description else row
        if len(candidate) > DESCRIPTION_LIMIT:
            break
        description = candidate
    if description:
        embed.description = description[:DESCRIPTION_LIMIT]
    for icon, value, label in card.figures[:FIELD_LIMIT]:
        embed.add_field(name=f"{icon} {label}", value=value, inline=True)
    if card.footer:
        embed.set_footer(text=trim(card.footer, FOOTER_LIMIT))
    return embed


def code_block(lines: list[str], limit: int = CONTENT_LIMIT) -> str:
    """Lines in a code block, cut to fit a message's `limit` characters."""
    body = "\n".join(lines).replace("```", "'''")
    room = limit - len("```\n\n```")
    if len(body) > room:
        body = body[: room - 1] + "…"
    return f"```\n{body}\n```"
