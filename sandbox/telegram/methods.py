"""The Bot API methods: validation and results the way the real server gives them."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from sandbox.faults import FaultPlan, Target
from sandbox.telegram.entities import EntityParseError, FormattedText, format_text
from sandbox.telegram.errors import WRONG_FILE, ApiError, bad_request, conflict, forbidden, not_found
from sandbox.telegram.limits import RateLimit, fault_error
from sandbox.telegram.media import (
    FileKind,
    FileStore,
    Spool,
    StoredFile,
    Upload,
    compatible,
    guess_mime,
    probe_image,
)
from sandbox.telegram.transcript import Call, SentFile
from sandbox.telegram.updates import UpdateQueue
from sandbox.telegram.wire import Params, error_of
from sandbox.telegram.world import GENERAL_TOPIC_ID, Chat, ChatType, Json, Topic, User, World

log = logging.getLogger(__name__)
# Telegram's MB is 2**20 bytes: telegram-bot-api's Client.h has MAX_DOWNLOAD_FILE_SIZE = 20 << 20 for the
# documented "20 MB", and a local server's "2000 MB" is TDLib's 4000 parts of 512 KiB (PartsManager.h).
MB = 1024 * 1024
CLOUD_UPLOAD_LIMIT = 50 * MB
LOCAL_UPLOAD_LIMIT = 2000 * MB
PHOTO_LIMIT = 10 * MB
THUMBNAIL_LIMIT = 200 * 1024 - 1
DOWNLOAD_LIMIT = 20 * MB  # getFile on the cloud API
URL_PHOTO_LIMIT = 5 * MB
URL_FILE_LIMIT = 20 * MB
TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
MAX_DIMENSION = 10000
PHOTO_EXTENSIONS = {".jpg", ".jpeg", ".gif", ".png", ".tif", ".tiff", ".bmp"}
NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly the same as "
    "a current content and reply markup of the message"
)
QUERY_TOO_OLD = "query is too old and response timeout expired or query ID is invalid"
CHAT_ACTIONS = {
    "typing",
    "upload_photo",
    "record_video",
    "upload_video",
    "record_voice",
    "upload_voice",
    "upload_document",
    "choose_sticker",
    "find_location",
    "record_video_note",
    "upload_video_note",
}
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}
# Nested fields that travel as JSON strings; the transcript shows them decoded.
JSON_FIELDS = {
    "reply_markup",
    "reply_parameters",
    "media",
    "results",
    "commands",
    "scope",
    "entities",
    "caption_entities",
    "link_preview_options",
    "allowed_updates",
    "button",
}
# Inline results that point at a stored file, and the kind that file must have.
CACHED_RESULT_FIELDS = {
    "photo_file_id": FileKind.PHOTO,
    "video_file_id": FileKind.VIDEO,
    "audio_file_id": FileKind.AUDIO,
    "document_file_id": FileKind.DOCUMENT,
    "gif_file_id": FileKind.ANIMATION,
    "mpeg4_gif_file_id": FileKind.ANIMATION,
}
INLINE_RESULT_TYPES = {
    "article",
    "photo",
    "gif",
    "mpeg4_gif",
    "video",
    "audio",
    "voice",
    "document",
    "location",
    "venue",
    "contact",
    "game",
    "sticker",
}


def is_loopback(host: str | None) -> bool:
    """Whether a URL host is this machine (the only place the sandbox may send anything)."""
    if not host:
        return False
    if host.lower() in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(slots=True)
class Press:
    """A callback query (an inline button press) and the bot's answer to it."""

    id: str
    update_id: int
    user: User
    data: str | None
    chat_id: int | None
    message_id: int | None
    at: float = field(default_factory=time.monotonic)
    answer: Json | None = None  # text, show_alert, url, cache_time once answered


@dataclass(slots=True)
class InlineQuery:
    """An inline query and the bot's answer to it."""

    id: str
    update_id: int
    user: User
    query: str
    offset: str
    chat_type: str | None
    at: float = field(default_factory=time.monotonic)
    answer: Json | None = None  # results (decoded), cache_time, is_personal, next_offset, button

    @property
    def results(self) -> list[Json]:
        """The answered results ([] before an answer)."""
        return list(self.answer["results"]) if self.answer else []


@dataclass(slots=True)
class Webhook:
    """The registered webhook."""

    url: str
    secret_token: str | None
    max_connections: int
    set_at: float = field(default_factory=time.time)
    last_error_date: int | None = None
    last_error_message: str | None = None


@dataclass(slots=True)
class _Target:
    chat: Chat
    topic: Topic | None
    reply_to: Json | None
    markup: Json | None
    extra: Json


@dataclass(slots=True)
class _FileRef:
    stored: StoredFile
    sent: SentFile


Handler = Callable[[Params, Call], Awaitable[Any]]


