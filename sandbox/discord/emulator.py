"""DiscordEmulator: the loopback Discord REST API, gateway and CDN, with an in-process control API."""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import hashlib
import hmac
import json
import math
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from sandbox.base import Emulator
from sandbox.discord.control import add_control_routes
from sandbox.discord.gateway import EventBuilder, Gateway, Session
from sandbox.discord.messages import (
    DiscordError,
    check_commands,
    check_message,
    check_not_empty,
    invalid_form,
)
from sandbox.discord.transcript import Call, Transcript, UploadedFile
from sandbox.discord.uploads import BadBody, Body, TooLarge, drain, read_body
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
)

API_PREFIX = "/api/v10"
SANDBOX_TOKEN = "MTI5MDAwMDAwMDAwMDAwMDAwMQ.GSandB.discord-emulator-sandbox-token-not-a-secret"  # noqa: S105
SANDBOX_APPLICATION_ID = 1290000000000000001
MENTION = re.compile(r"<@!?(\d+)>")
URL = re.compile(r"https?://\S+")
# Flags a message's author may set or clear; the rest are Discord's own.
AUTHOR_FLAGS = int(MessageFlag.SUPPRESS_EMBEDS | MessageFlag.SUPPRESS_NOTIFICATIONS)
# Application flags: GATEWAY_MESSAGE_CONTENT and GATEWAY_GUILD_MEMBERS (verified apps use 1<<12 and 1<<14).
APP_FLAG_MESSAGE_CONTENT = 1 << 18
APP_FLAG_GUILD_MEMBERS = 1 << 15
APP_FLAG_PRESENCE = 1 << 13

Handler = Callable[["_Ctx"], Awaitable[tuple[int, Any]]]


@dataclass(slots=True)
class Fault:
    """A canned error for the next `remaining` calls matching `pattern` ("METHOD /path-or-route", fnmatch)."""

    pattern: str
    status: int = 429
    retry_after: float = 0.0
    code: int | None = None
    is_global: bool = False
    remaining: int = 1
    message: str = ""

    def matches(self, method: str, path: str, route: str) -> bool:
        """Whether a call is affected."""
        return fnmatch.fnmatchcase(f"{method} {path}", self.pattern) or fnmatch.fnmatchcase(
            f"{method} {route}", self.pattern
        )


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
    admin_id: int  # a member with Manage Server and Manage Messages
    member_id: int  # a plain member
    dm_channel_id: int  # the plain member's DM with the bot


@dataclass(slots=True)
class _Ctx:
    """What a REST handler learned about its call, for the transcript."""

    request: web.Request
    route: str
    channel_id: int | None = None
    message_id: int | None = None
    interaction_id: int | None = None
    guild_id: int | None = None
    payload: Any = None
    files: list[UploadedFile] = field(default_factory=list)
    flags: int | None = None

    def int_arg(self, name: str) -> int:
        """A snowflake path parameter (404 if not numeric)."""
        raw = self.request.match_info[name]
        if not raw.isdigit():
            raise DiscordError(404, 0, "404: Not Found")
        return int(raw)


