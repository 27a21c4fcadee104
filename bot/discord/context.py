"""Who and where for each Discord event: the ChatContext, the chat's settings and language."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from cachetools import LRUCache
from structlog.contextvars import bind_contextvars

from bot.chat.i18n import pick_language
from bot.chat.interaction import ChatContext
from services.store.chats import ChatPrefs

if TYPE_CHECKING:
    from bot.discord.client import TikTokBot

PLATFORM = "discord"
DM_UPLOAD_LIMIT = discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES


def settings_key(guild_id: int | None, channel_id: int) -> int:
    """Settings belong to a server (changed by its managers), or to one DM."""
    return guild_id if guild_id is not None else channel_id


def interaction_settings_key(interaction: discord.Interaction[Any]) -> int:
    """The settings an interaction's chat uses."""
    return settings_key(interaction.guild_id, interaction.channel_id or interaction.user.id)


def chat_type(guild_id: int | None) -> str:
    """`guild` for server channels and threads, `dm` for direct messages."""
    return "guild" if guild_id is not None else "dm"


class Remembered:
    """A bounded map of the most recently seen ids to a value (locales, upload limits)."""

    def __init__(self, size: int = 10_000) -> None:
        self._items: LRUCache[int, Any] = LRUCache(size)

    def put(self, key: int, value: Any) -> None:
        """Remember `value` for `key`, forgetting the least recently used key when full."""
        self._items[key] = value

    def get(self, key: int) -> Any:
        """The value remembered for `key`, or None."""
        return self._items.get(key)


def guild_id_of(message: discord.Message) -> int | None:
    """The message's guild id, also when the guild is not in this process's cache (another shard's guild
    answered by a replica: the channel is then a PartialMessageable that knows it); None in DMs."""
    if message.guild is not None:
        return message.guild.id
    guild_id = getattr(message.channel, "guild_id", None)
    return int(guild_id) if guild_id is not None else None


def bind_log_context(kind: str, event_id: int, chat_id: int, user_id: int) -> None:
    """Who and where on every line the rest of this handler logs.

    discord.py runs each listener, command and component callback in a task of its own, so the binding ends
    with the handler; a replayed inbox entry is run inside `Deliveries.run`, which restores the context after.
    """
    bind_contextvars(platform=PLATFORM, update=f"{kind}:{event_id}", chat=chat_id, user=user_id)


async def message_context(bot: TikTokBot, message: discord.Message) -> tuple[ChatContext, ChatPrefs]:
    """Context of a pasted message; it carries no locale: the user's last known one, else the guild's."""
    bind_log_context("message", message.id, message.channel.id, message.author.id)
    guild = message.guild
    guild_id = guild_id_of(message)
    prefs = await bot.app.store.chats.get(PLATFORM, settings_key(guild_id, message.channel.id))
    known: str | None = bot.user_locales.get(message.author.id)
    guild_locale = str(guild.preferred_locale) if guild is not None else None
    lang = pick_language(known or guild_locale, prefs.language)
    ctx = ChatContext(
        platform=PLATFORM,
        chat_id=message.channel.id,
        chat_type=chat_type(guild_id),
        user_id=message.author.id,
        language=lang,
    )
    return ctx, prefs


async def interaction_context(
    bot: TikTokBot, interaction: discord.Interaction[Any]
) -> tuple[ChatContext, ChatPrefs]:
    """Context of a command or button: the language of the user's client unless the chat chose one."""
    channel_id = interaction.channel_id or interaction.user.id
    bind_log_context("interaction", interaction.id, channel_id, interaction.user.id)
    prefs = await bot.app.store.chats.get(PLATFORM, interaction_settings_key(interaction))
    lang = pick_language(str(interaction.locale), prefs.language)
    ctx = ChatContext(
        platform=PLATFORM,
        chat_id=channel_id,
        chat_type=chat_type(interaction.guild_id),
        user_id=interaction.user.id,
        language=lang,
    )
    return ctx, prefs