class BotApi:
    """One bot's view of Telegram: every method, over shared state the control API can inspect and steer."""

    def __init__(
        self,
        world: World,
        files: FileStore,
        updates: UpdateQueue,
        on_change: Callable[[], None],
        *,
        faults: FaultPlan,
        local_api: bool = False,
    ) -> None:
        self.world = world
        self.files = files
        self.updates = updates
        self._on_change = on_change
        self.local_api = local_api
        self.upload_limit = LOCAL_UPLOAD_LIMIT if local_api else CLOUD_UPLOAD_LIMIT
        self.privacy_mode = False
        self.supports_inline_queries = True
        self.inline_query_ttl = 10.0
        self.callback_query_ttl = 15.0
        self.faults = faults
        self.rate_limit: RateLimit | None = None
        self.webhook: Webhook | None = None
        self.on_webhook_change: Callable[[], None] = lambda: None
        self.commands: dict[tuple[str, str], list[Json]] = {}
        self.presses: dict[str, Press] = {}
        self.inline_queries: dict[str, InlineQuery] = {}
        self.inline_edits: list[Json] = []
        self._http: aiohttp.ClientSession | None = None
        self._handlers: dict[str, tuple[str, Handler]] = {}
        for name, handler in self._table().items():
            self._handlers[name.lower()] = (name, handler)

    def _table(self) -> dict[str, Handler]:
        return {
            "getMe": self.get_me,
            "getUpdates": self.get_updates,
            "setWebhook": self.set_webhook,
            "deleteWebhook": self.delete_webhook,
            "getWebhookInfo": self.get_webhook_info,
            "close": self.close_method,
            "logOut": self.close_method,
            "sendMessage": self.send_message,
            "sendPhoto": self.send_photo,
            "sendVideo": self.send_video,
            "sendAudio": self.send_audio,
            "sendDocument": self.send_document,
            "sendMediaGroup": self.send_media_group,
            "sendChatAction": self.send_chat_action,
            "editMessageText": self.edit_message_text,
            "editMessageCaption": self.edit_message_caption,
            "editMessageReplyMarkup": self.edit_message_reply_markup,
            "deleteMessage": self.delete_message,
            "answerCallbackQuery": self.answer_callback_query,
            "answerInlineQuery": self.answer_inline_query,
            "setMyCommands": self.set_my_commands,
            "getMyCommands": self.get_my_commands,
            "deleteMyCommands": self.delete_my_commands,
            "getFile": self.get_file,
            "getChat": self.get_chat,
            "getChatMember": self.get_chat_member,
            "getChatAdministrators": self.get_chat_administrators,
        }

    def canonical(self, method: str) -> str | None:
        """The canonical spelling of a method name (Telegram matches them case-insensitively)."""
        entry = self._handlers.get(method.lower())
        return entry[0] if entry else None

    async def close(self) -> None:
        """Release the HTTP client used to fetch files by URL."""
        if self._http is not None:
            await self._http.close()
            self._http = None

    # ---- dispatch

    async def execute(self, method: str, params: Params, call: Call) -> tuple[int, Json]:
        """Run one call, filling in `call`; returns the HTTP status and JSON body to answer with."""
        call.params = _decoded_params(params)
        entry = self._handlers.get(method.lower())
        try:
            if entry is None:
                raise not_found()
            call.method = entry[0]
            chat_ref = params.chat_id()
            if isinstance(chat_ref, int):
                call.chat_id = chat_ref
            fault = self.faults.take(Target(call.method, chat_id=chat_ref))
            if fault is not None:
                raise fault_error(fault)
            call.result = await entry[1](params, call)
        except Exception as exc:
            if not isinstance(exc, ApiError):
                # An emulator bug: answer like a server error, and say where it came from.
                log.exception("telegram emulator failed on %s", call.method)
            error = error_of(exc)
            call.ok, call.status, call.error, call.result = False, error.code, error.description, None
            return error.code, error.body()
        body: Json = {"ok": True, "result": call.result}
        if call.description:
            body["description"] = call.description
        return 200, body

    # ---- shared pieces

    def _chat(self, p: Params, call: Call, name: str = "chat_id") -> Chat:
        ref = p.chat_id(name)
        if ref is None:
            raise bad_request(f"{name.replace('_', ' ')} is empty")
        chat = self.world.find_chat(ref)
        if chat is None:
            raise bad_request("chat not found")
        call.chat_id = chat.id
        return chat

    def _check_can_send(self, chat: Chat) -> None:
        if chat.type == ChatType.PRIVATE:
            if chat.blocked:
                raise forbidden("bot was blocked by the user")
            return
        if chat.bot_status == "kicked":
            raise forbidden(f"bot was kicked from the {chat.kind_name}")
        if chat.bot_status == "left":
            raise forbidden(f"bot is not a member of the {chat.kind_name}")
        if chat.type == ChatType.CHANNEL and chat.bot_status != "administrator":
            raise bad_request("need administrator rights in the channel chat")

    def _topic(self, chat: Chat, p: Params) -> Topic | None:
        thread_id = p.integer("message_thread_id", 0) or 0
        if not thread_id or not chat.is_forum:
            # Outside forums Telegram ignores message_thread_id for sending.
            return None
        topic = chat.topics.get(thread_id)
        if thread_id == GENERAL_TOPIC_ID or topic is None:
            raise bad_request("message thread not found")
        return topic

    def _reply(self, chat: Chat, p: Params, topic: Topic | None) -> tuple[Json | None, Topic | None]:
        params = p.decoded("reply_parameters", "reply parameters")
        if isinstance(params, dict):
            message_id = params.get("message_id")
            other_chat = params.get("chat_id")
            allow_missing = bool(params.get("allow_sending_without_reply"))
        else:
            message_id = p.integer("reply_to_message_id")
            other_chat = None
            allow_missing = p.flag("allow_sending_without_reply")
        if not message_id:
            return None, topic
        same_chat = other_chat in (None, chat.id) or (
            isinstance(other_chat, str) and self.world.find_chat(other_chat) is chat
        )
        target = chat.messages.get(int(message_id)) if same_chat else None
        if target is None:
            if allow_missing:
                return None, topic
            raise bad_request("message to be replied not found")
        if topic is None and chat.is_forum and target.get("message_thread_id"):
            # A reply goes to the topic of the message it answers.
            topic = chat.topics.get(int(target["message_thread_id"]))
        return target, topic

    def _markup(self, p: Params) -> Json | None:
        markup = p.decoded("reply_markup", "reply markup")
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise bad_request("object expected as reply markup")
        if "inline_keyboard" not in markup:
            # Reply keyboards and keyboard removal are not part of the message object.
            return None
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise bad_request(
                'field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays'
            )
        for row in rows:
            for button in row:
                _check_button(button)
        return {"inline_keyboard": rows}

    def _format(
        self, text: str, parse_mode: str | None, entities: Any, limit: int, too_long: str
    ) -> FormattedText:
        try:
            formatted = format_text(text, parse_mode, entities)
        except EntityParseError as exc:
            raise bad_request(f"can't parse entities: {exc}") from None
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        if formatted.length > limit:
            raise bad_request(too_long)
        return formatted

    def _caption(self, caption: str | None, parse_mode: str | None, entities: Any) -> Json:
        if not caption:
            return {}
        formatted = self._format(caption, parse_mode, entities, CAPTION_LIMIT, "message caption is too long")
        content: Json = {}
        if formatted.text:
            content["caption"] = formatted.text
            if formatted.entities:
                content["caption_entities"] = formatted.entities
        return content

    def _target(self, p: Params, call: Call) -> _Target:
        chat = self._chat(p, call)
        self._check_can_send(chat)
        topic = self._topic(chat, p)
        reply_to, topic = self._reply(chat, p, topic)
        markup = self._markup(p)
        call.thread_id = topic.thread_id if topic else None
        extra: Json = {}
        if p.flag("protect_content"):
            extra["has_protected_content"] = True
        if p.has("message_effect_id") and chat.type == ChatType.PRIVATE:
            extra["effect_id"] = p.text("message_effect_id")
        return _Target(chat, topic, reply_to, markup, extra)

    def _spend(self, chat: Chat, count: int) -> None:
        if self.rate_limit is not None:
            self.rate_limit.spend(chat.id, chat.is_group, count)

    def _post(self, target: _Target, content: Json, extra: Json | None = None, markup: bool = True) -> Json:
        """Store a message the bot sends (from the bot; in channels, from the channel itself)."""
        in_channel = target.chat.type == ChatType.CHANNEL
        message = self.world.new_message(
            target.chat,
            content,
            sender=None if in_channel else self.world.bot,
            sender_chat=target.chat if in_channel else None,
            topic=target.topic,
            reply_to=target.reply_to,
            reply_markup=target.markup if markup else None,
            extra={**target.extra, **(extra or {})},
        )
        target.chat.by_bot.add(message["message_id"])
        self._on_change()
        return message

    # ---- files

    async def _input_file(
        self, p: Params, value: Any, field_name: str, kind: FileKind, label: str
    ) -> _FileRef | None:
        """Resolve an InputFile: an attach:// upload, a direct part, a file_id, a URL or a local path."""
        text = value if isinstance(value, str) else None
        if text and text.startswith("attach://"):
            upload = p.uploads.get(text.removeprefix("attach://"))
            if upload is None:
                return None
            return _FileRef(*self._store_upload(upload, kind, label))
        if not text:
            upload = p.uploads.get(field_name)
            if upload is None:
                return None
            return _FileRef(*self._store_upload(upload, kind, label))
        if self.local_api and text.startswith("file:/"):
            return await self._local_file(text, kind, label)
        if re.match(r"^https?://", text, re.IGNORECASE):
            return await self._url_file(text, kind, label)
        stored = self.files.get(text)
        if stored is None or not stored.valid:
            raise bad_request(stored.refusal if stored is not None and stored.refusal else WRONG_FILE)
        if not compatible(stored.kind, kind):
            raise bad_request(f"can't use file of type {stored.kind.td_name} as {kind.td_name}")
        return _FileRef(stored, _sent(stored, label, uploaded=False, source="file_id"))

    def _store_upload(self, upload: Upload, kind: FileKind, label: str) -> tuple[StoredFile, SentFile]:
        if upload.size == 0:
            raise bad_request("file must be non-empty")
        if kind == FileKind.PHOTO:
            stored = self._store_photo(upload)
        else:
            fallback = {
                FileKind.VIDEO: "video/mp4",
                FileKind.AUDIO: "audio/mpeg",
                FileKind.ANIMATION: "video/mp4",
            }.get(kind, "application/octet-stream")
            stored = self.files.add(
                kind, upload, file_name=upload.filename, mime_type=guess_mime(upload.filename, fallback)
            )
        return stored, _sent(stored, label, uploaded=True, source="upload", name=upload.filename)

    def _store_photo(self, upload: Upload) -> StoredFile:
        extension = Path(upload.filename or "").suffix.lower()
        if extension and extension not in PHOTO_EXTENSIONS:
            # Telegram judges a photo upload by its file name first (a TikTok ".webp" slide fails here).
            raise bad_request(
                "photo has unsupported extension. Use one of .jpg, .jpeg, .gif, .png, .tif or .bmp"
            )
        if upload.size > PHOTO_LIMIT:
            raise bad_request(
                f"file of size {upload.size} bytes is too big for a photo; "
                f"the maximum size is {PHOTO_LIMIT} bytes"
            )
        size = probe_image(upload.path)
        if size is None:
            raise bad_request("IMAGE_PROCESS_FAILED")
        width, height = size
        if width + height > MAX_DIMENSION or max(width, height) > 20 * max(1, min(width, height)):
            raise bad_request("PHOTO_INVALID_DIMENSIONS")
        # Telegram keeps the photo in several sizes; every size's file_id sends the same photo again.
        boxes = [box for box in (90, 320, 800, 1280) if box < max(width, height)] + [
            min(2560, max(width, height))
        ]
        group: list[str] = []
        largest: StoredFile | None = None
        for box in boxes:
            scale = min(1.0, box / max(width, height))
            w, h = max(1, round(width * scale)), max(1, round(height * scale))
            approx = (
                upload.size if box == boxes[-1] else max(1, int(upload.size * (w * h) / (width * height)))
            )
            stored = self.files.add(
                FileKind.PHOTO, upload, unique_suffix=str(box), mime_type="image/jpeg", width=w, height=h
            )
            stored.extra["reported_size"] = approx
            stored.extra["group"] = group
            group.append(stored.file_id)
            largest = stored
        assert largest is not None
        return largest

    async def _local_file(self, uri: str, kind: FileKind, label: str) -> _FileRef:
        path = Path(uri.removeprefix("file://").removeprefix("file:"))
        try:
            digest, size = await asyncio.to_thread(_hash_file, path)
        except OSError:
            raise bad_request(WRONG_FILE) from None
        if size > self.upload_limit:
            raise bad_request(f"file of size {size} bytes is too big")
        upload = Upload(label, path.name, None, path, size, digest)
        stored, _ = self._store_upload(upload, kind, label)
        return _FileRef(stored, _sent(stored, label, uploaded=True, source="local", name=path.name))

    async def _url_file(self, url: str, kind: FileKind, label: str) -> _FileRef:
        # Telegram fetches URLs itself; the sandbox may only reach this machine, and never the internet.
        if not is_loopback(URL(url).host):
            raise bad_request("failed to get HTTP URL content")
        cap = URL_PHOTO_LIMIT if kind == FileKind.PHOTO else URL_FILE_LIMIT
        if self._http is None:
            self._http = aiohttp.ClientSession()
        spool = Spool(self.files.directory, label, URL(url).name or None, None)
        try:
            async with self._http.get(url, timeout=aiohttp.ClientTimeout(total=30)) as resp:
                if resp.status != 200:
                    raise bad_request("failed to get HTTP URL content")
                async for chunk in resp.content.iter_chunked(256 * 1024):
                    spool.write(chunk)
                    if spool.size > cap:
                        raise bad_request("failed to get HTTP URL content")
        except (aiohttp.ClientError, TimeoutError):
            spool.discard()
            raise bad_request("failed to get HTTP URL content") from None
        except BaseException:
            spool.discard()
            raise
        upload = spool.finish()
        stored, _ = self._store_upload(upload, kind, label)
        return _FileRef(stored, _sent(stored, label, uploaded=False, source="url", name=upload.filename))

    async def _thumbnail(self, p: Params, value: Any, label: str, call: Call) -> Json | None:
        # Only a fresh upload can be a thumbnail; a file_id or URL here is ignored, as Telegram does.
        upload: Upload | None = None
        if isinstance(value, str) and value.startswith("attach://"):
            upload = p.uploads.get(value.removeprefix("attach://"))
        elif not value and label == "thumbnail":
            upload = p.uploads.get("thumbnail")
        if upload is None:
            return None
        if upload.size > THUMBNAIL_LIMIT:
            raise bad_request(
                f"file of size {upload.size} bytes is too big for a thumbnail; "
                f"the maximum size is {THUMBNAIL_LIMIT} bytes"
            )
        size = probe_image(upload.path)
        if size is None or max(size) > 320 or not _is_jpeg(upload.path):
            # Telegram ignores a thumbnail that is not a JPEG of at most 320x320.
            return None
        stored = self.files.add(
            FileKind.THUMBNAIL, upload, mime_type="image/jpeg", width=size[0], height=size[1]
        )
        call.files.append(_sent(stored, label, uploaded=True, source="upload", name=upload.filename))
        return _photo_size(stored)

    def _media_json(self, ref: _FileRef, kind: FileKind, attrs: Json, thumbnail: Json | None) -> Any:
        stored = ref.stored
        if ref.sent.uploaded and kind in (FileKind.VIDEO, FileKind.ANIMATION, FileKind.AUDIO):
            # Telegram takes dimensions and duration from the first upload; a re-send keeps them.
            for key in ("width", "height", "duration"):
                if attrs.get(key) is not None:
                    setattr(
                        stored,
                        key,
                        max(0, min(int(attrs[key]), MAX_DIMENSION if key != "duration" else 10**7)),
                    )
            for key in ("performer", "title"):
                if attrs.get(key):
                    stored.extra[key] = attrs[key]
            if thumbnail is not None:
                stored.extra["thumbnail"] = thumbnail
        if kind == FileKind.PHOTO:
            group = stored.extra.get("group") or [stored.file_id]
            return [_photo_size(self.files.get(file_id) or stored) for file_id in group]
        data: Json = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id}
        if kind in (FileKind.VIDEO, FileKind.ANIMATION):
            data.update(width=stored.width, height=stored.height, duration=stored.duration)
        elif kind == FileKind.AUDIO:
            data["duration"] = stored.duration
            for key in ("performer", "title"):
                if stored.extra.get(key):
                    data[key] = stored.extra[key]
        thumb = thumbnail if thumbnail is not None else stored.extra.get("thumbnail")
        if thumb is not None:
            data["thumbnail"] = thumb
        if stored.file_name:
            data["file_name"] = stored.file_name
        if stored.mime_type:
            data["mime_type"] = stored.mime_type
        data["file_size"] = stored.size
        return data

    async def _send_file(self, p: Params, call: Call, kind: FileKind, field_name: str) -> Json:
        value = p.raw.get(field_name)
        ref = await self._input_file(p, value, field_name, kind, field_name)
        if ref is None:
            raise bad_request(f"there is no {field_name} in the request")
        call.files.append(ref.sent)
        caption = self._caption(p.text("caption"), p.text("parse_mode"), p.decoded("caption_entities"))
        thumbnail = None
        if kind != FileKind.PHOTO:
            thumbnail = await self._thumbnail(p, p.raw.get("thumbnail"), "thumbnail", call)
        target = self._target(p, call)
        attrs: Json = {key: p.integer(key) for key in ("width", "height", "duration")}
        attrs.update(performer=p.text("performer"), title=p.text("title"))
        content: Json = {kind.value: self._media_json(ref, kind, attrs, thumbnail)}
        content.update(caption)
        extra: Json = {}
        if p.flag("show_caption_above_media") and kind in (FileKind.PHOTO, FileKind.VIDEO):
            extra["show_caption_above_media"] = True
        if p.flag("has_spoiler") and kind in (FileKind.PHOTO, FileKind.VIDEO):
            extra["has_media_spoiler"] = True
        self._spend(target.chat, 1)
        return self._post(target, content, extra)

    # ---- methods: identity and updates

    async def get_me(self, p: Params, call: Call) -> Json:
        """getMe."""
        me = self.world.bot.json()
        me.update(
            can_join_groups=True,
            can_read_all_group_messages=not self.privacy_mode,
            supports_inline_queries=self.supports_inline_queries,
            can_connect_to_business=False,
            has_main_web_app=False,
        )
        return me

    async def get_updates(self, p: Params, call: Call) -> list[Json]:
        """getUpdates with offset, limit, timeout (long polling) and allowed_updates."""
        if self.webhook is not None:
            raise conflict(
                "can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first"
            )
        offset = p.integer("offset", 0) or 0
        limit = min(100, max(1, p.integer("limit", 100) or 100))
        timeout = min(50, max(0, p.integer("timeout", 0) or 0))
        self.updates.set_allowed(p.decoded("allowed_updates", "allowed updates"))
        return await self.updates.poll(offset, limit, timeout)

    async def set_webhook(self, p: Params, call: Call) -> bool:
        """setWebhook; an empty url deletes it."""
        url = p.text("url") or ""
        if p.flag("drop_pending_updates"):
            self.updates.clear()
        if not url:
            return await self.delete_webhook(p, call)
        parsed = URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise bad_request("invalid webhook URL specified")
        if not is_loopback(parsed.host):
            raise bad_request("bad webhook: the sandbox delivers webhooks to loopback addresses only")
        secret = p.text("secret_token")
        if secret is not None:
            if len(secret) > 256:
                raise bad_request("secret token is too long")
            if not re.fullmatch(r"[A-Za-z0-9_-]*", secret):
                raise bad_request("secret token contains unallowed characters")
        max_connections = min(100, max(1, p.integer("max_connections", 40) or 40))
        self.updates.set_allowed(p.decoded("allowed_updates", "allowed updates"))
        current = self.webhook
        if current and (current.url, current.secret_token, current.max_connections) == (
            url,
            secret,
            max_connections,
        ):
            call.description = "Webhook is already set"
            return True
        self.updates.terminate("terminated by setWebhook request")
        self.webhook = Webhook(url, secret, max_connections)
        call.description = "Webhook was set"
        self.on_webhook_change()
        self._on_change()
        return True

    async def delete_webhook(self, p: Params, call: Call) -> bool:
        """deleteWebhook (with drop_pending_updates)."""
        if p.flag("drop_pending_updates"):
            self.updates.clear()
        if self.webhook is None:
            call.description = "Webhook is already deleted"
            return True
        self.webhook = None
        call.description = "Webhook was deleted"
        self.on_webhook_change()
        self._on_change()
        return True

    async def get_webhook_info(self, p: Params, call: Call) -> Json:
        """getWebhookInfo."""
        hook = self.webhook
        info: Json = {
            "url": hook.url if hook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(self.updates.pending),
        }
        if hook is not None:
            info["max_connections"] = hook.max_connections
            if hook.last_error_date:
                info["last_error_date"] = hook.last_error_date
                info["last_error_message"] = hook.last_error_message
            if self.updates.allowed is not None:
                info["allowed_updates"] = sorted(self.updates.allowed)
        return info

    async def close_method(self, p: Params, call: Call) -> bool:
        """close / logOut: accepted and harmless here."""
        return True

    # ---- methods: sending

    async def send_message(self, p: Params, call: Call) -> Json:
        """sendMessage."""
        text = p.text("text")
        if not text:
            raise bad_request("message text is empty")
        formatted = self._format(
            text, p.text("parse_mode"), p.decoded("entities"), TEXT_LIMIT, "message is too long"
        )
        if not formatted.text:
            raise bad_request("text must be non-empty")
        target = self._target(p, call)
        content: Json = {"text": formatted.text}
        if formatted.entities:
            content["entities"] = formatted.entities
        preview = p.decoded("link_preview_options", "link preview options")
        if isinstance(preview, dict) and preview:
            content["link_preview_options"] = preview
        elif p.flag("disable_web_page_preview"):
            content["link_preview_options"] = {"is_disabled": True}
        self._spend(target.chat, 1)
        return self._post(target, content)

    async def send_photo(self, p: Params, call: Call) -> Json:
        """sendPhoto."""
        return await self._send_file(p, call, FileKind.PHOTO, "photo")

    async def send_video(self, p: Params, call: Call) -> Json:
        """sendVideo."""
        return await self._send_file(p, call, FileKind.VIDEO, "video")

    async def send_audio(self, p: Params, call: Call) -> Json:
        """sendAudio."""
        return await self._send_file(p, call, FileKind.AUDIO, "audio")

    async def send_document(self, p: Params, call: Call) -> Json:
        """sendDocument."""
        return await self._send_file(p, call, FileKind.DOCUMENT, "document")

    async def send_media_group(self, p: Params, call: Call) -> list[Json]:
        """sendMediaGroup: 2-10 photos/videos, or only audios, or only documents."""
        media = p.decoded("media", "media")
        if media is None:
            raise bad_request('parameter "media" is required')
        if not isinstance(media, list):
            raise bad_request("expected an Array of InputMedia")
        if len(media) > 10:
            raise bad_request("too many messages to send as an album")
        if not media:
            raise bad_request("there are no messages to send")
        if len(media) < 2:
            # The documented contract (2-10 items); the cloud server happens to accept one.
            raise bad_request("media group must contain 2-10 items")
        kinds = {
            "photo": FileKind.PHOTO,
            "video": FileKind.VIDEO,
            "audio": FileKind.AUDIO,
            "document": FileKind.DOCUMENT,
        }
        items: list[tuple[FileKind, _FileRef, Json, Json | None, Json]] = []
        for index, item in enumerate(media):
            if not isinstance(item, dict):
                raise bad_request("can't parse InputMedia: expected an Object")
            kind_name = item.get("type")
            if kind_name == "animation":
                raise bad_request(
                    "can't parse InputMedia: type \"animation\" can't be used in sendMediaGroup"
                )
            if kind_name not in kinds:
                raise bad_request(f'can\'t parse InputMedia: type "{kind_name}" is unsupported')
            kind = kinds[kind_name]
            label = f"media[{index}]"
            ref = await self._input_file(p, item.get("media"), label, kind, label)
            if ref is None:
                raise bad_request("can't parse InputMedia: media not found")
            call.files.append(ref.sent)
            caption = self._caption(item.get("caption"), item.get("parse_mode"), item.get("caption_entities"))
            thumbnail = None
            if kind != FileKind.PHOTO:
                thumbnail = await self._thumbnail(p, item.get("thumbnail"), f"{label}.thumbnail", call)
            items.append((kind, ref, caption, thumbnail, item))
        present = {kind for kind, *_ in items}
        for lone in (FileKind.AUDIO, FileKind.DOCUMENT):
            if lone in present and len(present) > 1:
                raise bad_request(f"{lone.value} can't be mixed with other media types")
        if len({bool(item.get("show_caption_above_media")) for *_, item in items}) > 1:
            raise bad_request("parameter show_caption_above_media must be the same for all messages")
        target = self._target(p, call)
        target.markup = None  # albums carry no reply markup
        self._spend(target.chat, len(items))
        group_id = str(secrets.randbelow(9 * 10**17) + 10**17)
        messages = []
        for kind, ref, caption, thumbnail, item in items:
            attrs = {key: item.get(key) for key in ("width", "height", "duration", "performer", "title")}
            content: Json = {kind.value: self._media_json(ref, kind, attrs, thumbnail)}
            content.update(caption)
            extra: Json = {"media_group_id": group_id}
            if item.get("has_spoiler") and kind in (FileKind.PHOTO, FileKind.VIDEO):
                extra["has_media_spoiler"] = True
            if item.get("show_caption_above_media"):
                extra["show_caption_above_media"] = True
            messages.append(self._post(target, content, extra, markup=False))
        return messages

    async def send_chat_action(self, p: Params, call: Call) -> bool:
        """sendChatAction."""
        chat = self._chat(p, call)
        action = p.text("action") or ""
        if action not in CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        self._check_can_send(chat)
        topic = self._topic(chat, p)
        call.thread_id = topic.thread_id if topic else None
        return True

    # ---- methods: editing and deleting

    def _message(self, p: Params, call: Call, purpose: str) -> tuple[Chat, int, Json]:
        """The chat and message a call names; 400 "message to <purpose> not found" if it is gone."""
        chat = self._chat(p, call)
        message_id = p.integer("message_id")
        if not message_id:
            raise bad_request("message identifier is not specified")
        message = chat.messages.get(message_id)
        if message is None:
            raise bad_request(f"message to {purpose} not found")
        call.thread_id = message.get("message_thread_id") if chat.is_forum else None
        return chat, message_id, message

    def _editable(self, p: Params, call: Call) -> tuple[Chat, Json]:
        chat, message_id, message = self._message(p, call, "edit")
        if message_id not in chat.by_bot:
            raise bad_request("message can't be edited")
        return chat, message

    def _apply_edit(self, message: Json, changes: Json, markup: Json | None) -> Json:
        before = {key: message.get(key) for key in (*changes, "reply_markup")}
        after = {**changes, "reply_markup": markup}
        if before == after:
            raise bad_request(NOT_MODIFIED)
        for key, value in after.items():
            if value is None:
                message.pop(key, None)
            else:
                message[key] = value
        message["edit_date"] = int(time.time())
        self._on_change()
        return message

    def _inline_edit(self, p: Params, call: Call) -> bool:
        self.inline_edits.append({"inline_message_id": p.text("inline_message_id"), "params": call.params})
        self._on_change()
        return True

    async def edit_message_text(self, p: Params, call: Call) -> Json | bool:
        """editMessageText (a message, or an inline message by inline_message_id)."""
        text = p.text("text")
        if not text:
            raise bad_request("message text is empty")
        formatted = self._format(
            text, p.text("parse_mode"), p.decoded("entities"), TEXT_LIMIT, "message is too long"
        )
        markup = self._markup(p)
        if p.has("inline_message_id"):
            return self._inline_edit(p, call)
        _, message = self._editable(p, call)
        if "text" not in message:
            raise bad_request("there is no text in the message to edit")
        changes = {"text": formatted.text, "entities": formatted.entities or None}
        return self._apply_edit(message, changes, markup)

    async def edit_message_caption(self, p: Params, call: Call) -> Json | bool:
        """editMessageCaption."""
        caption = self._caption(p.text("caption"), p.text("parse_mode"), p.decoded("caption_entities"))
        markup = self._markup(p)
        if p.has("inline_message_id"):
            return self._inline_edit(p, call)
        _, message = self._editable(p, call)
        if not any(key in message for key in ("photo", "video", "audio", "document", "animation")):
            raise bad_request("there is no caption in the message to edit")
        changes = {"caption": caption.get("caption"), "caption_entities": caption.get("caption_entities")}
        return self._apply_edit(message, changes, markup)

    async def edit_message_reply_markup(self, p: Params, call: Call) -> Json | bool:
        """editMessageReplyMarkup."""
        markup = self._markup(p)
        if p.has("inline_message_id"):
            return self._inline_edit(p, call)
        _, message = self._editable(p, call)
        return self._apply_edit(message, {}, markup)

    async def delete_message(self, p: Params, call: Call) -> bool:
        """deleteMessage: the bot's own messages anywhere; others' in private chats, or as an admin."""
        chat, message_id, message = self._message(p, call, "delete")
        own = message_id in chat.by_bot or chat.type == ChatType.CHANNEL
        allowed = (
            own
            or chat.type == ChatType.PRIVATE
            or (chat.bot_status == "administrator" and chat.bot_can_delete)
        )
        if not allowed or "forum_topic_created" in message:
            raise bad_request("message can't be deleted")
        del chat.messages[message_id]
        self._on_change()
        return True

    # ---- methods: queries

    async def answer_callback_query(self, p: Params, call: Call) -> bool:
        """answerCallbackQuery (once, within the query's lifetime)."""
        press = self.presses.get(p.text("callback_query_id") or "")
        if press is None or press.answer is not None or time.monotonic() - press.at > self.callback_query_ttl:
            raise bad_request(QUERY_TOO_OLD)
        text = p.text("text") or ""
        if len(text) > 200:
            raise bad_request("MESSAGE_TOO_LONG")
        press.answer = {
            "text": text or None,
            "show_alert": p.flag("show_alert"),
            "url": p.text("url"),
            "cache_time": p.integer("cache_time", 0),
        }
        call.chat_id = press.chat_id
        self._on_change()
        return True

    async def answer_inline_query(self, p: Params, call: Call) -> bool:
        """answerInlineQuery: up to 50 results with unique ids; cached results must name known file_ids."""
        query = self.inline_queries.get(p.text("inline_query_id") or "")
        results = p.decoded("results", "inline query results")
        if results is None:
            results = []
        if not isinstance(results, list):
            raise bad_request("expected an Array of inline query results")
        if len(results) > 50:
            raise bad_request("too many inline query results specified")
        seen: set[str] = set()
        for result in results:
            self._check_inline_result(result, seen)
        if query is None or query.answer is not None or time.monotonic() - query.at > self.inline_query_ttl:
            raise bad_request(QUERY_TOO_OLD)
        query.answer = {
            "results": results,
            "cache_time": p.integer("cache_time", 300),
            "is_personal": p.flag("is_personal"),
            "next_offset": p.text("next_offset") or "",
            "button": p.decoded("button", "inline query results button"),
        }
        self._on_change()
        return True

    def _check_inline_result(self, result: Any, seen: set[str]) -> None:
        if not isinstance(result, dict):
            raise bad_request("can't parse inline query result: expected an Object")
        kind = result.get("type")
        if kind not in INLINE_RESULT_TYPES:
            raise bad_request(f'can\'t parse inline query result: type "{kind}" is unsupported')
        result_id = result.get("id")
        if not isinstance(result_id, str) or not 1 <= len(result_id.encode()) <= 64:
            raise bad_request("RESULT_ID_INVALID")
        if result_id in seen:
            raise bad_request("RESULT_ID_DUPLICATE")
        seen.add(result_id)
        for key, file_kind in CACHED_RESULT_FIELDS.items():
            if key in result:
                stored = self.files.get(str(result[key]))
                if stored is None or not stored.valid or not compatible(stored.kind, file_kind):
                    raise bad_request(WRONG_FILE)
        if result.get("caption"):
            self._caption(result["caption"], result.get("parse_mode"), result.get("caption_entities"))
        content = result.get("input_message_content")
        if isinstance(content, dict) and "message_text" in content:
            self._format(
                str(content["message_text"]),
                content.get("parse_mode"),
                content.get("entities"),
                TEXT_LIMIT,
                "message is too long",
            )
        elif kind == "article":
            raise bad_request("can't parse inline query result: input_message_content not found")

    # ---- methods: commands, files, chats

    def _command_key(self, p: Params) -> tuple[str, str]:
        scope = p.decoded("scope", "BotCommandScope") or {"type": "default"}
        if not isinstance(scope, dict) or "type" not in scope:
            raise bad_request("can't parse BotCommandScope JSON object")
        language = p.text("language_code") or ""
        if language and not re.fullmatch(r"[a-z]{2}", language):
            raise bad_request("invalid language code specified")
        return json.dumps(scope, sort_keys=True), language

    async def set_my_commands(self, p: Params, call: Call) -> bool:
        """setMyCommands for a scope and language."""
        commands = p.decoded("commands", "commands")
        if not isinstance(commands, list):
            raise bad_request("expected an Array of BotCommand")
        if len(commands) > 100:
            raise bad_request("too many commands specified")
        clean: list[Json] = []
        for command in commands:
            if not isinstance(command, dict):
                raise bad_request("can't parse BotCommand: expected an Object")
            name = str(command.get("command", "")).removeprefix("/")
            description = str(command.get("description", "")).strip()
            if not re.fullmatch(r"[a-z0-9_]{1,32}", name):
                raise bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(description) <= 256:
                raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
            clean.append({"command": name, "description": description})
        key = self._command_key(p)
        if clean:
            self.commands[key] = clean
        else:
            self.commands.pop(key, None)
        self._on_change()
        return True

    async def get_my_commands(self, p: Params, call: Call) -> list[Json]:
        """getMyCommands for exactly that scope and language."""
        return list(self.commands.get(self._command_key(p), []))

    async def delete_my_commands(self, p: Params, call: Call) -> bool:
        """deleteMyCommands."""
        self.commands.pop(self._command_key(p), None)
        self._on_change()
        return True

    async def get_file(self, p: Params, call: Call) -> Json:
        """getFile: a path to download from (20 MB cap unless on a local Bot API server)."""
        stored = self.files.get(p.text("file_id") or "")
        if stored is None or not stored.valid:
            raise bad_request("wrong file_id or the file is temporarily unavailable")
        if not self.local_api and stored.size > DOWNLOAD_LIMIT:
            raise bad_request("file is too big")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.size,
            "file_path": str(stored.path) if self.local_api else stored.file_path,
        }

    async def get_chat(self, p: Params, call: Call) -> Json:
        """getChat (a ChatFullInfo with the fields aiogram requires)."""
        chat = self._chat(p, call)
        info = chat.json()
        info.update(
            accent_color_id=0,
            max_reaction_count=11,
            accepted_gift_types={
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        )
        return info

    def _member(self, chat: Chat, user: User) -> Json:
        if user.id == self.world.bot.id:
            if chat.bot_status == "administrator":
                return _administrator(user, can_delete=chat.bot_can_delete or chat.type == ChatType.CHANNEL)
            return {"status": chat.bot_status, "user": user.json()}
        if chat.type == ChatType.PRIVATE:
            return {"status": "member", "user": user.json()}
        if chat.owner_id == user.id:
            return {"status": "creator", "user": user.json(), "is_anonymous": False}
        if user.id in chat.admins:
            return _administrator(user, can_delete=chat.admins[user.id])
        return {"status": "member", "user": user.json()}

    async def get_chat_member(self, p: Params, call: Call) -> Json:
        """getChatMember: creator, administrator or member."""
        chat = self._chat(p, call)
        user = self.world.users.get(p.integer("user_id", 0) or 0)
        if user is None:
            raise bad_request("user not found")
        return self._member(chat, user)

    async def get_chat_administrators(self, p: Params, call: Call) -> list[Json]:
        """getChatAdministrators."""
        chat = self._chat(p, call)
        if chat.type == ChatType.PRIVATE:
            raise bad_request("there are no administrators in the private chat")
        ids = ([chat.owner_id] if chat.owner_id else []) + [
            uid for uid in chat.admins if uid != chat.owner_id
        ]
        if chat.bot_status == "administrator":
            ids.append(self.world.bot.id)
        return [self._member(chat, self.world.users[uid]) for uid in ids if uid in self.world.users]


def _administrator(user: User, *, can_delete: bool) -> Json:
    rights = dict.fromkeys(
        (
            "can_be_edited",
            "is_anonymous",
            "can_manage_video_chats",
            "can_restrict_members",
            "can_promote_members",
            "can_change_info",
            "can_post_stories",
            "can_edit_stories",
            "can_delete_stories",
            "can_send_welcome_messages",
        ),
        False,
    )
    rights.update(can_manage_chat=True, can_invite_users=True, can_delete_messages=can_delete)
    return {"status": "administrator", "user": user.json(), **rights}


def _check_button(button: Any) -> None:
    if not isinstance(button, dict) or not str(button.get("text", "")).strip():
        raise bad_request("text buttons are unallowed in the inline keyboard")
    actions = {
        "url",
        "callback_data",
        "switch_inline_query",
        "switch_inline_query_current_chat",
        "switch_inline_query_chosen_chat",
        "web_app",
        "login_url",
        "pay",
        "callback_game",
        "copy_text",
    }
    if not actions & set(button):
        raise bad_request("text buttons are unallowed in the inline keyboard")
    if "callback_data" in button:
        data = button["callback_data"]
        if not isinstance(data, str) or not 1 <= len(data.encode()) <= 64:
            raise bad_request("BUTTON_DATA_INVALID")
    if "url" in button:
        url = str(button["url"])
        if not re.match(r"^(https?|tg)://\S+$", url, re.IGNORECASE):
            raise bad_request("BUTTON_URL_INVALID")


def _photo_size(stored: StoredFile) -> Json:
    return {
        "file_id": stored.file_id,
        "file_unique_id": stored.file_unique_id,
        "file_size": int(stored.extra.get("reported_size", stored.size)),
        "width": stored.width,
        "height": stored.height,
    }


def _sent(
    stored: StoredFile, label: str, *, uploaded: bool, source: str, name: str | None = None
) -> SentFile:
    return SentFile(
        field=label,
        kind=stored.kind.value,
        file_id=stored.file_id,
        file_unique_id=stored.file_unique_id,
        uploaded=uploaded,
        source=source,
        name=name if name is not None else stored.file_name,
        size=stored.size,
        sha256=stored.sha256,
        path=stored.path,
        mime_type=stored.mime_type,
    )


def _is_jpeg(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(2) == b"\xff\xd8"


def _hash_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _decoded_params(p: Params) -> Json:
    decoded: Json = {}
    for key, value in p.raw.items():
        if key in JSON_FIELDS and isinstance(value, str):
            try:
                decoded[key] = json.loads(value)
            except ValueError:
                decoded[key] = value
        else:
            decoded[key] = value
    return decoded
