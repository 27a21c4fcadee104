"""The Discord bot: the App as a typed attribute, command sync, in-flight jobs and shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.chat.errors import error_text
from bot.chat.i18n import catalogues, pick_language, t
from bot.discord.context import DM_UPLOAD_LIMIT, Remembered
from bot.discord.errors import report
from bot.discord.inbox import GatewayInbox
from bot.wiring import App
from services.errors import ShuttingDown

log = logging.getLogger("tiktok_bot.discord")

# In-flight replies get this long to finish when the process is asked to stop.
SHUTDOWN_GRACE = 10.0
# discord.py holds READY back until no GUILD_CREATE arrived for this long.
GUILD_READY_TIMEOUT = 2.0
# A cancelled job gets this long to say so.
CANCEL_REPLY_TIMEOUT = 3.0
# Gateway events that are requests to the bot, counted as updates received.
COUNTED_EVENTS = frozenset({"MESSAGE_CREATE", "INTERACTION_CREATE"})

INTENT_WARNING = (
    "Discord refused the MESSAGE CONTENT intent (gateway close 4014): the bot reconnects without it. "
    "Slash commands, DMs and messages that mention the bot keep working, but TikTok links pasted in server "
    "channels are not seen. To enable it: Discord Developer Portal → Applications → this bot → Bot → "
    "Privileged Gateway Intents → turn on MESSAGE CONTENT INTENT, save, and restart the bot "
    "(or set DISCORD__MESSAGE_CONTENT=false to run without it on purpose)."
)


class CatalogueTranslator(app_commands.Translator):
    """Command and option descriptions from the message catalogues (`locale_str(..., key=...)`)."""

    async def translate(
        self,
        string: app_commands.locale_str,
        locale: discord.Locale,
        context: app_commands.TranslationContextTypes,
    ) -> str | None:
        """The catalogue's text for the string's key in this locale, if that language has one."""
        key = string.extras.get("key")
        # No catalogue for this locale (or no key): Discord shows the default, English.
        text = catalogues().get(locale.value.split("-")[0], {}).get(key) if key else None
        return text if text and text != string.message else None


def localised(key: str) -> app_commands.locale_str:
    """A command or option description: the English text, translated per locale from the catalogues."""
    return app_commands.locale_str(t("en", key), key=key)


class BotTree(app_commands.CommandTree["TikTokBot"]):
    """The command tree: notes each user's locale, refuses new work while stopping, reports errors."""

    async def interaction_check(self, interaction: discord.Interaction[TikTokBot], /) -> bool:
        """Record what the interaction tells about its user and guild; turn it away while shutting down."""
        bot = self.client
        bot.note_interaction(interaction)
        task = asyncio.current_task()
        if task is not None:  # the whole command is in-flight work, not just the part after the checks
            bot.track_task(task)
        if bot.stopping:
            lang = pick_language(str(interaction.locale))
            await interaction.response.send_message(error_text(ShuttingDown(), lang), ephemeral=True)
            return False
        return True

    async def _call(self, interaction: discord.Interaction[TikTokBot]) -> None:
        """Run the command; one stored in the inbox is completed (with its usage rows) when it returns."""
        # CommandTree._call runs a slash command from start to end; no public hook wraps it.
        entry = self.client.inbox.take(interaction.id)
        if entry is None:
            await super()._call(interaction)
            return
        await self.client.app.deliveries.run(entry, lambda: super(BotTree, self)._call(interaction))

    async def on_error(
        self, interaction: discord.Interaction[TikTokBot], error: app_commands.AppCommandError, /
    ) -> None:
        """Log with the traceback; an ephemeral apology to the user."""
        await report(interaction, error)


