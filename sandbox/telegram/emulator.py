"""The loopback Telegram Bot API: the HTTP face of `BotApi`, plus injection, webhooks and the transcript."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from sandbox.base import Emulator
from sandbox.blobs import Pace
from sandbox.telegram import limits
from sandbox.telegram.control import register_control
from sandbox.telegram.entities import find_entities
from sandbox.telegram.errors import FILE_REFERENCE_EXPIRED, ApiError, bad_request, not_found, unauthorized
from sandbox.telegram.limits import RateLimit
from sandbox.telegram.media import FileStore
from sandbox.telegram.methods import (
    CLOUD_UPLOAD_LIMIT,
    LOCAL_UPLOAD_LIMIT,
    BotApi,
    InlineQuery,
    Press,
    Webhook,
)
from sandbox.telegram.transcript import POLLING_METHODS, Call, Changes
from sandbox.telegram.updates import UpdateQueue
from sandbox.telegram.wire import CHUNK, Params, read_body
from sandbox.telegram.world import Chat, ChatType, Json, Topic, User, World, reply_copy

SANDBOX_TOKEN = "123456:SANDBOX-token"  # noqa: S105 - a fixed fake token, not a secret
# Methods a webhook response may carry that Telegram will not run (it ignores get* too).
_NOT_FROM_WEBHOOK = {"deletewebhook", "setwebhook", "close", "logout"}
ANY = object()  # "any thread" for transcript filters


@dataclass(slots=True)
class Injected:
    """An update the emulator produced (a user's message, a press, an inline query)."""

    update_id: int
    kind: str  # message, channel_post, callback_query, inline_query
    update: Json
    dropped: str | None = None  # why Telegram would never have delivered it (privacy mode, allowed_updates)

    @property
    def payload(self) -> Json:
        """The update's object: the message, callback query or inline query."""
        payload: Json = self.update[self.kind]
        return payload


@dataclass(slots=True)
class Delivery:
    """One webhook POST and how the bot's server answered."""

    update_id: int | None
    status: int | None
    error: str | None
    secret: str | None
    at: float = field(default_factory=time.monotonic)


class TelegramEmulator(Emulator):
    """A Bot API server on loopback for one bot, with a control API to drive and inspect it (see README)."""

    name = "telegram"
    FAULT_STATUSES = limits.FAULT_STATUSES

    def __init__(
        self,
        token: str = SANDBOX_TOKEN,
        *,
        local_api: bool = False,
        files_dir: Path | None = None,
        bot_username: str = "tiktok_sandbox_bot",
        bot_name: str = "TikTok Sandbox",
    ) -> None:
        super().__init__()
        if not re.fullmatch(r"\d+:[\w-]+", token):
            raise ValueError("a bot token looks like <digits>:<text>")
        self.token = token
        self.bot = User(int(token.split(":")[0]), bot_name, username=bot_username, is_bot=True)
        self.world = World(self.bot)
        self.files = FileStore(files_dir)
        self.changes = Changes()
        self.updates = UpdateQueue(self.changes.notify)
        self.faults.check = limits.check_fault
        self.api = BotApi(
            self.world, self.files, self.updates, self.changes.notify, faults=self.faults, local_api=local_api
        )
        self.api.on_webhook_change = self._restart_webhook
        self.calls: list[Call] = []
        self.injected: list[Injected] = []
        self.deliveries: list[Delivery] = []
        self.webhook_timeout = 10.0
        self.webhook_retry_delay = 0.5
        self.upload_mibps: float | None = None  # how fast uploads are read (bench/relay.py); None: at once
        self._seq = 0
        self._client: aiohttp.ClientSession | None = None
        self._webhook_task: asyncio.Task[None] | None = None
        self._stale_tasks: set[asyncio.Task[None]] = set()
        self.default_user = self.add_user("Alice", id=1001, username="alice", language_code="en")

    # ---- Emulator

    def routes(self, app: web.Application) -> None:
        """The Bot API, file downloads and the control API."""
        app.router.add_route("*", "/bot{token}/{method}", self._serve_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._serve_file)
        register_control(app, self)

    def env(self) -> dict[str, str]:
        """TELEGRAM__TOKEN, TELEGRAM__API_URL and TELEGRAM__LOCAL_API for the bot."""
        return {
            "TELEGRAM__TOKEN": self.token,
            "TELEGRAM__API_URL": self.base_url,
            "TELEGRAM__LOCAL_API": "true" if self.local_api else "false",
        }

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Start serving (again, after a stop: the queue reopens, files start afresh)."""
        self.updates.reopen()
        self.files.directory.mkdir(parents=True, exist_ok=True)
        await super().start(host, port)

    async def stop(self) -> None:
        """Release long polls, stop webhook delivery, stop serving, and delete the files it held."""
        self.updates.close()
        tasks = [t for t in (self._webhook_task, *self._stale_tasks) if t is not None]
        self._webhook_task = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._client is not None:
            await self._client.close()
            self._client = None
        await self.api.close()
        await super().stop()
        self.files.close()

    # ---- settings

    @property
    def local_api(self) -> bool:
        """Behave as a local Bot API server: 2000 MB uploads, no getFile cap, absolute file paths."""
        return self.api.local_api

    @local_api.setter
    def local_api(self, value: bool) -> None:
        self.api.local_api = value
        self.api.upload_limit = LOCAL_UPLOAD_LIMIT if value else CLOUD_UPLOAD_LIMIT

    @property
    def upload_limit(self) -> int:
        """Bytes one uploaded file may have before the server answers 413."""
        return self.api.upload_limit

    @upload_limit.setter
    def upload_limit(self, value: int) -> None:
        self.api.upload_limit = value

    @property
    def privacy_mode(self) -> bool:
        """Group privacy: when on, a non-admin bot only gets commands, replies to it and mentions of it."""
        return self.api.privacy_mode

    @privacy_mode.setter
    def privacy_mode(self, value: bool) -> None:
        self.api.privacy_mode = value

    # ---- the wire

    def _record_call(self, call: Call) -> Call:
        self._seq += 1
        call.seq = self._seq
        call.answered = time.monotonic()
        self.calls.append(call)
        self.changes.notify()
        return call

    async def _serve_api(self, request: web.Request) -> web.StreamResponse:
        token = request.match_info["token"]
        method = request.match_info["method"]
        call = Call(seq=0, method=self.api.canonical(method) or method, params={})
        if token != self.token:
            error = unauthorized() if re.fullmatch(r"\d+:[\w-]+", token) else not_found()
            while await request.content.read(CHUNK):  # drain unbuffered: the client must read the 401
                pass
            return self._answer(call, error.code, error.body())
        call.content_length = request.content_length

        def first_byte() -> None:
            call.first_byte = time.monotonic()

        try:
            body = await read_body(
                request.headers,
                request.content,
                request.query,
                self.files.directory,
                self.api.upload_limit,
                first_byte,
                Pace(self.upload_mibps) if self.upload_mibps else None,
            )
        except ApiError as exc:
            return self._answer(call, exc.code, exc.body())
        except ConnectionError as exc:
            # The client gave up mid-body (an upload whose source failed): nothing is posted.
            return self._answer(
                call, 400, bad_request(f"the request body broke off: {type(exc).__name__}").body()
            )
        try:
            status, payload = await self.api.execute(method, Params(body), call)
        finally:
            self.files.release(list(body.uploads.values()))
        return self._answer(call, status, payload)

    def _answer(self, call: Call, status: int, payload: Json) -> web.Response:
        if status != 200 and call.ok:
            call.ok, call.status, call.error = False, status, str(payload.get("description"))
        self._record_call(call)
        return web.json_response(payload, status=status)

    async def _serve_file(self, request: web.Request) -> web.StreamResponse:
        stored = (
            self.files.by_path(request.match_info["path"])
            if request.match_info["token"] == self.token
            else None
        )
        if stored is None or not stored.valid or not stored.path.exists():
            error = not_found()
            return web.json_response(error.body(), status=error.code)
        return web.FileResponse(
            stored.path, headers={"Content-Type": stored.mime_type or "application/octet-stream"}
        )

    # ---- people and chats

    def add_user(
        self,
        first_name: str = "User",
        *,
        id: int | None = None,
        username: str | None = None,
        language_code: str | None = "en",
        last_name: str | None = None,
        is_premium: bool = False,
    ) -> User:
        """A Telegram user who can write to the bot, press buttons and make inline queries."""
        return self.world.add_user(
            first_name,
            id=id,
            last_name=last_name,
            username=username,
            language_code=language_code,
            is_premium=is_premium,
        )

    def private_chat(self, user: User | None = None) -> Chat:
        """The private chat of `user` (default: `default_user`) with the bot."""
        return self.world.private_chat(user or self.default_user)

    def group(
        self, title: str = "Sandbox group", *, owner: User | None = None, bot_admin: bool = False
    ) -> Chat:
        """A basic group with the bot as a member (or an admin)."""
        return self._chat(ChatType.GROUP, title, None, False, owner, bot_admin)

    def supergroup(
        self,
        title: str = "Sandbox supergroup",
        *,
        username: str | None = None,
        forum: bool = False,
        owner: User | None = None,
        bot_admin: bool = False,
    ) -> Chat:
        """A supergroup (a forum with topics when `forum`) with the bot as a member (or an admin)."""
        return self._chat(ChatType.SUPERGROUP, title, username, forum, owner, bot_admin)

    def channel(
        self, title: str = "Sandbox channel", *, username: str | None = None, owner: User | None = None
    ) -> Chat:
        """A channel where the bot is an administrator allowed to post."""
        return self._chat(ChatType.CHANNEL, title, username, False, owner, True)

    def _chat(
        self,
        kind: ChatType,
        title: str,
        username: str | None,
        forum: bool,
        owner: User | None,
        bot_admin: bool,
    ) -> Chat:
        chat = self.world.add_chat(
            kind,
            title,
            username=username,
            is_forum=forum,
            owner=owner or self.default_user,
            bot_status="administrator" if bot_admin or kind == ChatType.CHANNEL else "member",
            bot_can_delete=bot_admin,
        )
        self.changes.notify()
        return chat

    def add_topic(self, chat: Chat | int, name: str, *, creator: User | None = None) -> Topic:
        """Open a forum topic in a forum supergroup; its thread id is `topic.thread_id`."""
        return self.world.add_topic(self._resolve(chat), name, creator=creator)

    def set_admin(self, chat: Chat | int, user: User, *, can_delete_messages: bool = True) -> None:
        """Make `user` an administrator of a group, supergroup or channel."""
        self._resolve(chat).admins[user.id] = can_delete_messages

    def set_bot_status(self, chat: Chat | int, status: str, *, can_delete_messages: bool = False) -> None:
        """The bot's standing in a chat: "member", "administrator", "left" or "kicked"."""
        target = self._resolve(chat)
        target.bot_status = status
        target.bot_can_delete = can_delete_messages

    def block(self, user: User, blocked: bool = True) -> None:
        """The user blocks (or unblocks) the bot: sends to the private chat then answer 403."""
        self.world.private_chat(user).blocked = blocked

    def _resolve(self, chat: Chat | int) -> Chat:
        if isinstance(chat, Chat):
            return chat
        found = self.world.find_chat(chat)
        if found is None:
            raise KeyError(f"no chat {chat}")
        return found

    # ---- injecting updates

    def _push(self, kind: str, payload: Json, drop: str | None = None) -> Injected:
        update_id, update = self.updates.push(kind, payload, drop_reason=drop)
        dropped = next((d.reason for d in self.updates.dropped if d.update_id == update_id), None)
        injected = Injected(update_id, kind, update, dropped)
        self.injected.append(injected)
        return injected

    def inject_message(
        self,
        chat: Chat | int,
        text: str,
        *,
        user: User | None = None,
        thread: Topic | int | None = None,
        reply_to: Json | int | None = None,
        entities: list[Json] | None = None,
        author_signature: str | None = None,
    ) -> Injected:
        """A user writes `text` in a chat (a channel post in channels); entities are detected unless given."""
        target = self._resolve(chat)
        topic: Topic | None = None
        if thread is not None:
            thread_id = thread.thread_id if isinstance(thread, Topic) else thread
            topic = target.topics.get(thread_id)
            if topic is None:
                raise KeyError(f"no topic {thread_id} in chat {target.id}")
        replied: Json | None = None
        if reply_to is not None:
            reply_id = reply_to if isinstance(reply_to, int) else int(reply_to["message_id"])
            replied = target.messages.get(reply_id)
            if replied is None:
                raise KeyError(f"no message {reply_id} in chat {target.id}")
            if topic is None and target.is_forum and replied.get("message_thread_id"):
                topic = target.topics.get(int(replied["message_thread_id"]))
        content: Json = {"text": text}
        found = find_entities(text) if entities is None else entities
        if found:
            content["entities"] = found
        is_channel = target.type == ChatType.CHANNEL
        sender = None if is_channel else (user or self._user_for(target))
        extra = {"author_signature": author_signature} if author_signature else None
        message = self.world.new_message(
            target,
            content,
            sender=sender,
            sender_chat=target if is_channel else None,
            topic=topic,
            reply_to=replied,
            extra=extra,
        )
        return self._push(
            "channel_post" if is_channel else "message", message, self._privacy_drop(target, message)
        )

    def _user_for(self, chat: Chat) -> User:
        if chat.type == ChatType.PRIVATE:
            return self.world.users[chat.id]
        return self.default_user

    def _privacy_drop(self, chat: Chat, message: Json) -> str | None:
        if not (self.api.privacy_mode and chat.is_group and chat.bot_status != "administrator"):
            return None
        text = str(message.get("text", ""))
        mention = f"@{self.bot.username}".lower()
        entities = message.get("entities", [])
        if any(e["type"] == "bot_command" and e["offset"] == 0 for e in entities):
            return None
        if mention in text.lower():
            return None
        replied = message.get("reply_to_message")
        if (
            replied
            and replied.get("from", {}).get("id") == self.bot.id
            and "forum_topic_created" not in replied
        ):
            return None
        return "privacy mode: the bot only sees commands, mentions and replies to it"

    def press_button(
        self,
        message: Json | Call,
        data: str | None = None,
        *,
        text: str | None = None,
        user: User | None = None,
        check: bool = True,
    ) -> Press:
        """A user presses an inline button of a message (found by callback_data or by its label)."""
        sent = message.message if isinstance(message, Call) else message
        if sent is None:
            raise ValueError("that call produced no message")
        chat = self._resolve(int(sent["chat"]["id"]))
        current = chat.messages.get(int(sent["message_id"]))
        if check:
            data = self._find_button(current or sent, data, text)
        query_id = str(secrets.randbits(62))
        presser = user or self._user_for(chat)
        payload: Json = {
            "id": query_id,
            "from": presser.json(),
            "chat_instance": str(int(hashlib.sha256(str(chat.id).encode()).hexdigest()[:15], 16)),
        }
        if current is not None:
            payload["message"] = reply_copy(current)
        else:
            payload["message"] = {"chat": chat.json(), "message_id": int(sent["message_id"]), "date": 0}
        if data is not None:
            payload["data"] = data
        injected = self._push("callback_query", payload)
        press = Press(query_id, injected.update_id, presser, data, chat.id, int(sent["message_id"]))
        self.api.presses[query_id] = press
        return press

    @staticmethod
    def _find_button(message: Json, data: str | None, text: str | None) -> str:
        rows = (message.get("reply_markup") or {}).get("inline_keyboard") or []
        for row in rows:
            for button in row:
                if "callback_data" not in button:
                    continue
                if (data is not None and button["callback_data"] == data) or (
                    data is None and text is not None and button.get("text") == text
                ):
                    return str(button["callback_data"])
        labels = [(b.get("text"), b.get("callback_data")) for row in rows for b in row]
        raise ValueError(f"no button with data={data!r} text={text!r}; buttons: {labels}")

    def inline_query(
        self, query: str, *, user: User | None = None, offset: str = "", chat_type: str | None = "private"
    ) -> InlineQuery:
        """A user types `@bot query` in a chat of `chat_type` ("sender", "private", "group", ...)."""
        sender = user or self.default_user
        query_id = str(secrets.randbits(62))
        payload: Json = {"id": query_id, "from": sender.json(), "query": query, "offset": offset}
        if chat_type:
            payload["chat_type"] = chat_type
        drop = None if self.api.supports_inline_queries else "inline mode is off for this bot"
        injected = self._push("inline_query", payload, drop)
        record = InlineQuery(query_id, injected.update_id, sender, query, offset, chat_type)
        self.api.inline_queries[query_id] = record
        return record

    # ---- webhook delivery

    def _restart_webhook(self) -> None:
        if self._webhook_task is not None:
            self._webhook_task.cancel()
            self._stale_tasks.add(self._webhook_task)
            self._webhook_task.add_done_callback(self._stale_tasks.discard)
            self._webhook_task = None
        if self.api.webhook is not None:
            self._webhook_task = asyncio.get_running_loop().create_task(self._deliver_updates())

    def _http(self) -> aiohttp.ClientSession:
        if self._client is None:
            self._client = aiohttp.ClientSession()
        return self._client

    async def _deliver_updates(self) -> None:
        # Up to the webhook's max_connections deliveries at once, as Telegram does (so order is not kept
        # between updates in flight); each one retried until the bot's server answers 2xx.
        hook = self.api.webhook
        in_flight: dict[int, asyncio.Task[None]] = {}

        def next_update() -> Json | None:
            if hook is None or len(in_flight) >= hook.max_connections:
                return None
            return next((u for u in self.updates.pending if int(u["update_id"]) not in in_flight), None)

        try:
            while hook is not None and self.api.webhook is hook:
                await self.changes.wait_until(
                    lambda: self.api.webhook is not hook or next_update() is not None, None
                )
                update = next_update()
                if self.api.webhook is not hook or update is None:
                    return
                update_id = int(update["update_id"])
                in_flight[update_id] = asyncio.create_task(self._deliver_one(hook, update, in_flight))
        finally:
            for task in in_flight.values():
                task.cancel()

    async def _deliver_one(
        self, hook: Webhook, update: Json, in_flight: dict[int, asyncio.Task[None]]
    ) -> None:
        update_id = int(update["update_id"])
        try:
            while self.api.webhook is hook:
                error = await self._post_update(hook.url, update, hook.secret_token)
                if error is None:
                    self.updates.confirm_one(update_id)
                    return
                hook.last_error_date = int(time.time())
                hook.last_error_message = error
                self.changes.notify()
                await asyncio.sleep(self.webhook_retry_delay)
        finally:
            in_flight.pop(update_id, None)
            self.changes.notify()

    async def _post_update(self, url: str, update: Json, secret: str | None) -> str | None:
        headers = {"Content-Type": "application/json"}
        if secret:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret
        update_id = int(update["update_id"]) if "update_id" in update else None
        try:
            async with self._http().post(
                url,
                data=json.dumps(update),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.webhook_timeout),
            ) as resp:
                if 200 <= resp.status <= 299:
                    await self._run_webhook_reply(resp)
                    self.deliveries.append(Delivery(update_id, resp.status, None, secret))
                    return None
                error = f"Wrong response from the webhook: {resp.status} {resp.reason}"
                self.deliveries.append(Delivery(update_id, resp.status, error, secret))
                return error
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"Connection failed: {type(exc).__name__}"
            self.deliveries.append(Delivery(update_id, None, error, secret))
            return error

    async def _run_webhook_reply(self, resp: aiohttp.ClientResponse) -> None:
        # Telegram runs a method the bot puts in its webhook response, and tells it nothing about the outcome.
        try:
            body = await read_body(
                resp.headers, resp.content, {}, self.files.directory, self.api.upload_limit
            )
        except ApiError:
            return
        method = str(body.params.pop("method", "") or "")
        try:
            if method and method.lower() not in _NOT_FROM_WEBHOOK and not method.lower().startswith("get"):
                call = Call(
                    seq=0, method=self.api.canonical(method) or method, params={}, via="webhook-reply"
                )
                status, _ = await self.api.execute(method, Params(body), call)
                if status != 200:
                    call.ok, call.status = False, status
                self._record_call(call)
        finally:
            self.files.release(list(body.uploads.values()))

    async def post_to_webhook(
        self, update: Json | None = None, *, secret: str | None = None, url: str | None = None
    ) -> int:
        """POST one update to the webhook (or `url`) with exactly this secret header; returns the status."""
        target = url or (self.api.webhook.url if self.api.webhook else None)
        if target is None:
            raise RuntimeError("no webhook is set")
        payload = update if update is not None else {"update_id": 1}
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret
        async with self._http().post(target, data=json.dumps(payload), headers=headers) as resp:
            await resp.read()
            return resp.status

    # ---- knobs

    def rate_limit(self, enabled: bool = True, **limits: Any) -> None:
        """Switch Telegram's automatic flood limits on (per chat, per group per minute, global) or off."""
        self.api.rate_limit = RateLimit(**limits) if enabled else None

    def invalidate_file(self, file_id: str, *, expired: bool = False) -> None:
        """Make a file_id stale: sending it answers 400 "wrong file identifier/HTTP URL specified", or, with
        `expired`, "FILE_REFERENCE_EXPIRED" (Telegram's words for a file_id whose reference is outdated)."""
        self.files.invalidate(file_id, FILE_REFERENCE_EXPIRED if expired else "")

    # ---- reading the transcript

    def mark(self) -> int:
        """The sequence number of the last call so far; pass it as `after` to look only at later calls."""
        return self._seq

    def transcript(
        self,
        method: str | None = None,
        *,
        chat_id: int | None = None,
        thread_id: Any = ANY,
        ok: bool | None = None,
        after: int = 0,
    ) -> list[Call]:
        """Calls in order, filtered; getUpdates only when asked for by name."""
        wanted = method.lower() if method else None
        return [
            call
            for call in self.calls
            if call.seq > after
            and (call.method.lower() == wanted if wanted else call.method not in POLLING_METHODS)
            and (chat_id is None or call.chat_id == chat_id)
            and (thread_id is ANY or call.thread_id == thread_id)
            and (ok is None or call.ok == ok)
        ]

    def sent_to(self, chat_id: int, *, thread_id: Any = ANY, after: int = 0) -> list[Call]:
        """Successful calls that put messages into a chat (and topic), in order."""
        return [
            c
            for c in self.transcript(chat_id=chat_id, thread_id=thread_id, ok=True, after=after)
            if c.messages
        ]

    def chat_actions(self, chat_id: int) -> list[str]:
        """The chat actions ("typing", "upload_video", ...) the bot showed in a chat, in order."""
        return [
            str(c.params.get("action")) for c in self.transcript("sendChatAction", chat_id=chat_id, ok=True)
        ]

    def messages_in(self, chat_id: int, *, from_bot: bool = True) -> list[Json]:
        """The messages a chat holds now (after edits and deletions), by the bot or by anyone."""
        chat = self._resolve(chat_id)
        return [
            message
            for message_id, message in chat.messages.items()
            if "forum_topic_created" not in message and (not from_bot or message_id in chat.by_bot)
        ]

    def commands(self, *, scope: Json | None = None, language_code: str = "") -> list[Json]:
        """The command list set with setMyCommands for a scope (default scope) and language."""
        key = (json.dumps(scope or {"type": "default"}, sort_keys=True), language_code)
        return list(self.api.commands.get(key, []))

    async def wait_for(
        self,
        predicate: Callable[[Call], bool] | None = None,
        *,
        method: str | None = None,
        chat_id: int | None = None,
        thread_id: Any = ANY,
        ok: bool | None = None,
        after: int = 0,
        timeout: float = 5.0,  # noqa: ASYNC109 - tests read better with a plain timeout argument
    ) -> Call:
        """The first call (after `after`) matching the filters and `predicate`, waiting for it if needed."""

        def match() -> Call | None:
            for call in self.transcript(method, chat_id=chat_id, thread_id=thread_id, ok=ok, after=after):
                if predicate is None or predicate(call):
                    return call
            return None

        def describe() -> str:
            recent = [
                f"#{c.seq} {c.method} chat={c.chat_id} ok={c.ok} {c.error or ''}" for c in self.calls[-8:]
            ]
            return f"no call matched method={method} chat_id={chat_id}; last calls: {recent}"

        found: Call = await self.changes.wait_until(match, timeout, describe)
        return found

    async def wait_until(
        self,
        condition: Callable[[], Any],
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - as in wait_for
        what: str = "condition",
    ) -> Any:
        """Wait (event-driven, no polling loop) until `condition()` is truthy; returns its value."""
        return await self.changes.wait_until(condition, timeout, lambda: what)

    async def wait_confirmed(
        self,
        injected: Injected | Iterable[Injected],
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - as in wait_for
    ) -> None:
        """Wait until the bot has taken these updates (confirmed by a getUpdates offset or a webhook 2xx)."""
        items = [injected] if isinstance(injected, Injected) else list(injected)
        await self.changes.wait_until(
            lambda: all(self.updates.is_confirmed(i.update_id) for i in items),
            timeout,
            lambda: (
                f"updates {[i.update_id for i in items]} not confirmed; pending {len(self.updates.pending)}"
            ),
        )

    async def wait_answered(
        self,
        query: Press | InlineQuery,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - as in wait_for
    ) -> Json:
        """The bot's answer to a callback press or an inline query, once it arrives."""
        answer: Json = await self.changes.wait_until(
            lambda: query.answer, timeout, lambda: f"query {query.id} was not answered"
        )
        return answer
