"""DiscordEmulator: the loopback Discord REST API, gateway and CDN, with an in-process control API."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from sandbox.base import Emulator
from sandbox.discord.control import add_control_routes
from sandbox.discord.gateway import RESUME_TIMEOUT, EventBuilder, Gateway, Session
from sandbox.discord.rest import API_PREFIX, RestApi
from sandbox.discord.transcript import Call, Transcript
from sandbox.discord.world import (
    BOT_PERMISSIONS,
    EVERYONE_PERMISSIONS,
    JSON,
    PRIVILEGED_INTENTS,
    Channel,
    ChannelType,
    Guild,
    Intent,
    Member,
    MessageFlag,
    Overwrite,
    Perm,
    Role,
    Snowflakes,
    StoredAttachment,
    StoredMessage,
    User,
    World,
    reference_to,
)

SANDBOX_TOKEN = "MTI5MDAwMDAwMDAwMDAwMDAwMQ.GSandB.discord-emulator-sandbox-token-not-a-secret"  # noqa: S105
SANDBOX_APPLICATION_ID = 1290000000000000001
MENTION = re.compile(r"<@!?(\d+)>")
URL = re.compile(r"https?://\S+")
# Application flags of an unverified bot whose portal switches are on: GATEWAY_*_LIMITED
# (verified bots get GATEWAY_MESSAGE_CONTENT 1<<18, GATEWAY_GUILD_MEMBERS 1<<14, GATEWAY_PRESENCE 1<<12).
APP_FLAG_MESSAGE_CONTENT_LIMITED = 1 << 19
APP_FLAG_GUILD_MEMBERS_LIMITED = 1 << 15
APP_FLAG_PRESENCE_LIMITED = 1 << 13


@dataclass(slots=True)
class Interaction:
    """An injected interaction and how the bot has answered it so far."""

    id: int
    token: str
    type: int  # 2 application command, 3 message component
    name: str  # the command path ("settings language") or the component custom_id
    guild_id: int | None
    channel_id: int
    user_id: int
    payload: JSON
    attachment_size_limit: int
    created: float = field(default_factory=time.monotonic)
    response_type: int | None = None
    loading: bool = False
    original_message_id: int | None = None
    source_message_id: int | None = None
    followup_ids: list[int] = field(default_factory=list)
    modal: JSON | None = None
    autocomplete_choices: list[JSON] | None = None

    @property
    def acknowledged(self) -> bool:
        """Whether the bot sent its initial response."""
        return self.response_type is not None


@dataclass(frozen=True, slots=True)
class DemoWorld:
    """Ids of the ready-made sandbox world (`DiscordEmulator(demo_world=True)`)."""

    guild_id: int
    channel_id: int
    thread_id: int
    admin_id: int  # "alice": a member with Manage Server and Manage Messages, locale en-US
    member_id: int  # "bob": a plain member, locale ru
    dm_channel_id: int  # the plain member's DM with the bot


class DiscordEmulator(Emulator):
    """A loopback Discord: REST under /api/v10, the gateway at /gateway, a CDN and /_control.

    See the package docstring for how to point discord.py at it. `callback_deadline` is Discord's 3 s for an
    interaction's first response (None: no deadline; a test on a loaded machine may lengthen it and say so),
    `token_lifetime` its 15 min for follow-ups, `resume_timeout` how long a session whose socket died stays
    resumable, buffering its dispatches (Discord: "a few minutes"; see `sandbox.discord.gateway`).
    """

    name = "discord"
    FAULT_STATUSES = (
        'that status on a REST call, {"message", "code"}; 429 with `retry_after` (default 0), Retry-After '
        "and X-RateLimit-Scope (global: X-RateLimit-Global), as discord.py expects"
    )

    def __init__(
        self,
        *,
        token: str = SANDBOX_TOKEN,
        application_id: int = SANDBOX_APPLICATION_ID,
        bot_name: str = "tiktok-bot",
        demo_world: bool = True,
        heartbeat_interval_ms: int = 41250,
        callback_deadline: float | None = 3.0,
        token_lifetime: float = 15 * 60.0,
        resume_timeout: float = RESUME_TIMEOUT,
    ) -> None:
        super().__init__()
        self.token = token
        self.application_id = application_id
        self.callback_deadline = callback_deadline
        self.token_lifetime = token_lifetime
        self.ids = Snowflakes()
        self.world = World(self.ids, User(application_id, bot_name, global_name=bot_name, bot=True))
        self.transcript = Transcript()
        self.allowed_privileged_intents = PRIVILEGED_INTENTS
        self.interactions: dict[int, Interaction] = {}
        self.attachments: dict[int, tuple[int, StoredAttachment]] = {}
        # Commands per scope (None = global), keyed by (name, type) so ids survive bulk overwrites.
        self._commands: dict[int | None, dict[tuple[str, int], JSON]] = {}
        self._cdn_secret = secrets.token_bytes(16)
        self._spool_dir: str | None = None
        self._outbox: asyncio.Queue[tuple[str, EventBuilder, asyncio.Future[int]]] | None = None
        self._pump: asyncio.Task[None] | None = None
        self.gateway = Gateway(
            self.world,
            token=lambda: self.token,
            application_flags=self._application_flags,
            resume_url=lambda: self.gateway_url,
            allowed_privileged=lambda: self.allowed_privileged_intents,
            heartbeat_interval_ms=heartbeat_interval_ms,
            on_change=self.transcript.notify,
            resume_timeout=resume_timeout,
        )
        self.rest = RestApi(self)
        self.demo: DemoWorld | None = self._build_demo_world() if demo_world else None

    # === Emulator plumbing ===============================================================================

    @property
    def api_url(self) -> str:
        """`http://host:port/api/v10`."""
        return f"{self.base_url}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        """`ws://host:port/gateway`."""
        return f"ws://{self.host}:{self.port}/gateway"

    def env(self) -> dict[str, str]:
        """DISCORD__TOKEN, DISCORD__API_URL, DISCORD__GATEWAY_URL (and the demo guild and admin)."""
        env = {
            "DISCORD__TOKEN": self.token,
            "DISCORD__API_URL": self.api_url,
            "DISCORD__GATEWAY_URL": self.gateway_url,
        }
        if self.demo is not None:
            env["DISCORD__GUILD_IDS"] = str(self.demo.guild_id)
            env["DISCORD__ADMINS"] = str(self.demo.admin_id)
        return env

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Start serving; uploads spool to a fresh temporary directory."""
        self._spool_dir = tempfile.mkdtemp(prefix="discord-emulator-")
        self._outbox = asyncio.Queue()
        self._pump = asyncio.create_task(self._run_outbox(), name="discord-emulator-outbox")
        await super().start(host, port)

    async def stop(self) -> None:
        """Close gateway sockets, stop serving and delete spooled uploads."""
        await self.gateway.close_all()
        await super().stop()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
            self._pump = None
        self._outbox = None
        if self._spool_dir is not None:
            shutil.rmtree(self._spool_dir, ignore_errors=True)
            self._spool_dir = None

    def routes(self, app: web.Application) -> None:
        """Gateway, REST, CDN and control routes."""
        app.router.add_route("GET", "/gateway", self.gateway.handle)
        self.rest.add_routes(app)
        add_control_routes(app, self)

    # === world building (sync: usable before start; connected bots get gateway events) ===================

    def add_user(
        self, username: str, *, global_name: str | None = None, locale: str = "en-US", bot: bool = False
    ) -> User:
        """A new user."""
        user = User(self.ids.next(), username, global_name=global_name or username, bot=bot, locale=locale)
        self.world.users[user.id] = user
        return user

    def add_guild(
        self,
        name: str,
        *,
        owner_id: int | None = None,
        premium_tier: int = 0,
        upload_limit: int | None = None,
        locale: str = "en-US",
        bot_permissions: int = BOT_PERMISSIONS,
        everyone_permissions: int = EVERYONE_PERMISSIONS,
    ) -> Guild:
        """A guild the bot is in: @everyone, a managed bot role, the bot and the owner as members."""
        if owner_id is None:
            owner_id = self.add_user(f"{name.lower().replace(' ', '-')}-owner").id
        guild = Guild(
            self.ids.next(),
            name,
            owner_id=owner_id,
            premium_tier=premium_tier,
            upload_limit_override=upload_limit,
            locale=locale,
        )
        guild.roles[guild.id] = Role(guild.id, "@everyone", everyone_permissions)
        bot_role = Role(
            self.ids.next(),
            self.world.bot.username,
            bot_permissions,
            1,
            managed=True,
            bot_id=self.world.bot.id,
        )
        guild.roles[bot_role.id] = bot_role
        guild.members[self.world.bot.id] = Member(self.world.bot, [bot_role.id])
        guild.members[owner_id] = Member(self.world.user(owner_id))
        self.world.guilds[guild.id] = guild
        self._emit_nowait(
            "GUILD_CREATE",
            lambda s: self.world.guild_payload(guild, with_members=s.has(Intent.GUILD_MEMBERS)),
        )
        return guild

    def add_role(self, guild_id: int, name: str, permissions: int) -> Role:
        """A role with these permissions."""
        guild = self.world.guilds[guild_id]
        role = Role(self.ids.next(), name, permissions, position=len(guild.roles))
        guild.roles[role.id] = role
        payload = {"guild_id": str(guild_id), "role": role.payload()}
        self._emit_nowait("GUILD_ROLE_CREATE", lambda s: payload)
        return role

    def add_member(
        self, guild_id: int, user_id: int, *, permissions: int | None = None, role_ids: tuple[int, ...] = ()
    ) -> Member:
        """Make a user a member; `permissions` gives them a role of their own with those bits."""
        guild = self.world.guilds[guild_id]
        user = self.world.user(user_id)
        roles = list(role_ids)
        if permissions is not None:
            roles.append(self.add_role(guild_id, f"{user.username}-role", permissions).id)
        member = guild.members.get(user_id)
        if member is None:
            member = guild.members[user_id] = Member(user, roles)
            event = "GUILD_MEMBER_ADD"
        else:
            member.role_ids.extend(r for r in roles if r not in member.role_ids)
            event = "GUILD_MEMBER_UPDATE"
        payload = member.payload() | {"guild_id": str(guild_id)}
        self._emit_nowait(event, lambda s: payload if s.has(Intent.GUILD_MEMBERS) else None)
        return member

    def set_bot_permissions(self, guild_id: int, permissions: int) -> None:
        """Replace the permissions of the bot's managed role."""
        guild = self.world.guilds[guild_id]
        role = next(r for r in guild.roles.values() if r.bot_id == self.world.bot.id)
        role.permissions = permissions
        payload = {"guild_id": str(guild_id), "role": role.payload()}
        self._emit_nowait("GUILD_ROLE_UPDATE", lambda s: payload)

    def set_premium_tier(self, guild_id: int, tier: int) -> None:
        """Change the boost tier (and so the default upload limit)."""
        if tier not in (0, 1, 2, 3):
            raise ValueError("premium tier is 0..3")
        guild = self.world.guilds[guild_id]
        guild.premium_tier = tier
        self._emit_guild_update(guild)

    def set_upload_limit(self, guild_id: int, limit: int | None) -> None:
        """Override the guild's upload limit in bytes (None: back to the tier's)."""
        self.world.guilds[guild_id].upload_limit_override = limit

    def add_text_channel(self, guild_id: int, name: str, *, topic: str | None = None) -> Channel:
        """A text channel."""
        guild = self.world.guilds[guild_id]
        position = sum(1 for c in guild.channel_ids if not self.world.channels[c].is_thread)
        channel = Channel(
            self.ids.next(), ChannelType.GUILD_TEXT, name, guild_id, position=position, topic=topic
        )
        self.world.channels[channel.id] = channel
        guild.channel_ids.append(channel.id)
        payload = self.world.channel_payload(channel)
        self._emit_nowait("CHANNEL_CREATE", lambda s: payload)
        return channel

    def add_thread(self, parent_id: int, name: str, *, owner_id: int | None = None) -> Channel:
        """A public thread under a text channel."""
        parent = self.world.channels[parent_id]
        if parent.type is not ChannelType.GUILD_TEXT or parent.guild_id is None:
            raise ValueError("threads live under guild text channels")
        owner = owner_id if owner_id is not None else self.world.guilds[parent.guild_id].owner_id
        thread = Channel(
            self.ids.next(),
            ChannelType.PUBLIC_THREAD,
            name,
            parent.guild_id,
            parent_id=parent_id,
            owner_id=owner,
        )
        self.world.channels[thread.id] = thread
        self.world.guilds[parent.guild_id].channel_ids.append(thread.id)
        payload = self.world.channel_payload(thread) | {"newly_created": True}
        self._emit_nowait("THREAD_CREATE", lambda s: payload)
        return thread

    def set_overwrite(
        self, channel_id: int, target_id: int, *, allow: int = 0, deny: int = 0, member: bool = False
    ) -> None:
        """Set a channel permission overwrite for a role (or a member)."""
        channel = self.world.channels[channel_id]
        channel.overwrites = [ow for ow in channel.overwrites if ow.id != target_id]
        channel.overwrites.append(Overwrite(target_id, 1 if member else 0, allow, deny))
        payload = self.world.channel_payload(channel)
        self._emit_nowait("CHANNEL_UPDATE", lambda s: payload)

    def open_dm(self, user_id: int) -> Channel:
        """The DM channel between a user and the bot (created once)."""
        existing = self.world.dms_by_user.get(user_id)
        if existing is not None:
            return self.world.channels[existing]
        self.world.user(user_id)
        channel = Channel(self.ids.next(), ChannelType.DM, recipient_id=user_id)
        self.world.channels[channel.id] = channel
        self.world.dms_by_user[user_id] = channel.id
        return channel

    def set_privileged_intents(
        self, *, message_content: bool = True, members: bool = True, presences: bool = True
    ) -> None:
        """The developer portal switches: an IDENTIFY asking for a disabled one is closed with 4014."""
        bits = 0
        if message_content:
            bits |= Intent.MESSAGE_CONTENT
        if members:
            bits |= Intent.GUILD_MEMBERS
        if presences:
            bits |= Intent.GUILD_PRESENCES
        self.allowed_privileged_intents = int(bits)

    # === injecting events ================================================================================

    async def send_message(
        self,
        channel_id: int,
        author_id: int,
        content: str = "",
        *,
        mention_bot: bool = False,
        reply_to: int | None = None,
        embeds: list[JSON] | None = None,
        link_previews: bool = True,
    ) -> StoredMessage:
        """A user posts a message (guild channel, thread or DM); MESSAGE_CREATE goes to the bot."""
        channel = self.world.channels[channel_id]
        author = self.world.user(author_id)
        guild = self.world.guild_of(channel)
        if guild is not None and author.id not in guild.members:
            raise ValueError(f"user {author.id} is not a member of guild {guild.id}")
        if channel.is_dm and author.id != channel.recipient_id:
            raise ValueError("only the DM's recipient can post in it")
        if mention_bot:
            content = f"<@{self.world.bot.id}> {content}"
        previews = [_link_preview(url) for url in URL.findall(content)] if link_previews else []
        message = StoredMessage(
            self.ids.next(),
            channel.id,
            channel.guild_id,
            author.id,
            content=content,
            embeds=(embeds or []) + previews,
            mention_ids=self._mentions(content),
        )
        if reply_to is not None:
            ref = self.world.messages[reply_to]
            message.type = 19
            message.reference = reference_to(ref)
            if ref.author_id not in message.mention_ids:
                message.mention_ids.append(ref.author_id)
        self._store(message)
        self.transcript.notify()
        await self._emit(*self._message_event("MESSAGE_CREATE", message))
        return message

    async def invoke_command(
        self,
        name: str,
        *,
        user_id: int,
        channel_id: int,
        options: dict[str, Any] | None = None,
        locale: str | None = None,
        check_permissions: bool = True,
    ) -> Interaction:
        """A user runs a slash command ("post", or "settings language" for a subcommand) synced by the bot."""
        channel = self.world.channels[channel_id]
        guild = self.world.guild_of(channel)
        user = self.world.user(user_id)
        parts = name.split()
        command = self._find_command(parts[0], guild)
        if guild is None and not _usable_in_dms(command):
            raise PermissionError(f"/{parts[0]} is not available in DMs")
        if guild is not None:
            if user_id not in guild.members:
                raise ValueError(f"user {user_id} is not a member of guild {guild.id}")
            needed = command.get("default_member_permissions")
            perms = self.world.channel_permissions(channel, user_id)
            if check_permissions and needed is not None and int(needed) & ~perms:
                raise PermissionError(f"/{parts[0]} is hidden from users without permissions {needed}")
        resolved: JSON = {}
        opts = _build_options(command, parts[1:], dict(options or {}), self.world, guild, resolved)
        data: JSON = {"id": command["id"], "name": command["name"], "type": command.get("type", 1)}
        if opts:
            data["options"] = opts
        if resolved:
            data["resolved"] = resolved
        if command.get("guild_id"):
            data["guild_id"] = command["guild_id"]
        return await self._interact(2, name, data, channel, user, locale)

    async def click_component(
        self,
        message_id: int,
        custom_id: str,
        *,
        user_id: int,
        values: list[str] | None = None,
        locale: str | None = None,
    ) -> Interaction:
        """A user clicks a button (or picks `values` in a select) on a message the bot sent."""
        message = self.world.messages[message_id]
        component = _find_component(message.components, custom_id)
        if component is None:
            raise LookupError(f"message {message_id} has no component {custom_id!r}")
        if component.get("disabled"):
            raise PermissionError(f"component {custom_id!r} is disabled")
        channel = self.world.channels[message.channel_id]
        data: JSON = {"custom_id": custom_id, "component_type": component["type"]}
        if values is not None:
            data["values"] = values
        return await self._interact(3, custom_id, data, channel, self.world.user(user_id), locale, message)

    async def reconnect_gateway(self) -> None:
        """Send op 7 RECONNECT: discord.py closes and RESUMEs."""
        await self.gateway.reconnect_all()

    async def drop_gateway(self, code: int = 4000) -> None:
        """Close gateway sockets abruptly; discord.py reconnects and RESUMEs."""
        await self.gateway.drop_all(code)

    # === reading what happened ===========================================================================

    @property
    def sessions(self) -> list[Session]:
        """Identified gateway sessions (with their intents and IDENTIFY payload)."""
        return self.gateway.live_sessions()

    def calls(
        self,
        route: str | None = None,
        *,
        channel_id: int | None = None,
        interaction_id: int | None = None,
        ok: bool | None = None,
        since: int = 0,
    ) -> list[Call]:
        """Recorded REST calls matching every given criterion."""
        return self.transcript.filter(
            route, channel_id=channel_id, interaction_id=interaction_id, ok=ok, since=since
        )

    def messages_in(self, channel_id: int, *, include_deleted: bool = False) -> list[StoredMessage]:
        """Messages of a channel in order (ephemeral ones included; see `.ephemeral`)."""
        return [
            m
            for m in self.world.messages.values()
            if m.channel_id == channel_id and (include_deleted or not m.deleted)
        ]

    def message(self, message_id: int) -> StoredMessage:
        """A message by id."""
        return self.world.messages[message_id]

    def interaction_responses(self, interaction_id: int) -> list[Call]:
        """The callback, follow-ups and original-response edits of one interaction, in order."""
        return self.transcript.filter(interaction_id=interaction_id)

    def interaction_messages(self, interaction_id: int) -> list[StoredMessage]:
        """Messages the bot created answering one interaction (original first)."""
        inter = self.interactions[interaction_id]
        ids = ([inter.original_message_id] if inter.original_message_id else []) + inter.followup_ids
        return [self.world.messages[i] for i in ids]

    def commands(self, guild_id: int | None = None) -> list[JSON]:
        """Registered commands: global, or of one guild."""
        return list(self._commands.get(guild_id, {}).values())

    async def wait_for(
        self,
        predicate: Callable[[Call], bool],
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 -- the control API's documented shape
        since: int = 0,
    ) -> Call:
        """The first REST call from index `since` satisfying `predicate` (waits on new calls)."""
        return await self.transcript.wait_for(predicate, timeout=timeout, since=since)

    async def wait_for_message(
        self,
        channel_id: int,
        predicate: Callable[[StoredMessage], bool] | None = None,
        *,
        after: int = 0,
        author_id: int | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> StoredMessage:
        """The first message in a channel after id `after`, by `author_id` (the bot), matching `predicate`."""
        author = self.world.bot.id if author_id is None else author_id
        found: list[StoredMessage] = []

        def check() -> bool:
            for m in self.messages_in(channel_id):
                loading = bool(m.flags & MessageFlag.LOADING)
                if (
                    m.id > after
                    and m.author_id == author
                    and not loading
                    and (predicate is None or predicate(m))
                ):
                    found.append(m)
                    return True
            return False

        await self.transcript.wait_until(check, timeout=timeout)
        return found[0]

    async def wait_for_session(self, *, timeout: float = 5.0) -> Session:  # noqa: ASYNC109
        """The first identified, connected gateway session."""
        await self.transcript.wait_until(lambda: any(s.connected for s in self.sessions), timeout=timeout)
        return next(s for s in self.sessions if s.connected)

    # === gateway events ==================================================================================

    def _emit_nowait(self, event: str, build: EventBuilder) -> asyncio.Future[int] | None:
        if self._outbox is None or not self.gateway.sessions:
            return None
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._outbox.put_nowait((event, build, future))
        return future

    async def _emit(self, event: str, build: EventBuilder) -> int:
        """Queue an event behind earlier ones and wait until it is sent."""
        future = self._emit_nowait(event, build)
        return 0 if future is None else await future

    async def _run_outbox(self) -> None:
        assert self._outbox is not None
        while True:
            event, build, future = await self._outbox.get()
            try:
                sent = await self.gateway.dispatch(event, build)
            except Exception as exc:  # a broken socket must not stop later events
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(sent)

    def _message_event(self, event: str, message: StoredMessage) -> tuple[str, EventBuilder]:
        """MESSAGE_CREATE/UPDATE as each session may see it (intents decide visibility and content)."""
        full = self.world.message_payload(message, self._cdn)
        blank = self.world.message_payload(message, self._cdn, blank=True)

        def build(session: Session) -> JSON | None:
            if message.ephemeral or message.flags & MessageFlag.LOADING:
                return None
            needed = Intent.DIRECT_MESSAGES if message.guild_id is None else Intent.GUILD_MESSAGES
            if not session.has(needed):
                return None
            return full if self._sees_content(message, session.has(Intent.MESSAGE_CONTENT)) else blank

        return event, build

    def _sees_content(self, message: StoredMessage, has_intent: bool) -> bool:
        """Discord's rule: content is kept with the intent, in DMs, in the bot's own messages and mentions."""
        return (
            has_intent
            or message.guild_id is None
            or message.author_id == self.world.bot.id
            or self.world.mentions_bot(message)
        )

    def _emit_guild_update(self, guild: Guild) -> None:
        payload = self.world.guild_update_payload(guild)
        self._emit_nowait("GUILD_UPDATE", lambda s: payload)

    async def _interact(
        self,
        kind: int,
        name: str,
        data: JSON,
        channel: Channel,
        user: User,
        locale: str | None,
        message: StoredMessage | None = None,
    ) -> Interaction:
        guild = self.world.guild_of(channel)
        inter_id = self.ids.next()
        token = f"aW50ZXJhY3Rpb246{inter_id}:{secrets.token_urlsafe(48)}"
        limit = self.world.upload_limit(channel)
        payload: JSON = {
            "id": str(inter_id),
            "application_id": str(self.application_id),
            "type": kind,
            "token": token,
            "version": 1,
            "data": data,
            "channel_id": str(channel.id),
            "channel": self.world.channel_payload(channel),
            "locale": locale or user.locale,
            "app_permissions": str(self.world.channel_permissions(channel, self.world.bot.id)),
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": limit,
            "context": 1 if guild is None else 0,
        }
        if guild is not None:
            member = guild.members[user.id]
            payload["guild_id"] = str(guild.id)
            payload["guild"] = {"id": str(guild.id), "locale": guild.locale, "features": []}
            payload["guild_locale"] = guild.locale
            payload["authorizing_integration_owners"] = {"0": str(guild.id)}
            payload["member"] = member.payload() | {
                "permissions": str(self.world.channel_permissions(channel, user.id))
            }
        else:
            payload["user"] = user.payload()
            payload["authorizing_integration_owners"] = {"0": str(user.id)}
        if message is not None:
            payload["message"] = self.world.message_payload(message, self._cdn)
        inter = Interaction(
            inter_id,
            token,
            kind,
            name,
            guild.id if guild else None,
            channel.id,
            user.id,
            payload,
            limit,
            source_message_id=message.id if message else None,
        )
        self.interactions[inter_id] = inter
        await self._emit("INTERACTION_CREATE", lambda s: payload)
        return inter

    # === shared by the REST handlers ===================================================================

    def _cdn(self, path: str) -> str:
        """A signed CDN URL for a path, valid for a day (as Discord's ex/is/hm parameters)."""
        issued = int(time.time())
        expires = issued + 86400
        mac = self._sign(path, expires, issued)
        return f"{self.base_url}{path}?ex={expires:x}&is={issued:x}&hm={mac}&"

    def _sign(self, path: str, expires: int, issued: int) -> str:
        return hmac.new(self._cdn_secret, f"{path}|{expires}|{issued}".encode(), hashlib.sha256).hexdigest()

    def _mentions(self, content: str) -> list[int]:
        ids: list[int] = []
        for raw in MENTION.findall(content):
            uid = int(raw)
            if uid in self.world.users and uid not in ids:
                ids.append(uid)
        return ids

    def _store(self, message: StoredMessage) -> None:
        self.world.messages[message.id] = message
        channel = self.world.channels[message.channel_id]
        channel.last_message_id = message.id
        channel.message_count += 1
        for att in message.attachments:
            self.attachments[att.id] = (message.channel_id, att)

    def _application_flags(self) -> int:
        flags = 0
        if self.allowed_privileged_intents & Intent.MESSAGE_CONTENT:
            flags |= APP_FLAG_MESSAGE_CONTENT_LIMITED
        if self.allowed_privileged_intents & Intent.GUILD_MEMBERS:
            flags |= APP_FLAG_GUILD_MEMBERS_LIMITED
        if self.allowed_privileged_intents & Intent.GUILD_PRESENCES:
            flags |= APP_FLAG_PRESENCE_LIMITED
        return flags

    def _find_command(self, name: str, guild: Guild | None) -> JSON:
        """The synced slash command a user would pick: the guild's own first, then the global one."""
        scopes: list[int | None] = [guild.id] if guild is not None else []
        for scope in [*scopes, None]:
            for command in self._commands.get(scope, {}).values():
                if command["name"] == name and command["type"] == 1:
                    return command
        raise LookupError(f"/{name} is not registered (did the bot sync its commands?)")

    # === the demo world ==================================================================================

    def _build_demo_world(self) -> DemoWorld:
        owner = self.add_user("owner", global_name="Guild Owner")
        admin = self.add_user("alice", global_name="Alice")
        member = self.add_user("bob", global_name="Bob", locale="ru")
        guild = self.add_guild("Sandbox", owner_id=owner.id)
        general = self.add_text_channel(guild.id, "general")
        thread = self.add_thread(general.id, "tiktok-links", owner_id=member.id)
        self.add_member(guild.id, admin.id, permissions=int(Perm.MANAGE_GUILD | Perm.MANAGE_MESSAGES))
        self.add_member(guild.id, member.id)
        dm = self.open_dm(member.id)
        return DemoWorld(guild.id, general.id, thread.id, admin.id, member.id, dm.id)

    # === HTTP control API (for the CLI demo; tests may call the methods above directly) ==================


def _link_preview(url: str) -> JSON:
    """The embed Discord unfurls for a link (TikTok links become video embeds)."""
    if "tiktok.com" in url:
        return {
            "type": "video",
            "url": url,
            "title": "TikTok",
            "provider": {"name": "TikTok", "url": "https://www.tiktok.com"},
        }
    return {"type": "link", "url": url, "title": url}


def _usable_in_dms(command: JSON) -> bool:
    contexts = command.get("contexts")
    if contexts is not None:
        return 1 in contexts
    return bool(command.get("dm_permission", True))


def _find_component(components: list[JSON], custom_id: str) -> JSON | None:
    for component in components:
        if component.get("custom_id") == custom_id:
            return component
        for key in ("components", "accessory"):
            inner = component.get(key)
            found = _find_component(inner if isinstance(inner, list) else [inner] if inner else [], custom_id)
            if found is not None:
                return found
    return None


_OPTION_TYPES = {3: str, 4: int, 5: bool, 10: float}


def _build_options(
    command: JSON, path: list[str], values: dict[str, Any], world: World, guild: Guild | None, resolved: JSON
) -> list[JSON]:
    """Interaction options for a command path and {name: value}, validated against the synced definition."""
    defs: list[JSON] = command.get("options") or []
    if path:
        head = next((o for o in defs if o["name"] == path[0] and o["type"] in (1, 2)), None)
        if head is None:
            raise LookupError(f"/{command['name']} has no subcommand {path[0]!r}")
        inner = _build_options(head, path[1:], values, world, guild, resolved)
        return [{"name": head["name"], "type": head["type"], "options": inner}]
    if any(o["type"] in (1, 2) for o in defs):
        raise ValueError(f"/{command['name']} needs a subcommand")
    out: list[JSON] = []
    for definition in defs:
        name = definition["name"]
        if name not in values:
            if definition.get("required"):
                raise ValueError(f"option {name!r} is required")
            continue
        value = values.pop(name)
        kind = definition["type"]
        if kind in _OPTION_TYPES:
            value = _OPTION_TYPES[kind](value)
            choices = definition.get("choices")
            if choices and value not in [c["value"] for c in choices]:
                raise ValueError(f"{value!r} is not a choice of option {name!r}")
        elif kind == 6:
            user = world.user(int(value))
            resolved.setdefault("users", {})[str(user.id)] = user.payload()
            member = guild.members.get(user.id) if guild else None
            if member is not None:
                resolved.setdefault("members", {})[str(user.id)] = member.payload(with_user=False) | {
                    "permissions": "0"
                }
            value = str(user.id)
        elif kind == 7:
            channel = world.channels[int(value)]
            resolved.setdefault("channels", {})[str(channel.id)] = world.channel_payload(channel) | {
                "permissions": "0"
            }
            value = str(channel.id)
        else:
            value = str(value)
        out.append({"name": name, "type": kind, "value": value})
    if values:
        raise ValueError(f"unknown options {sorted(values)}")
    return out
