"""The Discord emulator's HTTP control API under /_control: the in-process control methods over JSON."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sandbox.discord.world import JSON, Channel, Guild, StoredMessage, User

if TYPE_CHECKING:
    from sandbox.discord.emulator import DiscordEmulator, Interaction

Route = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_control_routes(app: web.Application, emu: DiscordEmulator) -> None:
    """Register every /_control route for `emu`."""
    c = _Control(emu)
    routes: list[tuple[str, str, Callable[[web.Request, JSON], Awaitable[Any]]]] = [
        ("GET", "/_control/state", c.state),
        ("POST", "/_control/users", c.add_user),
        ("POST", "/_control/guilds", c.add_guild),
        ("PATCH", "/_control/guilds/{guild_id}", c.update_guild),
        ("POST", "/_control/guilds/{guild_id}/channels", c.add_channel),
        ("POST", "/_control/guilds/{guild_id}/members", c.add_member),
        ("POST", "/_control/channels/{channel_id}/threads", c.add_thread),
        ("GET", "/_control/channels/{channel_id}/messages", c.messages),
        ("POST", "/_control/dms", c.open_dm),
        ("POST", "/_control/intents", c.intents),
        ("POST", "/_control/messages", c.send_message),
        ("POST", "/_control/interactions", c.invoke_command),
        ("POST", "/_control/components", c.click_component),
        ("GET", "/_control/interactions/{interaction_id}", c.interaction),
        ("GET", "/_control/transcript", c.transcript),
        ("POST", "/_control/gateway/reconnect", c.reconnect),
        ("POST", "/_control/gateway/drop", c.drop),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, path, _json_route(handler))


def _json_route(handler: Callable[[web.Request, JSON], Awaitable[Any]]) -> Route:
    async def serve(request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json() if request.can_read_body else {}
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            result = await handler(request, body)
        except (KeyError, LookupError) as exc:
            return web.json_response({"error": f"not found: {exc}"}, status=404)
        except (ValueError, TypeError, PermissionError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(result, dumps=lambda o: json.dumps(o, default=str))

    return serve


class _Control:
    def __init__(self, emu: DiscordEmulator) -> None:
        self.emu = emu

    def _user(self, user: User) -> JSON:
        return user.payload() | {"locale": user.locale}

    def _guild(self, guild: Guild) -> JSON:
        world = self.emu.world
        return {
            "id": str(guild.id),
            "name": guild.name,
            "owner_id": str(guild.owner_id),
            "premium_tier": guild.premium_tier,
            "upload_limit": guild.upload_limit,
            "locale": guild.locale,
            "channels": [self._channel(world.channels[c]) for c in guild.channel_ids],
            "members": [
                {
                    "user_id": str(uid),
                    "username": m.user.username,
                    "roles": [str(r) for r in m.role_ids],
                    "permissions": str(world.base_permissions(guild, uid)),
                }
                for uid, m in guild.members.items()
            ],
        }

    def _channel(self, channel: Channel) -> JSON:
        return self.emu.world.channel_payload(channel)

    def _message(self, message: StoredMessage) -> JSON:
        data = self.emu.world.message_payload(message, self.emu._cdn)
        data["deleted"] = message.deleted
        data["attachments"] = [
            a | {"sha256": att.sha256}
            for a, att in zip(data["attachments"], message.attachments, strict=True)
        ]
        return data

    def _interaction(self, inter: Interaction) -> JSON:
        return {
            "id": str(inter.id),
            "type": inter.type,
            "name": inter.name,
            "channel_id": str(inter.channel_id),
            "user_id": str(inter.user_id),
            "response_type": inter.response_type,
            "loading": inter.loading,
            "messages": [self._message(m) for m in self.emu.interaction_messages(inter.id)],
            "modal": inter.modal,
        }

    async def state(self, request: web.Request, body: JSON) -> JSON:
        emu = self.emu
        return {
            "application_id": str(emu.application_id),
            "bot": self._user(emu.world.bot),
            "demo": None
            if emu.demo is None
            else {k: str(v) for k, v in dataclasses.asdict(emu.demo).items()},
            "users": [self._user(u) for u in emu.world.users.values()],
            "guilds": [self._guild(g) for g in emu.world.guilds.values()],
            "dms": [self._channel(emu.world.channels[c]) for c in emu.world.dms_by_user.values()],
            "sessions": [
                {"id": s.id, "intents": s.intents, "connected": s.connected, "seq": s.seq}
                for s in emu.sessions
            ],
            "commands": {"global": emu.commands(None)}
            | {str(g): emu.commands(g) for g in emu.world.guilds if emu.commands(g)},
        }

    async def add_user(self, request: web.Request, body: JSON) -> JSON:
        user = self.emu.add_user(
            str(body["username"]), global_name=body.get("global_name"), locale=body.get("locale", "en-US")
        )
        return self._user(user)

    async def add_guild(self, request: web.Request, body: JSON) -> JSON:
        kwargs: dict[str, Any] = {}
        for key in ("premium_tier", "upload_limit", "bot_permissions"):
            if body.get(key) is not None:
                kwargs[key] = int(body[key])
        if body.get("owner_id") is not None:
            kwargs["owner_id"] = int(body["owner_id"])
        guild = self.emu.add_guild(str(body["name"]), locale=body.get("locale", "en-US"), **kwargs)
        return self._guild(guild)

    async def update_guild(self, request: web.Request, body: JSON) -> JSON:
        guild_id = int(request.match_info["guild_id"])
        if "premium_tier" in body:
            self.emu.set_premium_tier(guild_id, int(body["premium_tier"]))
        if "upload_limit" in body:
            limit = body["upload_limit"]
            self.emu.set_upload_limit(guild_id, None if limit is None else int(limit))
        if "bot_permissions" in body:
            self.emu.set_bot_permissions(guild_id, int(body["bot_permissions"]))
        return self._guild(self.emu.world.guilds[guild_id])

    async def add_channel(self, request: web.Request, body: JSON) -> JSON:
        channel = self.emu.add_text_channel(int(request.match_info["guild_id"]), str(body["name"]))
        return self._channel(channel)

    async def add_thread(self, request: web.Request, body: JSON) -> JSON:
        owner = body.get("owner_id")
        thread = self.emu.add_thread(
            int(request.match_info["channel_id"]),
            str(body["name"]),
            owner_id=None if owner is None else int(owner),
        )
        return self._channel(thread)

    async def add_member(self, request: web.Request, body: JSON) -> JSON:
        perms = body.get("permissions")
        member = self.emu.add_member(
            int(request.match_info["guild_id"]),
            int(body["user_id"]),
            permissions=None if perms is None else int(perms),
        )
        return member.payload()

    async def open_dm(self, request: web.Request, body: JSON) -> JSON:
        return self._channel(self.emu.open_dm(int(body["user_id"])))

    async def intents(self, request: web.Request, body: JSON) -> JSON:
        self.emu.set_privileged_intents(
            message_content=bool(body.get("message_content", True)),
            members=bool(body.get("members", True)),
            presences=bool(body.get("presences", True)),
        )
        return {"allowed_privileged_intents": self.emu.allowed_privileged_intents}

    async def messages(self, request: web.Request, body: JSON) -> list[JSON]:
        channel_id = int(request.match_info["channel_id"])
        return [self._message(m) for m in self.emu.messages_in(channel_id, include_deleted=True)]

    async def send_message(self, request: web.Request, body: JSON) -> JSON:
        reply_to = body.get("reply_to")
        message = await self.emu.send_message(
            int(body["channel_id"]),
            int(body["author_id"]),
            str(body.get("content", "")),
            mention_bot=bool(body.get("mention_bot", False)),
            reply_to=None if reply_to is None else int(reply_to),
        )
        return self._message(message)

    async def invoke_command(self, request: web.Request, body: JSON) -> JSON:
        inter = await self.emu.invoke_command(
            str(body["name"]),
            user_id=int(body["user_id"]),
            channel_id=int(body["channel_id"]),
            options=body.get("options") or {},
            locale=body.get("locale"),
        )
        return self._interaction(inter)

    async def click_component(self, request: web.Request, body: JSON) -> JSON:
        inter = await self.emu.click_component(
            int(body["message_id"]),
            str(body["custom_id"]),
            user_id=int(body["user_id"]),
            values=body.get("values"),
            locale=body.get("locale"),
        )
        return self._interaction(inter)

    async def interaction(self, request: web.Request, body: JSON) -> JSON:
        return self._interaction(self.emu.interactions[int(request.match_info["interaction_id"])])

    async def transcript(self, request: web.Request, body: JSON) -> list[JSON]:
        since = int(request.query.get("since", "0"))
        return [dataclasses.asdict(call) for call in self.emu.transcript.calls[since:]]

    async def reconnect(self, request: web.Request, body: JSON) -> JSON:
        await self.emu.reconnect_gateway()
        return {"ok": True}

    async def drop(self, request: web.Request, body: JSON) -> JSON:
        await self.emu.drop_gateway(int(body.get("code", 4000)))
        return {"ok": True}
