"""The emulated Discord's world: users, guilds, roles, channels, threads, DMs, messages and API shapes."""

from __future__ import annotations

import datetime as dt
import enum
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]
# Turns a CDN path into a full, signed URL on the emulator.
CdnUrl = Callable[[str], str]

DISCORD_EPOCH_MS = 1420070400000
MIB = 1024 * 1024
# Upload limit per boost tier (since 2025-01): tiers 0 and 1 share the default.
TIER_UPLOAD_LIMITS = {0: 10 * MIB, 1: 10 * MIB, 2: 50 * MIB, 3: 100 * MIB}
DM_UPLOAD_LIMIT = 10 * MIB


class Perm(enum.IntFlag):
    """Permission bits of the Discord API (the ones the bot and the emulator care about)."""

    CREATE_INSTANT_INVITE = 1 << 0
    ADMINISTRATOR = 1 << 3
    MANAGE_CHANNELS = 1 << 4
    MANAGE_GUILD = 1 << 5
    ADD_REACTIONS = 1 << 6
    VIEW_CHANNEL = 1 << 10
    SEND_MESSAGES = 1 << 11
    MANAGE_MESSAGES = 1 << 13
    EMBED_LINKS = 1 << 14
    ATTACH_FILES = 1 << 15
    READ_MESSAGE_HISTORY = 1 << 16
    USE_EXTERNAL_EMOJIS = 1 << 18
    CHANGE_NICKNAME = 1 << 26
    USE_APPLICATION_COMMANDS = 1 << 31
    CREATE_PUBLIC_THREADS = 1 << 35
    SEND_MESSAGES_IN_THREADS = 1 << 38


ALL_PERMISSIONS = (1 << 51) - 1
EVERYONE_PERMISSIONS = int(
    Perm.CREATE_INSTANT_INVITE
    | Perm.ADD_REACTIONS
    | Perm.VIEW_CHANNEL
    | Perm.SEND_MESSAGES
    | Perm.EMBED_LINKS
    | Perm.ATTACH_FILES
    | Perm.READ_MESSAGE_HISTORY
    | Perm.USE_EXTERNAL_EMOJIS
    | Perm.CHANGE_NICKNAME
    | Perm.USE_APPLICATION_COMMANDS
    | Perm.CREATE_PUBLIC_THREADS
    | Perm.SEND_MESSAGES_IN_THREADS
)
BOT_PERMISSIONS = int(
    Perm.VIEW_CHANNEL
    | Perm.SEND_MESSAGES
    | Perm.SEND_MESSAGES_IN_THREADS
    | Perm.EMBED_LINKS
    | Perm.ATTACH_FILES
    | Perm.READ_MESSAGE_HISTORY
    | Perm.ADD_REACTIONS
    | Perm.USE_APPLICATION_COMMANDS
)


class Intent(enum.IntFlag):
    """Gateway intent bits."""

    GUILDS = 1 << 0
    GUILD_MEMBERS = 1 << 1
    GUILD_PRESENCES = 1 << 8
    GUILD_MESSAGES = 1 << 9
    DIRECT_MESSAGES = 1 << 12
    MESSAGE_CONTENT = 1 << 15


PRIVILEGED_INTENTS = int(Intent.GUILD_MEMBERS | Intent.GUILD_PRESENCES | Intent.MESSAGE_CONTENT)


class ChannelType(enum.IntEnum):
    """Channel types the emulator models."""

    GUILD_TEXT = 0
    DM = 1
    PUBLIC_THREAD = 11


class MessageFlag(enum.IntFlag):
    """Message flag bits."""

    SUPPRESS_EMBEDS = 1 << 2
    EPHEMERAL = 1 << 6
    LOADING = 1 << 7
    SUPPRESS_NOTIFICATIONS = 1 << 12
    IS_COMPONENTS_V2 = 1 << 15


def iso(when: float) -> str:
    """An ISO-8601 timestamp as Discord writes it."""
    return dt.datetime.fromtimestamp(when, dt.UTC).isoformat(timespec="microseconds")


def snowflake_time(snowflake: int) -> float:
    """Unix seconds a snowflake was made at."""
    return ((snowflake >> 22) + DISCORD_EPOCH_MS) / 1000


class Snowflakes:
    """Strictly increasing snowflakes carrying the current time, like Discord's ids."""

    def __init__(self) -> None:
        self._last = 0
        self._counter = itertools.count()

    def next(self) -> int:
        """A new id."""
        stamp = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        value = max(stamp | (next(self._counter) & 0xFFF), self._last + 1)
        self._last = value
        return value


