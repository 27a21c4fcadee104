"""The emulator's control API over HTTP (`/_control/...`), for the CLI demo and other processes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sandbox.telegram.world import Chat, Json, User

if TYPE_CHECKING:
    from sandbox.telegram.emulator import TelegramEmulator

Route = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ControlError(Exception):
    """A control request that cannot be carried out; answered 400 with the message."""


def _int(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ControlError(f"{name} must be an integer") from None


def register_control(app: web.Application, emu: TelegramEmulator) -> None:
    """Add the `/_control/...` routes for `emu` to `app`."""

    def user_of(data: Json) -> User | None:
        if data.get("user_id") is None:
            return None
        user = emu.world.users.get(_int(data["user_id"], "user_id"))
        if user is None:
            raise ControlError(f"no user {data['user_id']}")
        return user

    def chat_of(data: Json) -> Chat:
        ref = data.get("chat_id")
        chat = emu.world.find_chat(
            ref if isinstance(ref, str) and ref.startswith("@") else _int(ref, "chat_id")
        )
        if chat is None:
            raise ControlError(f"no chat {data.get('chat_id')}")
        return chat

    async def state(request: web.Request) -> Json:
        hook = emu.api.webhook
        return {
            "bot": emu.bot.json(),
            "token": emu.token,
            "users": [u.json() for u in emu.world.users.values()],
            "chats": [{**c.json(), "topics": sorted(c.topics)} for c in emu.world.chats.values()],
            "pending_updates": len(emu.updates.pending),
            "last_seq": emu.mark(),
            "webhook": {"url": hook.url, "last_error": hook.last_error_message} if hook else None,
            "privacy_mode": emu.privacy_mode,
            "upload_limit": emu.upload_limit,
            "local_api": emu.local_api,
        }

    async def add_user(request: web.Request) -> Json:
        data = await request.json()
        user = emu.add_user(
            str(data.get("first_name") or "User"),
            id=_int(data["id"], "id") if data.get("id") is not None else None,
            username=data.get("username"),
            language_code=data.get("language_code", "en"),
            last_name=data.get("last_name"),
        )
        return user.json()

    async def add_chat(request: web.Request) -> Json:
        data = await request.json()
        kind = data.get("type", "private")
        owner = user_of({"user_id": data.get("owner_id")}) if data.get("owner_id") else None
        if kind == "private":
            chat = emu.private_chat(user_of(data))
        elif kind == "group":
            chat = emu.group(
                data.get("title", "Sandbox group"), owner=owner, bot_admin=bool(data.get("bot_admin"))
            )
        elif kind == "supergroup":
            chat = emu.supergroup(
                data.get("title", "Sandbox supergroup"),
                username=data.get("username"),
                forum=bool(data.get("forum")),
                owner=owner,
                bot_admin=bool(data.get("bot_admin")),
            )
        elif kind == "channel":
            chat = emu.channel(
                data.get("title", "Sandbox channel"), username=data.get("username"), owner=owner
            )
        else:
            raise ControlError(f"unknown chat type {kind!r}")
        return chat.json()

    async def add_topic(request: web.Request) -> Json:
        data = await request.json()
        topic = emu.add_topic(chat_of(data), str(data.get("name") or "Topic"))
        return {"message_thread_id": topic.thread_id, "name": topic.name, "icon_color": topic.icon_color}

    async def add_message(request: web.Request) -> Json:
        data = await request.json()
        injected = emu.inject_message(
            chat_of(data),
            str(data.get("text", "")),
            user=user_of(data),
            thread=_int(data["message_thread_id"], "message_thread_id")
            if data.get("message_thread_id")
            else None,
            reply_to=_int(data["reply_to_message_id"], "reply_to_message_id")
            if data.get("reply_to_message_id")
            else None,
        )
        return {"update_id": injected.update_id, "update": injected.update, "dropped": injected.dropped}

    async def add_callback(request: web.Request) -> Json:
        data = await request.json()
        chat = chat_of(data)
        message = chat.messages.get(_int(data.get("message_id"), "message_id"))
        if message is None:
            raise ControlError(f"no message {data.get('message_id')} in chat {chat.id}")
        press = emu.press_button(message, data.get("data"), text=data.get("text"), user=user_of(data))
        return {"update_id": press.update_id, "callback_query_id": press.id}

    async def callback_answer(request: web.Request) -> Json:
        press = emu.api.presses.get(request.match_info["id"])
        if press is None:
            raise ControlError("no such callback query")
        return {"answer": press.answer}

    async def add_inline(request: web.Request) -> Json:
        data = await request.json()
        query = emu.inline_query(
            str(data.get("query", "")),
            user=user_of(data),
            offset=str(data.get("offset", "")),
            chat_type=data.get("chat_type", "private"),
        )
        return {"update_id": query.update_id, "inline_query_id": query.id}

    async def inline_answer(request: web.Request) -> Json:
        query = emu.api.inline_queries.get(request.match_info["id"])
        if query is None:
            raise ControlError("no such inline query")
        return {"answer": query.answer}

    async def transcript(request: web.Request) -> Any:
        after = _int(request.query.get("after", 0), "after")
        method = request.query.get("method")
        chat_id = _int(request.query["chat_id"], "chat_id") if "chat_id" in request.query else None
        if "wait" in request.query:
            timeout = float(request.query.get("timeout", 5))
            try:
                call = await emu.wait_for(method=method, chat_id=chat_id, after=after, timeout=timeout)
            except TimeoutError as exc:
                raise web.HTTPRequestTimeout(text=str(exc)) from None
            return [call.json()]
        return [c.json() for c in emu.transcript(method, chat_id=chat_id, after=after)]

    async def invalidate(request: web.Request) -> Json:
        try:
            emu.invalidate_file(request.match_info["file_id"])
        except KeyError:
            raise ControlError("no such file_id") from None
        return {"ok": True}

    async def settings(request: web.Request) -> Json:
        data = await request.json()
        if "privacy_mode" in data:
            emu.privacy_mode = bool(data["privacy_mode"])
        if "upload_limit" in data:
            emu.upload_limit = _int(data["upload_limit"], "upload_limit")
        if "rate_limit" in data:
            limits = data["rate_limit"]
            emu.rate_limit(bool(limits), **(limits if isinstance(limits, dict) else {}))
        return await state(request)

    def route(handler: Callable[[web.Request], Awaitable[Any]]) -> Route:
        async def serve(request: web.Request) -> web.StreamResponse:
            try:
                return web.json_response(await handler(request))
            except (ControlError, KeyError, ValueError) as exc:
                return web.json_response({"error": str(exc)}, status=400)

        return serve

    app.router.add_get("/_control/state", route(state))
    app.router.add_post("/_control/users", route(add_user))
    app.router.add_post("/_control/chats", route(add_chat))
    app.router.add_post("/_control/topics", route(add_topic))
    app.router.add_post("/_control/messages", route(add_message))
    app.router.add_post("/_control/callbacks", route(add_callback))
    app.router.add_get("/_control/callbacks/{id}", route(callback_answer))
    app.router.add_post("/_control/inline_queries", route(add_inline))
    app.router.add_get("/_control/inline_queries/{id}", route(inline_answer))
    app.router.add_get("/_control/transcript", route(transcript))
    app.router.add_post("/_control/files/{file_id}/invalidate", route(invalidate))
    app.router.add_post("/_control/settings", route(settings))