class TikTokBot(commands.Bot):
    """The Discord bot: the shared App, what it learnt from interactions, and its in-flight jobs."""

    def __init__(
        self,
        app: App,
        *,
        message_content: bool | None = None,
        guild_ready_timeout: float = GUILD_READY_TIMEOUT,
        **options: Any,
    ) -> None:
        # The bot never joins voice: discord.py's warnings about missing voice libraries are only noise.
        discord.VoiceClient.warn_nacl = False
        discord.VoiceClient.warn_dave = False
        intents = discord.Intents.default()  # guilds, guild and DM messages; members/presences off
        wanted = app.settings.discord.message_content if message_content is None else message_content
        intents.message_content = wanted
        super().__init__(
            # No prefix commands: only slash commands, so mentions are never parsed as commands.
            command_prefix=commands.when_mentioned,
            intents=intents,
            help_command=None,
            tree_cls=BotTree,
            allowed_mentions=discord.AllowedMentions.none(),
            guild_ready_timeout=guild_ready_timeout,
            # A 429 asking for a longer wait than a reply's budget raises RateLimited instead of stalling the
            # reply (discord.py takes at least 30 s here); the sender logs it as reply_failed:flood.
            max_ratelimit_timeout=app.settings.limits.reply_budget,
            **options,
        )
        self.app: App = app
        # Messages carry no locale; interactions do, so a user's last one is remembered for their links.
        self.user_locales = Remembered()
        # Interactions carry the guild's real upload limit (boosts, overrides); remembered per guild.
        self.upload_limits = Remembered()
        self.stopping = False
        self.intent_refused = False
        self._jobs: set[asyncio.Task[Any]] = set()
        self.inbox = GatewayInbox(self, app.deliveries)

    # --- start-up ---------------------------------------------------------------------------------------

    async def setup_hook(self) -> None:
        """Sync the commands the cogs added (to DISCORD__GUILD_IDS, or globally)."""
        await self.tree.set_translator(CatalogueTranslator())
        guild_ids = self.app.settings.discord.guild_ids
        if not guild_ids:
            synced = await self.tree.sync()
            log.info("synced %d commands globally", len(synced))
            return
        for guild_id in guild_ids:
            guild = discord.Object(guild_id)
            self.tree.copy_global_to(guild=guild)
            try:
                synced = await self.tree.sync(guild=guild)
            except discord.HTTPException as exc:
                log.warning(
                    "could not sync commands to guild %s: %s (is the bot in it, with applications.commands?)",
                    guild_id,
                    exc.text or exc.status,
                )
                continue
            log.info("synced %d commands to guild %s", len(synced), guild_id)

    async def on_socket_event_type(self, event_type: str) -> None:
        """Count the gateway events the bot answers (messages, interactions)."""
        if event_type in COUNTED_EVENTS:
            self.app.metrics.received("discord", event_type.lower())

    async def on_ready(self) -> None:
        """Log who we are and where."""
        log.info(
            "discord bot %s ready in %d guilds (message content intent: %s)",
            self.user,
            len(self.guilds),
            "on" if self.intents.message_content else "off",
        )

    async def stay_connected(self) -> None:
        """Run the gateway; if the privileged intent is refused, warn once and reconnect without it."""
        try:
            await self.connect(reconnect=True)
        except discord.PrivilegedIntentsRequired:
            if not self.intents.message_content or self.is_closed():
                raise
            log.warning(INTENT_WARNING)
            self.intent_refused = True
            # discord.py builds IDENTIFY from the state's intents; there is no public way to change them.
            self._connection._intents.message_content = False
            await self.connect(reconnect=True)

    # --- what interactions tell -----------------------------------------------------------------------------

    def note_interaction(self, interaction: discord.Interaction[Any]) -> None:
        """Remember the user's locale and the guild's real upload limit."""
        self.user_locales.put(interaction.user.id, str(interaction.locale))
        if interaction.guild_id is not None:
            self.upload_limits.put(interaction.guild_id, interaction.filesize_limit)

    def upload_limit_for(self, guild: discord.Guild | None) -> int:
        """Bytes one message's files may add up to: the guild's (as last reported), 10 MiB in DMs."""
        if guild is None:
            return DM_UPLOAD_LIMIT
        learned: int | None = self.upload_limits.get(guild.id)
        return learned if learned is not None else guild.filesize_limit

    # --- in-flight work and shutdown ------------------------------------------------------------------------

    def track_task(self, task: asyncio.Task[Any]) -> None:
        """Count `task` as in-flight work until it ends."""
        if task not in self._jobs:
            self._jobs.add(task)
            task.add_done_callback(self._jobs.discard)

    @contextlib.asynccontextmanager
    async def job(self, on_cancel: Callable[[], Awaitable[object]] | None = None) -> AsyncIterator[None]:
        """Count this task as in-flight work; if shutdown cancels it, tell the user through `on_cancel`."""
        task = asyncio.current_task()
        if task is not None:
            self.track_task(task)
        try:
            yield
        except asyncio.CancelledError:
            if self.stopping and on_cancel is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(CANCEL_REPLY_TIMEOUT):
                        await on_cancel()
            raise

    @property
    def jobs(self) -> int:
        """How many jobs are in flight."""
        return len(self._jobs)

    async def drain(self, grace: float = SHUTDOWN_GRACE) -> None:
        """Refuse new work, let jobs in flight finish for up to `grace` seconds, then cancel the rest."""
        self.stopping = True
        tasks = set(self._jobs)
        if not tasks:
            return
        log.info("waiting for %d replies in flight", len(tasks))
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=CANCEL_REPLY_TIMEOUT + 1)


class ShardedTikTokBot(TikTokBot, commands.AutoShardedBot):
    """The same bot running the shards DISCORD__SHARD_IDS of DISCORD__SHARD_COUNT (AutoShardedClient)."""

    async def close(self) -> None:
        """Close; also when the shards were never launched (a failed login)."""
        if not hasattr(self, "_AutoShardedClient__queue"):
            # discord.py's AutoShardedClient.close assumes launch_shards ran; before that, a plain close.
            await discord.Client.close(self)
            return
        await super().close()


def make_bot(app: App, *, guild_ready_timeout: float = GUILD_READY_TIMEOUT) -> TikTokBot:
    """The bot for this process: sharded when DISCORD__SHARD_COUNT is set, else one connection."""
    settings = app.settings.discord
    if settings.shard_count is None:
        return TikTokBot(app, guild_ready_timeout=guild_ready_timeout)
    shard_ids = settings.shard_ids or list(range(settings.shard_count))
    log.info("running shards %s of %d", shard_ids, settings.shard_count)
    return ShardedTikTokBot(
        app, guild_ready_timeout=guild_ready_timeout, shard_ids=shard_ids, shard_count=settings.shard_count
    )