@dataclass(slots=True)
class User:
    """A Discord user (a person or a bot)."""

    id: int
    username: str
    global_name: str | None = None
    bot: bool = False
    locale: str = "en-US"

    def payload(self) -> JSON:
        """The user object."""
        return {
            "id": str(self.id),
            "username": self.username,
            "global_name": self.global_name,
            "discriminator": "0",
            "avatar": None,
            "bot": self.bot,
            "public_flags": 0,
            "flags": 0,
            "banner": None,
            "accent_color": None,
            "avatar_decoration_data": None,
        }


@dataclass(slots=True)
class Role:
    """A guild role; the @everyone role has the guild's id."""

    id: int
    name: str
    permissions: int
    position: int = 0
    managed: bool = False
    bot_id: int | None = None

    def payload(self) -> JSON:
        """The role object."""
        data: JSON = {
            "id": str(self.id),
            "name": self.name,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": self.position,
            "permissions": str(self.permissions),
            "managed": self.managed,
            "mentionable": False,
            "flags": 0,
        }
        if self.bot_id is not None:
            data["tags"] = {"bot_id": str(self.bot_id)}
        return data


@dataclass(slots=True)
class Member:
    """A user's membership of a guild."""

    user: User
    role_ids: list[int] = field(default_factory=list)
    joined_at: float = field(default_factory=time.time)
    nick: str | None = None

    def payload(self, *, with_user: bool = True) -> JSON:
        """The guild member object (without `user` inside MESSAGE_CREATE)."""
        data: JSON = {
            "roles": [str(r) for r in self.role_ids],
            "nick": self.nick,
            "avatar": None,
            "banner": None,
            "joined_at": iso(self.joined_at),
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
        }
        if with_user:
            data["user"] = self.user.payload()
        return data


@dataclass(slots=True)
class Overwrite:
    """A channel permission overwrite for a role (type 0) or a member (type 1)."""

    id: int
    type: int
    allow: int = 0
    deny: int = 0

    def payload(self) -> JSON:
        """The overwrite object."""
        return {"id": str(self.id), "type": self.type, "allow": str(self.allow), "deny": str(self.deny)}


@dataclass(slots=True)
class Channel:
    """A guild text channel, a public thread or a DM."""

    id: int
    type: ChannelType
    name: str = ""
    guild_id: int | None = None
    parent_id: int | None = None
    position: int = 0
    topic: str | None = None
    overwrites: list[Overwrite] = field(default_factory=list)
    recipient_id: int | None = None
    owner_id: int | None = None
    created: float = field(default_factory=time.time)
    last_message_id: int | None = None
    message_count: int = 0

    @property
    def is_thread(self) -> bool:
        """Whether this is a thread."""
        return self.type is ChannelType.PUBLIC_THREAD

    @property
    def is_dm(self) -> bool:
        """Whether this is a DM."""
        return self.type is ChannelType.DM


@dataclass(slots=True)
class Guild:
    """A guild (server) with its roles, members and channels."""

    id: int
    name: str
    owner_id: int
    premium_tier: int = 0
    upload_limit_override: int | None = None
    locale: str = "en-US"
    roles: dict[int, Role] = field(default_factory=dict)
    members: dict[int, Member] = field(default_factory=dict)
    channel_ids: list[int] = field(default_factory=list)
    joined_at: float = field(default_factory=time.time)

    @property
    def upload_limit(self) -> int:
        """Bytes one request may upload here: the boost tier's limit unless overridden."""
        if self.upload_limit_override is not None:
            return self.upload_limit_override
        return TIER_UPLOAD_LIMITS.get(self.premium_tier, TIER_UPLOAD_LIMITS[0])


@dataclass(slots=True)
class StoredAttachment:
    """An uploaded file kept on disk and served by the emulator's CDN route."""

    id: int
    filename: str
    size: int
    sha256: str
    path: str
    content_type: str | None
    description: str | None = None


@dataclass(slots=True)
class StoredMessage:
    """A message as the emulator keeps it; `payload()` renders the API object."""

    id: int
    channel_id: int
    guild_id: int | None
    author_id: int
    content: str = ""
    embeds: list[JSON] = field(default_factory=list)
    attachments: list[StoredAttachment] = field(default_factory=list)
    components: list[JSON] = field(default_factory=list)
    flags: int = 0
    type: int = 0
    tts: bool = False
    mention_ids: list[int] = field(default_factory=list)
    reference: JSON | None = None
    webhook_id: int | None = None
    interaction_id: int | None = None
    edited: float | None = None
    deleted: bool = False

    @property
    def ephemeral(self) -> bool:
        """Whether only the invoking user sees it."""
        return bool(self.flags & MessageFlag.EPHEMERAL)

    @property
    def suppressed_embeds(self) -> bool:
        """Whether its embeds are hidden (SUPPRESS_EMBEDS)."""
        return bool(self.flags & MessageFlag.SUPPRESS_EMBEDS)


