"""The emulated REST API v10 and attachment CDN: one handler per route, recording every call."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sandbox.discord.messages import (
    DiscordError,
    check_commands,
    check_message,
    check_not_empty,
    invalid_form,
)
from sandbox.discord.transcript import Call, UploadedFile
from sandbox.discord.uploads import BadBody, Body, TooLarge, drain, read_body
from sandbox.discord.world import (
    BOT_PERMISSIONS,
    JSON,
    Channel,
    Guild,
    Intent,
    MessageFlag,
    Perm,
    StoredAttachment,
    StoredMessage,
    reference_to,
)
from sandbox.faults import Fault, Target

if TYPE_CHECKING:
    from sandbox.discord.emulator import DiscordEmulator, Interaction

log = logging.getLogger(__name__)

API_PREFIX = "/api/v10"
# Flags a message's author may set or clear; the rest are Discord's own.
AUTHOR_FLAGS = int(MessageFlag.SUPPRESS_EMBEDS | MessageFlag.SUPPRESS_NOTIFICATIONS)

Handler = Callable[["_Ctx"], Awaitable[tuple[int, Any]]]


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


class RestApi:
    """Serves the REST routes against one emulator's world; handlers return (status, JSON body or None)."""

    def __init__(self, emu: DiscordEmulator) -> None:
        self.emu = emu

    def add_routes(self, app: web.Application) -> None:
        """Every REST route under /api/v10 and the CDN routes."""
        api = API_PREFIX
        add = app.router.add_route
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

    # === plumbing ===================================================================================

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
                    if auth and request.headers.get("Authorization") != f"Bot {self.emu.token}":
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
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                # A malformed payload the validators let through: a 400 as Discord would give, not a 500
                # that discord.py retries for seconds; logged because it may also be an emulator bug.
                log.warning("%s %s: malformed request", request.method, request.path, exc_info=True)
                errors = {"_errors": [{"code": "INVALID_FORM_BODY", "message": repr(exc)}]}
                status, body = 400, {"code": 50035, "message": "Invalid Form Body", "errors": errors}
            await drain(request)
            self._log_call(ctx, status, body)
            if status == 204 or body is None:
                return web.Response(status=204, headers=headers)
            # discord.py parses JSON only when Content-Type is exactly application/json (no charset).
            headers["Content-Type"] = "application/json"
            return web.Response(status=status, body=_dumps(body), headers=headers)

        return serve

    def _take_fault(self, request: web.Request, route: str) -> Fault | None:
        # A fault's path matches the path under /api/v10 or the route ("/channels/{channel_id}/messages").
        paths = (request.path.removeprefix(API_PREFIX), route.split(" ", 1)[-1])
        return self.emu.faults.take(Target(request.method, paths, request.host.split(":")[0].lower()))

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
        self.emu.transcript.add(
            Call(
                seq=len(self.emu.transcript),
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
        assert self.emu._spool_dir is not None
        body = await read_body(ctx.request, limit=limit, spool_dir=self.emu._spool_dir)
        ctx.payload = body.payload
        ctx.files = body.files
        return body

    def _channel(self, ctx: _Ctx) -> Channel:
        channel_id = ctx.int_arg("channel_id")
        ctx.channel_id = channel_id
        channel = self.emu.world.channels.get(channel_id)
        if channel is None:
            raise DiscordError(404, 10003, "Unknown Channel")
        ctx.guild_id = channel.guild_id
        if channel.guild_id is not None and not self.emu.world.channel_permissions(
            channel, self.emu.world.bot.id
        ):
            raise DiscordError(403, 50001, "Missing Access")
        return channel

    def _message_in(self, ctx: _Ctx, channel: Channel) -> StoredMessage:
        message_id = ctx.int_arg("message_id")
        ctx.message_id = message_id
        message = self.emu.world.messages.get(message_id)
        if message is None or message.deleted or message.channel_id != channel.id or message.ephemeral:
            raise DiscordError(404, 10008, "Unknown Message")
        return message

    def _require(self, channel: Channel, perms: int) -> None:
        have = self.emu.world.channel_permissions(channel, self.emu.world.bot.id)
        if perms & ~have:
            raise DiscordError(403, 50013, "Missing Permissions")

    def _public(self, message: StoredMessage) -> JSON:
        """A message as the REST API returns it to the bot (content blanked without the portal intent)."""
        has_intent = bool(self.emu.allowed_privileged_intents & Intent.MESSAGE_CONTENT)
        return self.emu.world.message_payload(
            message, self.emu._cdn, blank=not self.emu._sees_content(message, has_intent)
        )

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
                    self.emu.ids.next(),
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
            self.emu.ids.next(),
            channel.id,
            channel.guild_id,
            self.emu.world.bot.id,
            content=content,
            embeds=list(payload.get("embeds") or []),
            components=list(payload.get("components") or []),
            flags=int(payload.get("flags") or 0) & allowed_flags,
            tts=bool(payload.get("tts")),
            mention_ids=self.emu._mentions(content),
        )
        if interaction is not None:
            message.webhook_id = self.emu.application_id
            message.interaction_id = interaction.id
            message.type = 20 if interaction.type == 2 else 0
        reference = payload.get("message_reference")
        if isinstance(reference, dict) and reference.get("message_id") is not None:
            ref = self.emu.world.messages.get(int(reference["message_id"]))
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
                message.reference = reference_to(ref)
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
            message.mention_ids = self.emu._mentions(message.content)
            changed = True
        if "embeds" in payload:
            message.embeds = list(payload["embeds"] or [])
            changed = True
        if "components" in payload:
            message.components = list(payload["components"] or [])
        if "attachments" in payload or files:
            message.attachments = self._attachments_from(payload, files, message.attachments)
            for att in message.attachments:
                self.emu.attachments[att.id] = (message.channel_id, att)
            changed = True
        if payload.get("flags") is not None:
            message.flags = (message.flags & ~AUTHOR_FLAGS) | (int(payload["flags"]) & AUTHOR_FLAGS)
        if changed:
            message.edited = time.time()

    # === REST handlers: identity and gateway =============================================================

    async def _get_me(self, ctx: _Ctx) -> tuple[int, Any]:
        return 200, self.emu.world.bot.payload() | {"verified": True, "mfa_enabled": False, "locale": "en-US"}

    async def _get_user(self, ctx: _Ctx) -> tuple[int, Any]:
        user = self.emu.world.users.get(ctx.int_arg("user_id"))
        if user is None:
            raise DiscordError(404, 10013, "Unknown User")
        return 200, user.payload()

    async def _create_dm(self, ctx: _Ctx) -> tuple[int, Any]:
        body = await self._read(ctx, 0)
        raw = body.payload.get("recipient_id") if isinstance(body.payload, dict) else None
        if raw is None or not str(raw).isdigit() or int(raw) not in self.emu.world.users:
            raise DiscordError(400, 50033, "Invalid Recipient(s)")
        channel = self.emu.open_dm(int(raw))
        ctx.channel_id = channel.id
        return 200, self.emu.world.channel_payload(channel)

    async def _get_application(self, ctx: _Ctx) -> tuple[int, Any]:
        owner = (
            next(iter(self.emu.world.guilds.values())).owner_id
            if self.emu.world.guilds
            else self.emu.world.bot.id
        )
        return 200, {
            "id": str(self.emu.application_id),
            "name": self.emu.world.bot.username,
            "icon": None,
            "description": "TikTok bot (Discord emulator)",
            "summary": "",
            "type": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": hashlib.sha256(self.emu.token.encode()).hexdigest(),
            "owner": self.emu.world.user(owner).payload(),
            "team": None,
            "flags": self.emu._application_flags(),
            "bot": self.emu.world.bot.payload(),
            "interactions_endpoint_url": None,
            "redirect_uris": [],
            "tags": [],
            "approximate_guild_count": len(self.emu.world.guilds),
            "install_params": {
                "scopes": ["bot", "applications.commands"],
                "permissions": str(BOT_PERMISSIONS),
            },
            "integration_types_config": {"0": {}},
        }

    async def _get_gateway(self, ctx: _Ctx) -> tuple[int, Any]:
        return 200, {"url": self.emu.gateway_url}

    async def _get_gateway_bot(self, ctx: _Ctx) -> tuple[int, Any]:
        return 200, {
            "url": self.emu.gateway_url,
            "shards": 1,
            "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1},
        }

    async def _unknown(self, ctx: _Ctx) -> tuple[int, Any]:
        raise DiscordError(404, 0, "404: Not Found")

    # === REST handlers: application commands =============================================================

    def _command_scope(self, ctx: _Ctx) -> int | None:
        if ctx.int_arg("application_id") != self.emu.application_id:
            raise DiscordError(403, 50001, "Missing Access")
        if "guild_id" not in ctx.request.match_info:
            return None
        guild_id = ctx.int_arg("guild_id")
        ctx.guild_id = guild_id
        if guild_id not in self.emu.world.guilds:
            raise DiscordError(403, 50001, "Missing Access")
        return guild_id

    def _stored_command(self, scope: int | None, data: JSON, previous: JSON | None) -> JSON:
        kind = int(data.get("type", 1))
        command: JSON = {
            "id": previous["id"] if previous else str(self.emu.ids.next()),
            "application_id": str(self.emu.application_id),
            "version": str(self.emu.ids.next()),
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
        return 200, self.emu.commands(self._command_scope(ctx))

    async def _put_commands(self, ctx: _Ctx) -> tuple[int, Any]:
        scope = self._command_scope(ctx)
        body = await self._read(ctx, 0)
        check_commands(body.payload)
        old = self.emu._commands.get(scope, {})
        new: dict[tuple[str, int], JSON] = {}
        for data in body.payload:
            key = (data["name"], int(data.get("type", 1)))
            new[key] = self._stored_command(scope, data, old.get(key))
        self.emu._commands[scope] = new
        return 200, list(new.values())

    async def _post_command(self, ctx: _Ctx) -> tuple[int, Any]:
        scope = self._command_scope(ctx)
        body = await self._read(ctx, 0)
        check_commands([body.payload])
        commands = self.emu._commands.setdefault(scope, {})
        key = (body.payload["name"], int(body.payload.get("type", 1)))
        existed = key in commands
        commands[key] = self._stored_command(scope, body.payload, commands.get(key))
        return (200 if existed else 201), commands[key]

    async def _delete_command(self, ctx: _Ctx) -> tuple[int, Any]:
        scope = self._command_scope(ctx)
        command_id = ctx.request.match_info["command_id"]
        commands = self.emu._commands.get(scope, {})
        for key, command in list(commands.items()):
            if command["id"] == command_id:
                del commands[key]
                return 204, None
        raise DiscordError(404, 10063, "Unknown application command")

    # === REST handlers: guilds and channels ==============================================================

    def _guild(self, ctx: _Ctx) -> Guild:
        guild_id = ctx.int_arg("guild_id")
        ctx.guild_id = guild_id
        guild = self.emu.world.guilds.get(guild_id)
        if guild is None:
            raise DiscordError(404, 10004, "Unknown Guild")
        return guild

    async def _get_guild(self, ctx: _Ctx) -> tuple[int, Any]:
        guild = self._guild(ctx)
        return 200, self.emu.world.guild_update_payload(guild)

    async def _get_guild_channels(self, ctx: _Ctx) -> tuple[int, Any]:
        guild = self._guild(ctx)
        channels = [self.emu.world.channels[c] for c in guild.channel_ids]
        return 200, [self.emu.world.channel_payload(c) for c in channels if not c.is_thread]

    async def _get_member(self, ctx: _Ctx) -> tuple[int, Any]:
        guild = self._guild(ctx)
        member = guild.members.get(ctx.int_arg("user_id"))
        if member is None:
            raise DiscordError(404, 10007, "Unknown Member")
        return 200, member.payload()

    async def _get_channel(self, ctx: _Ctx) -> tuple[int, Any]:
        return 200, self.emu.world.channel_payload(self._channel(ctx))

    async def _get_messages(self, ctx: _Ctx) -> tuple[int, Any]:
        channel = self._channel(ctx)
        self._require(channel, Perm.READ_MESSAGE_HISTORY)
        query = ctx.request.query
        limit = max(1, min(100, int(query.get("limit", "50"))))
        messages = [m for m in self.emu.messages_in(channel.id) if not m.ephemeral]
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
        body = await self._read(ctx, self.emu.world.upload_limit(channel))
        if body.files:
            self._require(channel, Perm.ATTACH_FILES)
        message = self._new_message(body.payload, body.files, channel)
        ctx.message_id = message.id
        self.emu._store(message)
        await self.emu._emit(*self.emu._message_event("MESSAGE_CREATE", message))
        return 200, self.emu.world.message_payload(message, self.emu._cdn)

    async def _edit_message(self, ctx: _Ctx) -> tuple[int, Any]:
        channel = self._channel(ctx)
        message = self._message_in(ctx, channel)
        body = await self._read(ctx, self.emu.world.upload_limit(channel))
        payload = body.payload if isinstance(body.payload, dict) else {}
        if message.author_id != self.emu.world.bot.id:
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
        await self.emu._emit(*self.emu._message_event("MESSAGE_UPDATE", message))
        return 200, self._public(message)

    async def _delete_message(self, ctx: _Ctx) -> tuple[int, Any]:
        channel = self._channel(ctx)
        message = self._message_in(ctx, channel)
        if message.author_id != self.emu.world.bot.id:
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
        await self.emu._emit("MESSAGE_DELETE", lambda s: payload)

    # === REST handlers: interactions =====================================================================

    def _interaction_by_path(self, ctx: _Ctx) -> Interaction:
        raw = ctx.request.match_info["interaction_id"]
        inter = self.emu.interactions.get(int(raw)) if raw.isdigit() else None
        if inter is None or not hmac.compare_digest(inter.token, ctx.request.match_info["token"]):
            raise DiscordError(404, 10062, "Unknown interaction")
        ctx.interaction_id = inter.id
        ctx.channel_id = inter.channel_id
        ctx.guild_id = inter.guild_id
        return inter

    def _interaction_by_token(self, ctx: _Ctx) -> Interaction:
        if ctx.request.match_info["application_id"] != str(self.emu.application_id):
            raise DiscordError(404, 10015, "Unknown Webhook")
        token = ctx.request.match_info["token"]
        inter = next((i for i in self.emu.interactions.values() if hmac.compare_digest(i.token, token)), None)
        if inter is None:
            raise DiscordError(404, 10015, "Unknown Webhook")
        ctx.interaction_id = inter.id
        ctx.channel_id = inter.channel_id
        ctx.guild_id = inter.guild_id
        if time.monotonic() - inter.created > self.emu.token_lifetime:
            raise DiscordError(401, 50027, "Invalid Webhook Token")
        return inter

    async def _callback(self, ctx: _Ctx) -> tuple[int, Any]:
        inter = self._interaction_by_path(ctx)
        late = (
            self.emu.callback_deadline is not None
            and time.monotonic() - inter.created > self.emu.callback_deadline
        )
        if late:
            raise DiscordError(404, 10062, "Unknown interaction")
        if inter.acknowledged:
            raise DiscordError(400, 40060, "Interaction has already been acknowledged.")
        body = await self._read(ctx, inter.attachment_size_limit)
        payload = body.payload if isinstance(body.payload, dict) else {}
        kind = payload.get("type")
        data = payload.get("data") or {}
        channel = self.emu.world.channels[inter.channel_id]
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
            self.emu._store(message)
            inter.original_message_id = message.id
            ctx.message_id = message.id
            resource["message"] = self.emu.world.message_payload(message, self.emu._cdn)
            await self.emu._emit(*self.emu._message_event("MESSAGE_CREATE", message))
        elif kind == 5:
            flags = MessageFlag.LOADING | (int(data.get("flags") or 0) & MessageFlag.EPHEMERAL)
            message = StoredMessage(
                self.emu.ids.next(),
                channel.id,
                channel.guild_id,
                self.emu.world.bot.id,
                flags=int(flags),
                webhook_id=self.emu.application_id,
                interaction_id=inter.id,
                type=20 if inter.type == 2 else 0,
            )
            self.emu._store(message)
            inter.original_message_id = message.id
            inter.loading = True
            ctx.message_id = message.id
            resource["message"] = self.emu.world.message_payload(message, self.emu._cdn)
        elif kind in (6, 7):
            if inter.type != 3:
                raise _bad_callback("This interaction response type is only valid for component interactions")
            if kind == 7:
                assert inter.source_message_id is not None
                message = self.emu.world.messages[inter.source_message_id]
                if body.files:
                    self._require_attach(channel)
                self._apply_edit(message, data, body.files)
                ctx.message_id = message.id
                resource["message"] = self.emu.world.message_payload(message, self.emu._cdn)
                await self.emu._emit(*self.emu._message_event("MESSAGE_UPDATE", message))
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
        original = self.emu.world.messages.get(inter.original_message_id or 0)
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
        channel = self.emu.world.channels[inter.channel_id]
        if body.files:
            self._require_attach(channel)
        if inter.loading and inter.original_message_id is not None:
            # The first follow-up after a deferred response resolves the "thinking" message, keeping the
            # defer's ephemerality whatever flags it asks for (as Discord does).
            message = self.emu.world.messages[inter.original_message_id]
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
            self.emu._store(message)
            inter.followup_ids.append(message.id)
            event = "MESSAGE_CREATE"
        ctx.message_id = message.id
        await self.emu._emit(*self.emu._message_event(event, message))
        if ctx.request.query.get("wait", "").lower() not in ("1", "true"):
            return 204, None
        return 200, self.emu.world.message_payload(message, self.emu._cdn)

    def _webhook_message(self, ctx: _Ctx, inter: Interaction) -> StoredMessage:
        raw = ctx.request.match_info["message_id"]
        if raw == "@original":
            message_id = inter.original_message_id or inter.source_message_id
        else:
            message_id = int(raw) if raw.isdigit() else None
            if message_id not in {inter.original_message_id, inter.source_message_id, *inter.followup_ids}:
                message_id = None
        message = self.emu.world.messages.get(message_id or 0)
        if message is None or message.deleted:
            raise DiscordError(404, 10008, "Unknown Message")
        ctx.message_id = message.id
        return message

    async def _get_webhook_message(self, ctx: _Ctx) -> tuple[int, Any]:
        inter = self._interaction_by_token(ctx)
        return 200, self.emu.world.message_payload(self._webhook_message(ctx, inter), self.emu._cdn)

    async def _edit_webhook_message(self, ctx: _Ctx) -> tuple[int, Any]:
        inter = self._interaction_by_token(ctx)
        message = self._webhook_message(ctx, inter)
        body = await self._read(ctx, inter.attachment_size_limit)
        if body.files:
            self._require_attach(self.emu.world.channels[message.channel_id])
        payload = body.payload if isinstance(body.payload, dict) else {}
        was_loading = bool(message.flags & MessageFlag.LOADING)
        self._apply_edit(message, payload, body.files)
        event = "MESSAGE_UPDATE"
        if was_loading:
            message.flags &= ~MessageFlag.LOADING
            message.edited = None
            inter.loading = False
            event = "MESSAGE_CREATE"
        await self.emu._emit(*self.emu._message_event(event, message))
        return 200, self.emu.world.message_payload(message, self.emu._cdn)

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
            not hmac.compare_digest(self.emu._sign(request.path, expires, issued), query.get("hm", ""))
            or expires < time.time()
        ):
            raise web.HTTPNotFound(text="This content is no longer available.")
        att_id = request.match_info["attachment_id"]
        entry = self.emu.attachments.get(int(att_id)) if att_id.isdigit() else None
        if entry is None or str(entry[0]) != request.match_info["channel_id"]:
            raise web.HTTPNotFound(text="This content is no longer available.")
        att = entry[1]
        return web.FileResponse(
            att.path, headers={"Content-Type": att.content_type or "application/octet-stream"}
        )


def _bad_callback(message: str) -> DiscordError:
    return DiscordError(
        400,
        50035,
        "Invalid Form Body",
        {"type": {"_errors": [{"code": "INTERACTION_TYPE_INVALID", "message": message}]}},
    )


def _fault_response(fault: Fault) -> tuple[int, Any, dict[str, str]]:
    status = fault.status or 500
    if status == 429:
        retry_after = fault.retry_after or 0.0
        headers = {
            "Via": "1.1 google",
            "Retry-After": str(math.ceil(retry_after)),
            "X-RateLimit-Scope": "global" if fault.is_global else "user",
        }
        if fault.is_global:
            headers["X-RateLimit-Global"] = "true"
        body = {
            "message": fault.message or "You are being rate limited.",
            "retry_after": retry_after,
            "global": fault.is_global,
            "code": fault.code or 0,
        }
        return 429, body, headers
    return (
        status,
        {"message": fault.message or f"{status}: emulated fault", "code": fault.code or 0},
        {},
    )


def _dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _opt_str_perm(value: Any) -> str | None:
    return None if value is None else str(int(value))