class DiscordEmulator(Emulator):
    """A loopback Discord: REST under /api/v10, the gateway at /gateway, a CDN and /_control.

    See the package docstring for how to point discord.py at it.
    """

    name = "discord"

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
        self.faults: list[Fault] = []
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
        )
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
        """REST, gateway, CDN and control routes."""
        api = API_PREFIX
        add = app.router.add_route
        add("GET", "/gateway", self.gateway.handle)
        rest: list[tuple[str, str, Handler, bool]] = [
            ("GET", "/users/@me", self._get_me, True),
            ("GET", "/users/{user_id}", self._get_user, True),
            ("POST", "/users/@me/channels", self._create_dm, True),
            ("GET", "/oauth2/applications/@me", self._get_application, True),
            ("GET", "/applications/@me", self._get_application, True),
            ("GET", "/gateway", self._get_gateway, False),
            ("GET", "/gateway/bot", self._get_gateway_bot, True),
            ("GET", "/applications/{application_id}/commands", self._get_commands, True),
            ("PUT", "/applications/{application_id}/commands", self._put_commands, True),
            ("POST", "/applications/{application_id}/commands", self._post_command, True),
            ("DELETE", "/applications/{application_id}/commands/{command_id}", self._delete_command, True),
            ("GET", "/applications/{application_id}/guilds/{guild_id}/commands", self._get_commands, True),
            ("PUT", "/applications/{application_id}/guilds/{guild_id}/commands", self._put_commands, True),
            ("POST", "/applications/{application_id}/guilds/{guild_id}/commands", self._post_command, True),
            (
                "DELETE",
                "/applications/{application_id}/guilds/{guild_id}/commands/{command_id}",
                self._delete_command,
                True,
            ),
            ("GET", "/guilds/{guild_id}", self._get_guild, True),
            ("GET", "/guilds/{guild_id}/channels", self._get_guild_channels, True),
            ("GET", "/guilds/{guild_id}/members/{user_id}", self._get_member, True),
            ("GET", "/channels/{channel_id}", self._get_channel, True),
            ("GET", "/channels/{channel_id}/messages", self._get_messages, True),
            ("POST", "/channels/{channel_id}/messages", self._create_message, True),
            ("GET", "/channels/{channel_id}/messages/{message_id}", self._get_message, True),
            ("PATCH", "/channels/{channel_id}/messages/{message_id}", self._edit_message, True),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}", self._delete_message, True),
            ("POST", "/channels/{channel_id}/typing", self._typing, True),
            ("POST", "/interactions/{interaction_id}/{token}/callback", self._callback, False),
            ("POST", "/webhooks/{application_id}/{token}", self._followup, False),
            (
                "GET",
                "/webhooks/{application_id}/{token}/messages/{message_id}",
                self._get_webhook_message,
                False,
            ),
            (
                "PATCH",
                "/webhooks/{application_id}/{token}/messages/{message_id}",
                self._edit_webhook_message,
                False,
            ),
            (
                "DELETE",
                "/webhooks/{application_id}/{token}/messages/{message_id}",
                self._delete_webhook_message,
                False,
            ),
        ]
        for method, path, handler, auth in rest:
            add(method, api + path, self._api(f"{method} {path}", handler, auth=auth))
        add("*", api + "/{tail:.*}", self._api("* unknown", self._unknown, auth=False))
        for prefix in ("", "/media"):
            add("GET", prefix + "/attachments/{channel_id}/{attachment_id}/{filename}", self._cdn_get)
        self._control_routes(app)

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

    def inject_fault(
        self,
        pattern: str = "*",
        *,
        status: int = 429,
        retry_after: float = 0.0,
        count: int = 1,
        code: int | None = None,
        is_global: bool = False,
        message: str = "",
    ) -> Fault:
        """Answer the next `count` calls matching `pattern` with an error (429 is retried by discord.py)."""
        fault = Fault(pattern, status, retry_after, code, is_global, count, message)
        self.faults.append(fault)
        return fault

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
            message.reference = _reference(ref)
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
        payload = {
            k: v
            for k, v in self.world.guild_payload(guild, with_members=False).items()
            if k not in _GUILD_CREATE_ONLY
        }
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

    # === REST plumbing ===================================================================================

    def _api(
        self, route: str, handler: Handler, *, auth: bool
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def serve(request: web.Request) -> web.Response:
            ctx = _Ctx(request, route)
            status: int
            body: Any
            headers: dict[str, str] = {}
            try:
                fault = self._take_fault(request, route)
                if fault is not None:
                    status, body, headers = _fault_response(fault)
                else:
                    if auth and request.headers.get("Authorization") != f"Bot {self.token}":
                        raise DiscordError(401, 0, "401: Unauthorized")
                    status, body = await handler(ctx)
            except DiscordError as exc:
                status, body = exc.status, exc.body()
            except TooLarge:
                status, body = 413, {"code": 40005, "message": "Request entity too large"}
            except BadBody as exc:
                status, body = (
                    400,
                    {"code": 50109, "message": f"The request body contains invalid JSON. ({exc})"},
                )
            await drain(request)
            self._log_call(ctx, status, body)
            if status == 204 or body is None:
                return web.Response(status=204, headers=headers)
            # discord.py parses JSON only when Content-Type is exactly application/json (no charset).
            headers["Content-Type"] = "application/json"
            return web.Response(status=status, body=_dumps(body), headers=headers)

        return serve

    def _take_fault(self, request: web.Request, route: str) -> Fault | None:
        path = request.path.removeprefix(API_PREFIX)
        for fault in self.faults:
            if fault.remaining > 0 and fault.matches(request.method, path, route.split(" ", 1)[-1]):
                fault.remaining -= 1
                return fault
        return None

    def _log_call(self, ctx: _Ctx, status: int, body: Any) -> None:
        payload = ctx.payload
        flags = ctx.flags
        if flags is None and isinstance(payload, dict):
            raw = payload.get("flags")
            if raw is None and isinstance(payload.get("data"), dict):
                raw = payload["data"].get("flags")
            flags = raw if isinstance(raw, int) else None
        request = ctx.request
        route = ctx.route if not ctx.route.startswith("* ") else f"{request.method} {request.path}"
        self.transcript.add(
            Call(
                seq=len(self.transcript),
                method=request.method,
                route=route,
                path=request.path,
                query=dict(request.query),
                status=status,
                channel_id=ctx.channel_id,
                message_id=ctx.message_id,
                interaction_id=ctx.interaction_id,
                guild_id=ctx.guild_id,
                payload=payload,
                files=tuple(ctx.files),
                flags=flags,
                response=body,
            )
        )

    async def _read(self, ctx: _Ctx, limit: int) -> Body:
        assert self._spool_dir is not None
        body = await read_body(ctx.request, limit=limit, spool_dir=self._spool_dir)
        ctx.payload = body.payload
        ctx.files = body.files
        return body

    def _cdn(self, path: str) -> str:
        """A signed CDN URL for a path, valid for a day (as Discord's ex/is/hm parameters)."""
        issued = int(time.time())
        expires = issued + 86400
        mac = self._sign(path, expires, issued)
        return f"{self.base_url}{path}?ex={expires:x}&is={issued:x}&hm={mac}&"

    def _sign(self, path: str, expires: int, issued: int) -> str:
        return hmac.new(self._cdn_secret, f"{path}|{expires}|{issued}".encode(), hashlib.sha256).hexdigest()

    def _channel(self, ctx: _Ctx) -> Channel:
        channel_id = ctx.int_arg("channel_id")
        ctx.channel_id = channel_id
        channel = self.world.channels.get(channel_id)
        if channel is None:
            raise DiscordError(404, 10003, "Unknown Channel")
        ctx.guild_id = channel.guild_id
        if channel.guild_id is not None and not self.world.channel_permissions(channel, self.world.bot.id):
            raise DiscordError(403, 50001, "Missing Access")
        return channel

    def _message_in(self, ctx: _Ctx, channel: Channel) -> StoredMessage:
        message_id = ctx.int_arg("message_id")
        ctx.message_id = message_id
        message = self.world.messages.get(message_id)
        if message is None or message.deleted or message.channel_id != channel.id or message.ephemeral:
            raise DiscordError(404, 10008, "Unknown Message")
        return message

    def _require(self, channel: Channel, perms: int) -> None:
        have = self.world.channel_permissions(channel, self.world.bot.id)
        if perms & ~have:
            raise DiscordError(403, 50013, "Missing Permissions")

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

    def _public(self, message: StoredMessage) -> JSON:
        """A message as the REST API returns it to the bot (content blanked without the portal intent)."""
        has_intent = bool(self.allowed_privileged_intents & Intent.MESSAGE_CONTENT)
        return self.world.message_payload(
            message, self._cdn, blank=not self._sees_content(message, has_intent)
        )

    def _application_flags(self) -> int:
        flags = 0
        if self.allowed_privileged_intents & Intent.MESSAGE_CONTENT:
            flags |= APP_FLAG_MESSAGE_CONTENT
        if self.allowed_privileged_intents & Intent.GUILD_MEMBERS:
            flags |= APP_FLAG_GUILD_MEMBERS
        if self.allowed_privileged_intents & Intent.GUILD_PRESENCES:
            flags |= APP_FLAG_PRESENCE
        return flags

    # === building messages from payloads =================================================================

    def _attachments_from(
        self, payload: JSON, files: list[UploadedFile], keep: list[StoredAttachment] | None
    ) -> list[StoredAttachment]:
        """New attachment list: kept ones named by id in `attachments`, plus each uploaded `files[n]`."""
        entries = payload.get("attachments")
        by_index = {str(e.get("id")): e for e in entries or [] if isinstance(e, dict)}
        result: list[StoredAttachment] = []
        if keep is not None:
            if entries is None:
                result.extend(keep)
            else:
                kept_ids = {str(e.get("id")) for e in entries if isinstance(e, dict)}
                result.extend(a for a in keep if str(a.id) in kept_ids)
        for upload in files:
            index = upload.field.removeprefix("files[").removesuffix("]")
            entry = by_index.get(index, {})
            result.append(
                StoredAttachment(
                    self.ids.next(),
                    str(entry.get("filename") or upload.filename),
                    upload.size,
                    upload.sha256,
                    upload.path,
                    upload.content_type,
                    entry.get("description"),
                )
            )
        return result

    def _new_message(
        self,
        payload: JSON,
        files: list[UploadedFile],
        channel: Channel,
        *,
        interaction: Interaction | None = None,
        allowed_flags: int = AUTHOR_FLAGS,
    ) -> StoredMessage:
        if not isinstance(payload, dict):
            raise invalid_form({"_errors": [{"code": "DICT_TYPE_CONVERT", "message": "Must be an object."}]})
        check_message(payload, n_files=len(files))
        check_not_empty(payload, n_attachments=len(files))
        content = payload.get("content") or ""
        message = StoredMessage(
            self.ids.next(),
            channel.id,
            channel.guild_id,
            self.world.bot.id,
            content=content,
            embeds=list(payload.get("embeds") or []),
            components=list(payload.get("components") or []),
            flags=int(payload.get("flags") or 0) & allowed_flags,
            tts=bool(payload.get("tts")),
            mention_ids=self._mentions(content),
        )
        if interaction is not None:
            message.webhook_id = self.application_id
            message.interaction_id = interaction.id
            message.type = 20 if interaction.type == 2 else 0
        reference = payload.get("message_reference")
        if isinstance(reference, dict) and reference.get("message_id") is not None:
            ref = self.world.messages.get(int(reference["message_id"]))
            ref_channel = int(reference.get("channel_id") or channel.id)
            if ref is None or ref.deleted or ref.channel_id != ref_channel:
                if reference.get("fail_if_not_exists", True):
                    raise invalid_form(
                        {
                            "message_reference": {
                                "_errors": [
                                    {
                                        "code": "MESSAGE_REFERENCE_UNKNOWN_MESSAGE",
                                        "message": "Unknown message",
                                    }
                                ]
                            }
                        }
                    )
            else:
                message.type = 19
                message.reference = _reference(ref)
                mentions = payload.get("allowed_mentions") or {}
                if mentions.get("replied_user", True) and ref.author_id not in message.mention_ids:
                    message.mention_ids.append(ref.author_id)
        message.attachments = self._attachments_from(payload, files, None)
        return message

    def _apply_edit(self, message: StoredMessage, payload: JSON, files: list[UploadedFile]) -> None:
        """Apply an author's edit (content, embeds, components, attachments, SUPPRESS_EMBEDS)."""
        if not isinstance(payload, dict):
            raise invalid_form({"_errors": [{"code": "DICT_TYPE_CONVERT", "message": "Must be an object."}]})
        kept = message.attachments
        if payload.get("attachments") is not None:
            kept_ids = {str(e.get("id")) for e in payload["attachments"] if isinstance(e, dict)}
            kept = [a for a in message.attachments if str(a.id) in kept_ids]
        check_message(payload, n_files=len(files), n_kept=len(kept))
        changed = False
        if "content" in payload:
            message.content = payload["content"] or ""
            message.mention_ids = self._mentions(message.content)
            changed = True
        if "embeds" in payload:
            message.embeds = list(payload["embeds"] or [])
            changed = True
        if "components" in payload:
            message.components = list(payload["components"] or [])
        if "attachments" in payload or files:
            message.attachments = self._attachments_from(payload, files, message.attachments)
            for att in message.attachments:
                self.attachments[att.id] = (message.channel_id, att)
            changed = True
        if payload.get("flags") is not None:
            message.flags = (message.flags & ~AUTHOR_FLAGS) | (int(payload["flags"]) & AUTHOR_FLAGS)
        if changed:
            message.edited = time.time()

    # === REST handlers: identity and gateway =============================================================

    async def _get_me(self, ctx: _Ctx) -> tuple[int, Any]:
        return 200, self.world.bot.payload() | {"verified": True, "mfa_enabled": False, "locale": "en-US"}

    async def _get_user(self, ctx: _Ctx) -> tuple[int, Any]:
        user = self.world.users.get(ctx.int_arg("user_id"))
        if user is None:
            raise DiscordError(404, 10013, "Unknown User")
        return 200, user.payload()

    async def _create_dm(self, ctx: _Ctx) -> tuple[int, Any]:
        body = await self._read(ctx, 0)
        raw = body.payload.get("recipient_id") if isinstance(body.payload, dict) else None
        if raw is None or not str(raw).isdigit() or int(raw) not in self.world.users:
            raise DiscordError(400, 50033, "Invalid Recipient(s)")
        channel = self.open_dm(int(raw))
        ctx.channel_id = channel.id
        return 200, self.world.channel_payload(channel)

    async def _get_application(self, ctx: _Ctx) -> tuple[int, Any]:
        owner = next(iter(self.world.guilds.values())).owner_id if self.world.guilds else self.world.bot.id
        return 200, {
            "id": str(self.application_id),
            "name": self.world.bot.username,
            "icon": None,
            "description": "TikTok bot (Discord emulator)",
            "summary": "",
            "type": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": hashlib.sha256(self.token.encode()).hexdigest(),
            "owner": self.world.user(owner).payload(),
            "team": None,
            "flags": self._application_flags(),
            "bot": self.world.bot.payload(),
            "interactions_endpoint_url": None,
            "redirect_uris": [],
            "tags": [],
            "approximate_guild_count": len(self.world.guilds),
            "install_params": {
                "scopes": ["bot", "applications.commands"],
                "permissions": str(BOT_PERMISSIONS),
            },
            "integration_types_config": {"0": {}},
        }

    async def _get_gateway(self, ctx: _Ctx) -> tuple[int, Any]:
        return 200, {"url": self.gateway_url}

    async def _get_gateway_bot(self, ctx: _Ctx) -> tuple[int, Any]:
        return 200, {
            "url": self.gateway_url,
            "shards": 1,
            "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1},
        }

    async def _unknown(self, ctx: _Ctx) -> tuple[int, Any]:
        raise DiscordError(404, 0, "404: Not Found")

    # === REST handlers: application commands =============================================================

    def _command_scope(self, ctx: _Ctx) -> int | None:
        if ctx.int_arg("application_id") != self.application_id:
            raise DiscordError(403, 50001, "Missing Access")
        if "guild_id" not in ctx.request.match_info:
            return None
        guild_id = ctx.int_arg("guild_id")
        ctx.guild_id = guild_id
        if guild_id not in self.world.guilds:
            raise DiscordError(403, 50001, "Missing Access")
        return guild_id

    def _stored_command(self, scope: int | None, data: JSON, previous: JSON | None) -> JSON:
        kind = int(data.get("type", 1))
        command: JSON = {
            "id": previous["id"] if previous else str(self.ids.next()),
            "application_id": str(self.application_id),
            "version": str(self.ids.next()),
            "type": kind,
            "name": data["name"],
            "name_localizations": data.get("name_localizations"),
            "description": data.get("description", ""),
            "description_localizations": data.get("description_localizations"),
            "options": data.get("options") or [],
            "default_member_permissions": _opt_str_perm(data.get("default_member_permissions")),
            "dm_permission": data.get("dm_permission", True),
            "contexts": data.get("contexts"),
            "integration_types": data.get("integration_types") or [0],
            "nsfw": bool(data.get("nsfw", False)),
        }
        if scope is not None:
            command["guild_id"] = str(scope)
        return command

    async def _get_commands(self, ctx: _Ctx) -> tuple[int, Any]:
        return 200, self.commands(self._command_scope(ctx))

    async def _put_commands(self, ctx: _Ctx) -> tuple[int, Any]:
        scope = self._command_scope(ctx)
        body = await self._read(ctx, 0)
        check_commands(body.payload)
        old = self._commands.get(scope, {})
        new: dict[tuple[str, int], JSON] = {}
        for data in body.payload:
            key = (data["name"], int(data.get("type", 1)))
            new[key] = self._stored_command(scope, data, old.get(key))
        self._commands[scope] = new
        return 200, list(new.values())

    async def _post_command(self, ctx: _Ctx) -> tuple[int, Any]:
        scope = self._command_scope(ctx)
        body = await self._read(ctx, 0)
        check_commands([body.payload])
        commands = self._commands.setdefault(scope, {})
        key = (body.payload["name"], int(body.payload.get("type", 1)))
        existed = key in commands
        commands[key] = self._stored_command(scope, body.payload, commands.get(key))
        return (200 if existed else 201), commands[key]

    async def _delete_command(self, ctx: _Ctx) -> tuple[int, Any]:
        scope = self._command_scope(ctx)
        command_id = ctx.request.match_info["command_id"]
        commands = self._commands.get(scope, {})
        for key, command in list(commands.items()):
            if command["id"] == command_id:
                del commands[key]
                return 204, None
        raise DiscordError(404, 10063, "Unknown application command")

    def _find_command(self, name: str, guild: Guild | None) -> JSON:
        """The synced slash command a user would pick: the guild's own first, then the global one."""
        scopes: list[int | None] = [guild.id] if guild is not None else []
        for scope in [*scopes, None]:
            for command in self._commands.get(scope, {}).values():
                if command["name"] == name and command["type"] == 1:
                    return command
        raise LookupError(f"/{name} is not registered (did the bot sync its commands?)")

    # === REST handlers: guilds and channels ==============================================================

    def _guild(self, ctx: _Ctx) -> Guild:
        guild_id = ctx.int_arg("guild_id")
        ctx.guild_id = guild_id
        guild = self.world.guilds.get(guild_id)
        if guild is None:
            raise DiscordError(404, 10004, "Unknown Guild")
        return guild

    async def _get_guild(self, ctx: _Ctx) -> tuple[int, Any]:
        guild = self._guild(ctx)
        payload = self.world.guild_payload(guild, with_members=False)
        return 200, {k: v for k, v in payload.items() if k not in _GUILD_CREATE_ONLY}

    async def _get_guild_channels(self, ctx: _Ctx) -> tuple[int, Any]:
        guild = self._guild(ctx)
        channels = [self.world.channels[c] for c in guild.channel_ids]
        return 200, [self.world.channel_payload(c) for c in channels if not c.is_thread]

    async def _get_member(self, ctx: _Ctx) -> tuple[int, Any]:
        guild = self._guild(ctx)
        member = guild.members.get(ctx.int_arg("user_id"))
        if member is None:
            raise DiscordError(404, 10007, "Unknown Member")
        return 200, member.payload()

    async def _get_channel(self, ctx: _Ctx) -> tuple[int, Any]:
        return 200, self.world.channel_payload(self._channel(ctx))

    async def _get_messages(self, ctx: _Ctx) -> tuple[int, Any]:
        channel = self._channel(ctx)
        self._require(channel, Perm.READ_MESSAGE_HISTORY)
        query = ctx.request.query
        limit = max(1, min(100, int(query.get("limit", "50"))))
        messages = [m for m in self.messages_in(channel.id) if not m.ephemeral]
        if "before" in query:
            messages = [m for m in messages if m.id < int(query["before"])]
        if "after" in query:
            messages = [m for m in messages if m.id > int(query["after"])][:limit]
        else:
            messages = messages[-limit:]
        return 200, [self._public(m) for m in reversed(messages)]

    async def _get_message(self, ctx: _Ctx) -> tuple[int, Any]:
        channel = self._channel(ctx)
        self._require(channel, Perm.READ_MESSAGE_HISTORY)
        return 200, self._public(self._message_in(ctx, channel))

    async def _typing(self, ctx: _Ctx) -> tuple[int, Any]:
        channel = self._channel(ctx)
        self._require(channel, Perm.SEND_MESSAGES_IN_THREADS if channel.is_thread else Perm.SEND_MESSAGES)
        return 204, None

    async def _create_message(self, ctx: _Ctx) -> tuple[int, Any]:
        channel = self._channel(ctx)
        self._require(channel, Perm.SEND_MESSAGES_IN_THREADS if channel.is_thread else Perm.SEND_MESSAGES)
        body = await self._read(ctx, self.world.upload_limit(channel))
        if body.files:
            self._require(channel, Perm.ATTACH_FILES)
        message = self._new_message(body.payload, body.files, channel)
        ctx.message_id = message.id
        self._store(message)
        await self._emit(*self._message_event("MESSAGE_CREATE", message))
        return 200, self.world.message_payload(message, self._cdn)

    async def _edit_message(self, ctx: _Ctx) -> tuple[int, Any]:
        channel = self._channel(ctx)
        message = self._message_in(ctx, channel)
        body = await self._read(ctx, self.world.upload_limit(channel))
        payload = body.payload if isinstance(body.payload, dict) else {}
        if message.author_id != self.world.bot.id:
            touched = {
                "content",
                "embeds",
                "components",
                "attachments",
                "sticker_ids",
                "poll",
            } & payload.keys()
            if touched or body.files:
                raise DiscordError(403, 50005, "Cannot edit a message authored by another user")
            if payload.get("flags") is not None:
                if channel.is_dm:
                    raise DiscordError(403, 50003, "Cannot execute action on a DM channel")
                self._require(channel, Perm.MANAGE_MESSAGES)
                message.flags = (message.flags & ~MessageFlag.SUPPRESS_EMBEDS) | (
                    int(payload["flags"]) & MessageFlag.SUPPRESS_EMBEDS
                )
        else:
            self._apply_edit(message, payload, body.files)
        await self._emit(*self._message_event("MESSAGE_UPDATE", message))
        return 200, self._public(message)

    async def _delete_message(self, ctx: _Ctx) -> tuple[int, Any]:
        channel = self._channel(ctx)
        message = self._message_in(ctx, channel)
        if message.author_id != self.world.bot.id:
            if channel.is_dm:
                raise DiscordError(403, 50003, "Cannot execute action on a DM channel")
            self._require(channel, Perm.MANAGE_MESSAGES)
        await self._delete(message)
        return 204, None

    async def _delete(self, message: StoredMessage) -> None:
        message.deleted = True
        if message.ephemeral:
            return
        payload: JSON = {"id": str(message.id), "channel_id": str(message.channel_id)}
        if message.guild_id is not None:
            payload["guild_id"] = str(message.guild_id)
        await self._emit("MESSAGE_DELETE", lambda s: payload)

    # === REST handlers: interactions =====================================================================

    def _interaction_by_path(self, ctx: _Ctx) -> Interaction:
        raw = ctx.request.match_info["interaction_id"]
        inter = self.interactions.get(int(raw)) if raw.isdigit() else None
        if inter is None or not hmac.compare_digest(inter.token, ctx.request.match_info["token"]):
            raise DiscordError(404, 10062, "Unknown interaction")
        ctx.interaction_id = inter.id
        ctx.channel_id = inter.channel_id
        ctx.guild_id = inter.guild_id
        return inter

    def _interaction_by_token(self, ctx: _Ctx) -> Interaction:
        if ctx.request.match_info["application_id"] != str(self.application_id):
            raise DiscordError(404, 10015, "Unknown Webhook")
        token = ctx.request.match_info["token"]
        inter = next((i for i in self.interactions.values() if hmac.compare_digest(i.token, token)), None)
        if inter is None:
            raise DiscordError(404, 10015, "Unknown Webhook")
        ctx.interaction_id = inter.id
        ctx.channel_id = inter.channel_id
        ctx.guild_id = inter.guild_id
        if time.monotonic() - inter.created > self.token_lifetime:
            raise DiscordError(401, 50027, "Invalid Webhook Token")
        return inter

    async def _callback(self, ctx: _Ctx) -> tuple[int, Any]:
        inter = self._interaction_by_path(ctx)
        late = (
            self.callback_deadline is not None and time.monotonic() - inter.created > self.callback_deadline
        )
        if late:
            raise DiscordError(404, 10062, "Unknown interaction")
        if inter.acknowledged:
            raise DiscordError(400, 40060, "Interaction has already been acknowledged.")
        body = await self._read(ctx, inter.attachment_size_limit)
        payload = body.payload if isinstance(body.payload, dict) else {}
        kind = payload.get("type")
        data = payload.get("data") or {}
        channel = self.world.channels[inter.channel_id]
        resource: JSON = {"type": kind}
        if kind == 4:
            if body.files:
                self._require_attach(channel)
            message = self._new_message(
                data,
                body.files,
                channel,
                interaction=inter,
                allowed_flags=AUTHOR_FLAGS | MessageFlag.EPHEMERAL,
            )
            self._store(message)
            inter.original_message_id = message.id
            ctx.message_id = message.id
            resource["message"] = self.world.message_payload(message, self._cdn)
            await self._emit(*self._message_event("MESSAGE_CREATE", message))
        elif kind == 5:
            flags = MessageFlag.LOADING | (int(data.get("flags") or 0) & MessageFlag.EPHEMERAL)
            message = StoredMessage(
                self.ids.next(),
                channel.id,
                channel.guild_id,
                self.world.bot.id,
                flags=int(flags),
                webhook_id=self.application_id,
                interaction_id=inter.id,
                type=20 if inter.type == 2 else 0,
            )
            self._store(message)
            inter.original_message_id = message.id
            inter.loading = True
            ctx.message_id = message.id
            resource["message"] = self.world.message_payload(message, self._cdn)
        elif kind in (6, 7):
            if inter.type != 3:
                raise _bad_callback("This interaction response type is only valid for component interactions")
            if kind == 7:
                assert inter.source_message_id is not None
                message = self.world.messages[inter.source_message_id]
                if body.files:
                    self._require_attach(channel)
                self._apply_edit(message, data, body.files)
                ctx.message_id = message.id
                resource["message"] = self.world.message_payload(message, self._cdn)
                await self._emit(*self._message_event("MESSAGE_UPDATE", message))
        elif kind == 8:
            inter.autocomplete_choices = list(data.get("choices") or [])
        elif kind == 9:
            if not data.get("custom_id") or not data.get("title") or not data.get("components"):
                raise _bad_callback("A modal needs custom_id, title and components")
            inter.modal = data
        elif kind not in (1, 10, 12):
            raise _bad_callback(f"Unknown interaction response type {kind}")
        inter.response_type = int(kind) if isinstance(kind, int) else None
        if ctx.request.query.get("with_response", "").lower() not in ("1", "true"):
            return 204, None
        original = self.world.messages.get(inter.original_message_id or 0)
        summary: JSON = {"id": str(inter.id), "type": inter.type}
        if original is not None:
            summary["response_message_id"] = str(original.id)
            summary["response_message_loading"] = bool(original.flags & MessageFlag.LOADING)
            summary["response_message_ephemeral"] = original.ephemeral
        return 200, {"interaction": summary, "resource": resource}

    def _require_attach(self, channel: Channel) -> None:
        # Interaction responses are webhooks: only Attach Files matters, and not in DMs.
        if channel.guild_id is not None:
            self._require(channel, Perm.ATTACH_FILES)

    async def _followup(self, ctx: _Ctx) -> tuple[int, Any]:
        inter = self._interaction_by_token(ctx)
        if not inter.acknowledged:
            raise DiscordError(404, 10015, "Unknown Webhook")
        body = await self._read(ctx, inter.attachment_size_limit)
        payload = body.payload if isinstance(body.payload, dict) else {}
        channel = self.world.channels[inter.channel_id]
        if body.files:
            self._require_attach(channel)
        if inter.loading and inter.original_message_id is not None:
            # The first follow-up after a deferred response resolves the "thinking" message, keeping the
            # defer's ephemerality whatever flags it asks for (as Discord does).
            message = self.world.messages[inter.original_message_id]
            check_not_empty(payload, n_attachments=len(body.files))
            self._apply_edit(message, payload, body.files)
            message.flags &= ~MessageFlag.LOADING
            message.edited = None
            inter.loading = False
            event = "MESSAGE_CREATE"
        else:
            message = self._new_message(
                payload,
                body.files,
                channel,
                interaction=inter,
                allowed_flags=AUTHOR_FLAGS | MessageFlag.EPHEMERAL,
            )
            message.type = 0
            self._store(message)
            inter.followup_ids.append(message.id)
            event = "MESSAGE_CREATE"
        ctx.message_id = message.id
        await self._emit(*self._message_event(event, message))
        if ctx.request.query.get("wait", "").lower() not in ("1", "true"):
            return 204, None
        return 200, self.world.message_payload(message, self._cdn)

    def _webhook_message(self, ctx: _Ctx, inter: Interaction) -> StoredMessage:
        raw = ctx.request.match_info["message_id"]
        if raw == "@original":
            message_id = inter.original_message_id or inter.source_message_id
        else:
            message_id = int(raw) if raw.isdigit() else None
            if message_id not in {inter.original_message_id, inter.source_message_id, *inter.followup_ids}:
                message_id = None
        message = self.world.messages.get(message_id or 0)
        if message is None or message.deleted:
            raise DiscordError(404, 10008, "Unknown Message")
        ctx.message_id = message.id
        return message

    async def _get_webhook_message(self, ctx: _Ctx) -> tuple[int, Any]:
        inter = self._interaction_by_token(ctx)
        return 200, self.world.message_payload(self._webhook_message(ctx, inter), self._cdn)

    async def _edit_webhook_message(self, ctx: _Ctx) -> tuple[int, Any]:
        inter = self._interaction_by_token(ctx)
        message = self._webhook_message(ctx, inter)
        body = await self._read(ctx, inter.attachment_size_limit)
        if body.files:
            self._require_attach(self.world.channels[message.channel_id])
        payload = body.payload if isinstance(body.payload, dict) else {}
        was_loading = bool(message.flags & MessageFlag.LOADING)
        self._apply_edit(message, payload, body.files)
        event = "MESSAGE_UPDATE"
        if was_loading:
            message.flags &= ~MessageFlag.LOADING
            message.edited = None
            inter.loading = False
            event = "MESSAGE_CREATE"
        await self._emit(*self._message_event(event, message))
        return 200, self.world.message_payload(message, self._cdn)

    async def _delete_webhook_message(self, ctx: _Ctx) -> tuple[int, Any]:
        inter = self._interaction_by_token(ctx)
        message = self._webhook_message(ctx, inter)
        if message.id == inter.original_message_id:
            inter.loading = False
        await self._delete(message)
        return 204, None

    # === CDN =============================================================================================

    async def _cdn_get(self, request: web.Request) -> web.StreamResponse:
        """Serve an uploaded attachment if its signature is valid and unexpired."""
        query = request.query
        try:
            expires, issued = int(query["ex"], 16), int(query["is"], 16)
        except (KeyError, ValueError):
            raise web.HTTPNotFound(text="This content is no longer available.") from None
        if (
            not hmac.compare_digest(self._sign(request.path, expires, issued), query.get("hm", ""))
            or expires < time.time()
        ):
            raise web.HTTPNotFound(text="This content is no longer available.")
        att_id = request.match_info["attachment_id"]
        entry = self.attachments.get(int(att_id)) if att_id.isdigit() else None
        if entry is None or str(entry[0]) != request.match_info["channel_id"]:
            raise web.HTTPNotFound(text="This content is no longer available.")
        att = entry[1]
        return web.FileResponse(
            att.path, headers={"Content-Type": att.content_type or "application/octet-stream"}
        )

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

    def _control_routes(self, app: web.Application) -> None:
        add_control_routes(app, self)


# Keys only GUILD_CREATE carries (GUILD_UPDATE and GET /guilds/{id} omit them).
_GUILD_CREATE_ONLY = frozenset(
    {
        "joined_at",
        "large",
        "unavailable",
        "lazy",
        "member_count",
        "members",
        "channels",
        "threads",
        "voice_states",
        "presences",
        "stage_instances",
        "guild_scheduled_events",
        "soundboard_sounds",
    }
)


def _bad_callback(message: str) -> DiscordError:
    return DiscordError(
        400,
        50035,
        "Invalid Form Body",
        {"type": {"_errors": [{"code": "INTERACTION_TYPE_INVALID", "message": message}]}},
    )


def _fault_response(fault: Fault) -> tuple[int, Any, dict[str, str]]:
    if fault.status == 429:
        headers = {
            "Via": "1.1 google",
            "Retry-After": str(math.ceil(fault.retry_after)),
            "X-RateLimit-Scope": "global" if fault.is_global else "user",
        }
        if fault.is_global:
            headers["X-RateLimit-Global"] = "true"
        body = {
            "message": fault.message or "You are being rate limited.",
            "retry_after": fault.retry_after,
            "global": fault.is_global,
            "code": fault.code or 0,
        }
        return 429, body, headers
    return (
        fault.status,
        {"message": fault.message or f"{fault.status}: emulated fault", "code": fault.code or 0},
        {},
    )


def _dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _opt_str_perm(value: Any) -> str | None:
    return None if value is None else str(int(value))


def _reference(ref: StoredMessage) -> JSON:
    data: JSON = {"type": 0, "message_id": str(ref.id), "channel_id": str(ref.channel_id)}
    if ref.guild_id is not None:
        data["guild_id"] = str(ref.guild_id)
    return data


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