# Keys only GUILD_CREATE carries (GUILD_UPDATE and GET /guilds/{id} omit them).
GUILD_CREATE_ONLY = frozenset(
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


class World:
    """Everything the emulated Discord knows, with the permission rules and the API shapes built from it."""

    def __init__(self, snowflakes: Snowflakes, bot: User) -> None:
        self.ids = snowflakes
        self.bot = bot
        self.users: dict[int, User] = {bot.id: bot}
        self.guilds: dict[int, Guild] = {}
        self.channels: dict[int, Channel] = {}
        self.messages: dict[int, StoredMessage] = {}
        self.dms_by_user: dict[int, int] = {}

    # --- lookups -------------------------------------------------------------------------------------------

    def user(self, user_id: int) -> User:
        """A known user (KeyError otherwise)."""
        return self.users[user_id]

    def guild_of(self, channel: Channel) -> Guild | None:
        """The guild a channel belongs to (None for DMs)."""
        return None if channel.guild_id is None else self.guilds[channel.guild_id]

    def upload_limit(self, channel: Channel) -> int:
        """Bytes one request may upload to this channel."""
        guild = self.guild_of(channel)
        return DM_UPLOAD_LIMIT if guild is None else guild.upload_limit

    def mentions_bot(self, message: StoredMessage) -> bool:
        """Whether the message mentions the bot user."""
        return self.bot.id in message.mention_ids

    # --- permissions ---------------------------------------------------------------------------------------

    def base_permissions(self, guild: Guild, user_id: int) -> int:
        """Guild-wide permissions of a member: @everyone and their roles; owners and admins get all."""
        if user_id == guild.owner_id:
            return ALL_PERMISSIONS
        member = guild.members.get(user_id)
        perms = guild.roles[guild.id].permissions
        for role_id in member.role_ids if member else ():
            role = guild.roles.get(role_id)
            if role is not None:
                perms |= role.permissions
        return ALL_PERMISSIONS if perms & Perm.ADMINISTRATOR else perms

    def channel_permissions(self, channel: Channel, user_id: int) -> int:
        """Permissions of a user in a channel after overwrites (threads use their parent's)."""
        guild = self.guild_of(channel)
        if guild is None:
            return int(Perm.VIEW_CHANNEL | Perm.SEND_MESSAGES | Perm.EMBED_LINKS | Perm.ATTACH_FILES)
        perms = self.base_permissions(guild, user_id)
        if perms == ALL_PERMISSIONS:
            return perms
        source = self.channels[channel.parent_id] if channel.is_thread and channel.parent_id else channel
        member = guild.members.get(user_id)
        role_ids = set(member.role_ids) if member else set()
        allow = deny = 0
        for ow in source.overwrites:
            if ow.type == 0 and ow.id == guild.id:
                perms = (perms & ~ow.deny) | ow.allow
            elif ow.type == 0 and ow.id in role_ids:
                allow |= ow.allow
                deny |= ow.deny
        perms = (perms & ~deny) | allow
        for ow in source.overwrites:
            if ow.type == 1 and ow.id == user_id:
                perms = (perms & ~ow.deny) | ow.allow
        return perms if perms & Perm.VIEW_CHANNEL else 0

    # --- API shapes ----------------------------------------------------------------------------------------

    def channel_payload(self, channel: Channel) -> JSON:
        """The channel object (guild text, thread or DM)."""
        if channel.is_dm:
            assert channel.recipient_id is not None
            return {
                "id": str(channel.id),
                "type": int(channel.type),
                "last_message_id": _opt_str(channel.last_message_id),
                "recipients": [self.users[channel.recipient_id].payload()],
                "flags": 0,
            }
        data: JSON = {
            "id": str(channel.id),
            "type": int(channel.type),
            "guild_id": str(channel.guild_id),
            "name": channel.name,
            "position": channel.position,
            "parent_id": _opt_str(channel.parent_id),
            "last_message_id": _opt_str(channel.last_message_id),
            "rate_limit_per_user": 0,
            "flags": 0,
        }
        if channel.is_thread:
            data.update(
                owner_id=str(channel.owner_id),
                message_count=channel.message_count,
                total_message_sent=channel.message_count,
                member_count=1,
                thread_metadata={
                    "archived": False,
                    "auto_archive_duration": 1440,
                    "archive_timestamp": iso(channel.created),
                    "locked": False,
                    "create_timestamp": iso(channel.created),
                },
            )
        else:
            data.update(
                topic=channel.topic,
                nsfw=False,
                permission_overwrites=[ow.payload() for ow in channel.overwrites],
                default_auto_archive_duration=1440,
            )
        return data

    def guild_payload(self, guild: Guild, *, with_members: bool) -> JSON:
        """The full GUILD_CREATE object; without the members intent only the bot's own member is listed."""
        members = [m.payload() for m in guild.members.values() if with_members or m.user.id == self.bot.id]
        channels = [self.channels[cid] for cid in guild.channel_ids]
        return {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(guild.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "nsfw": False,
            "features": [],
            "roles": [r.payload() for r in guild.roles.values()],
            "emojis": [],
            "stickers": [],
            "application_id": None,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "vanity_url_code": None,
            "premium_tier": guild.premium_tier,
            "premium_subscription_count": {0: 0, 1: 2, 2: 7, 3: 14}.get(guild.premium_tier, 0),
            "premium_progress_bar_enabled": False,
            "preferred_locale": guild.locale,
            "max_members": 500000,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "incidents_data": None,
            "joined_at": iso(guild.joined_at),
            "large": False,
            "unavailable": False,
            "lazy": True,
            "member_count": len(guild.members),
            "members": members,
            "channels": [self.channel_payload(c) for c in channels if not c.is_thread],
            "threads": [self.channel_payload(c) for c in channels if c.is_thread],
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }

    def guild_update_payload(self, guild: Guild) -> JSON:
        """The guild object of GUILD_UPDATE and GET /guilds/{id}: GUILD_CREATE's fields without the lists."""
        payload = self.guild_payload(guild, with_members=False)
        return {k: v for k, v in payload.items() if k not in GUILD_CREATE_ONLY}

    def message_payload(self, message: StoredMessage, cdn: CdnUrl, *, blank: bool = False) -> JSON:
        """The message object; `blank` strips what the MESSAGE_CONTENT intent guards."""
        author = self.users[message.author_id]
        data: JSON = {
            "id": str(message.id),
            "channel_id": str(message.channel_id),
            "type": message.type,
            "author": author.payload(),
            "content": "" if blank else message.content,
            "timestamp": iso(snowflake_time(message.id)),
            "edited_timestamp": None if message.edited is None else iso(message.edited),
            "tts": message.tts,
            "mention_everyone": False,
            "mentions": [self._mention_payload(message, uid) for uid in message.mention_ids],
            "mention_roles": [],
            "attachments": []
            if blank
            else [self.attachment_payload(message, a, cdn) for a in message.attachments],
            "embeds": [] if blank or message.suppressed_embeds else message.embeds,
            "components": [] if blank else message.components,
            "pinned": False,
            "flags": message.flags,
        }
        if message.guild_id is not None:
            data["guild_id"] = str(message.guild_id)
            member = self.guilds[message.guild_id].members.get(message.author_id)
            if member is not None and message.webhook_id is None:
                data["member"] = member.payload(with_user=False)
        if message.webhook_id is not None:
            data["webhook_id"] = str(message.webhook_id)
            data["application_id"] = str(message.webhook_id)
        if message.interaction_id is not None:
            data["interaction_metadata"] = {
                "id": str(message.interaction_id),
                "type": 2,
                "user": author.payload(),
                "authorizing_integration_owners": {},
            }
        if message.reference is not None:
            data["message_reference"] = message.reference
            ref = self.messages.get(int(message.reference["message_id"]))
            data["referenced_message"] = (
                None if ref is None or ref.deleted else self.message_payload(ref, cdn, blank=False)
            )
        return data

    def attachment_payload(self, message: StoredMessage, att: StoredAttachment, cdn: CdnUrl) -> JSON:
        """The attachment object with CDN URLs served by the emulator."""
        path = f"/attachments/{message.channel_id}/{att.id}/{att.filename}"
        return {
            "id": str(att.id),
            "filename": att.filename,
            "size": att.size,
            "url": cdn(path),
            "proxy_url": cdn(f"/media{path}"),
            "content_type": att.content_type,
            "description": att.description,
            "ephemeral": message.ephemeral,
            "flags": 0,
        }

    def _mention_payload(self, message: StoredMessage, user_id: int) -> JSON:
        data = self.users[user_id].payload()
        if message.guild_id is not None:
            member = self.guilds[message.guild_id].members.get(user_id)
            if member is not None:
                data["member"] = member.payload(with_user=False)
        return data


def reference_to(message: StoredMessage) -> JSON:
    """A `message_reference` pointing at a message (a reply)."""
    data: JSON = {"type": 0, "message_id": str(message.id), "channel_id": str(message.channel_id)}
    if message.guild_id is not None:
        data["guild_id"] = str(message.guild_id)
    return data


def _opt_str(value: int | None) -> str | None:
    return None if value is None else str(value)
