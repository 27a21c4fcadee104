"""Delivers media into one Telegram chat: uploads, file_id re-sends, albums, captions, error lines."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from aiogram import Bot
from aiogram.enums import ChatAction
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import (
    InputFile,
    InputMediaPhoto,
    Message,
    ReplyParameters,
)
from aiogram.types.media_union import MediaUnion

from bot.chat.cards import post_card
from bot.chat.errors import error_text, group_error_text
from bot.chat.flow import Sent, StaleReference
from bot.chat.i18n import t
from bot.chat.interaction import ReplyFailed
from bot.chat.variants import photo_variant, photo_variants
from bot.telegram.render import html_attr, html_text, render_card
from bot.telegram.session import reply_budget
from bot.telegram.upload import SpoolUpload
from services.download.growing import GrowingFile
from services.download.models import FileRole, MediaFile, MediaKind, Want
from services.download.service import Media
from services.errors import TooLarge, UpstreamError
from services.links import TikTokLink
from services.metadata.models import Post
from services.store.chats import ChatPrefs

log = logging.getLogger("tiktok_bot.telegram")

ALBUM_SIZE = 10
# A chat action shows for 5 s or until the next message (Bot API docs, sendChatAction); aiogram's
# ChatActionSender renews it every 5 s, and so do we.
CHAT_ACTION_EVERY = 5.0
# Seconds one reply may spend waiting out Telegram's flood control before it counts as not delivered.
REPLY_BUDGET = 60.0
# Uploads are read from the spool in the event loop (bot/telegram/upload.py), 256 KiB at a time.
UPLOAD_CHUNK = 256 * 1024
# Telegram's wording when a file_id is unknown, expired or belongs to another bot; an outdated file reference
# reads "FILE_REFERENCE_EXPIRED" (in an album "FILE_REFERENCE_0_EXPIRED"), with underscores.
_STALE_MARKERS = (
    "wrong file identifier",
    "file reference",
    "file_reference_",
    "wrong remote file",
    "file_id",
)


def _is_stale(exc: TelegramBadRequest) -> bool:
    return any(marker in exc.message.lower() for marker in _STALE_MARKERS)


class TelegramSender:
    """The MediaSender for one incoming Telegram message (or channel post)."""

    def __init__(
        self,
        bot: Bot,
        *,
        chat_id: int,
        lang: str,
        prefs: ChatPrefs,
        upload_limit: int,
        private: bool,
        thread_id: int | None = None,
        reply_to: int | None = None,
        budget: float = REPLY_BUDGET,
    ) -> None:
        self.bot = bot
        self.budget = budget
        self.chat_id = chat_id
        self.thread_id = thread_id
        self.reply_to = reply_to
        self.lang = lang
        self.prefs = prefs
        self._upload_limit = upload_limit
        self.private = private

    @classmethod
    def replying_to(
        cls,
        bot: Bot,
        message: Message,
        *,
        lang: str,
        prefs: ChatPrefs,
        upload_limit: int,
        private: bool,
        budget: float = REPLY_BUDGET,
    ) -> TelegramSender:
        """A sender answering `message` in its chat and forum topic."""
        return cls(
            bot,
            chat_id=message.chat.id,
            thread_id=message.message_thread_id if message.is_topic_message else None,
            reply_to=message.message_id,
            lang=lang,
            prefs=prefs,
            upload_limit=upload_limit,
            private=private,
            budget=budget,
        )

    @property
    def upload_limit(self) -> int:
        """Bytes one upload may carry through this Bot API server."""
        return self._upload_limit

    def _where(self) -> dict[str, Any]:
        reply = (
            ReplyParameters(message_id=self.reply_to, allow_sending_without_reply=True)
            if self.reply_to is not None
            else None
        )
        return {"chat_id": self.chat_id, "message_thread_id": self.thread_id, "reply_parameters": reply}

    def caption(self, post: Post | None) -> str | None:
        """The HTML caption for a post, or None when captions are off or nothing is known."""
        if not self.prefs.captions or post is None:
            return None
        return render_card(post_card(post, self.lang), self.lang)

    @contextlib.asynccontextmanager
    async def working(self, want: Want) -> AsyncIterator[None]:
        """Show "sending video…" (or audio) in the chat, renewed every 5 s, until the block ends."""
        action = ChatAction.UPLOAD_VOICE if want is Want.AUDIO else ChatAction.UPLOAD_VIDEO
        keeper = asyncio.create_task(self._keep_action(action), name="telegram-chat-action")
        try:
            yield
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def _keep_action(self, action: ChatAction) -> None:
        """Send the chat action every CHAT_ACTION_EVERY s; a refusal only skips (or delays) a refresh."""
        while True:
            wait = CHAT_ACTION_EVERY
            try:
                await self.bot.send_chat_action(self.chat_id, action, message_thread_id=self.thread_id)
            except TelegramRetryAfter as exc:
                wait = max(wait, float(exc.retry_after))  # decoration: never waited out, never retried early
            except Exception as exc:  # the action is decoration: whatever happens to it, the reply goes on
                log.debug("chat action not shown: %s", type(exc).__name__)
            await asyncio.sleep(wait)

    @contextlib.contextmanager
    def _replying(self) -> Iterator[None]:
        """One reply: its calls share the flood-wait budget; a platform refusal becomes ReplyFailed."""
        with reply_budget(self.budget):
            try:
                yield
            except TelegramRetryAfter as exc:
                raise ReplyFailed("flood", f"flood control past the budget ({exc.retry_after}s)") from exc
            except TelegramForbiddenError as exc:
                raise ReplyFailed("forbidden", exc.message) from exc
            except TelegramServerError as exc:
                raise ReplyFailed("server_error", exc.message) from exc
            except TelegramEntityTooLarge:
                raise  # aiogram files the 413 under network errors; send_media answers it with the card
            except TelegramNetworkError as exc:
                raise ReplyFailed("network", exc.message) from exc

    async def send_text(self, html: str) -> Message:
        """A plain reply in the same chat and topic."""
        with self._replying():
            return await self.bot.send_message(text=html, **self._where())

    async def send_error(self, error: BaseException, link: TikTokLink | None) -> None:
        """A specific answer in private chats, one short line elsewhere."""
        text = error_text(error, self.lang) if self.private else group_error_text(error, self.lang)
        await self.send_text(html_text(text))

    async def send_too_large(self, post: Post | None, link: TikTokLink, error: TooLarge) -> None:
        """The stats card and the link instead of a file that does not fit."""
        note = html_text(error_text(error, self.lang))
        if post is not None:
            body = render_card(post_card(post, self.lang), self.lang, limit=3500)
            await self.send_text(f"{note}\n\n{body}")
        else:
            url = html_attr(link.url)
            await self.send_text(f'{note}\n<a href="{url}">{html_text(t(self.lang, "card.open"))}</a>')

    # --- uploads -------------------------------------------------------------------------------------------

    async def send_media(self, media: Media, post: Post | None, want: Want) -> Sent:
        """Upload the downloaded files; return their file_ids for the cache."""
        post = post or media.post
        caption = self.caption(post)
        try:
            with self._replying():
                return await self._upload_media(media, post, want, caption)
        except TelegramEntityTooLarge as exc:
            raise TooLarge(size=sum(f.size for f in media.files), limit=self.upload_limit) from exc

    async def send_stream(self, stream: GrowingFile, post: Post | None) -> Sent:
        """Upload a video while it downloads (exact Content-Length when its size is known); raise, posting
        nothing, if the download fails."""
        name = f"{post.id if post else 'video'}.mp4"
        upload = SpoolUpload(stream, name, content_type=stream.info.mime, chunk_size=UPLOAD_CHUNK)
        info = MediaFile(
            path=stream.path,
            mime=stream.info.mime,
            size=stream.size or 0,
            role=FileRole.VIDEO,
            width=stream.info.width,
            height=stream.info.height,
            duration=stream.info.duration,
        )
        try:
            with self._replying():
                sent = await self._video(upload, info, self.caption(post))
        except TelegramEntityTooLarge as exc:
            raise TooLarge(size=stream.written, limit=self.upload_limit) from exc
        sent.bytes_sent = stream.written
        return sent

    async def _upload_media(self, media: Media, post: Post | None, want: Want, caption: str | None) -> Sent:
        if want is Want.AUDIO or media.kind is MediaKind.AUDIO:
            audio = _first(media.files, "audio")
            return await self._audio(_upload(audio.path), audio, post, caption, "audio")
        if media.kind is MediaKind.PHOTOS:
            return await self._photos(media, post, caption)
        video = _first(media.files, "video")
        name = f"{post.id if post else 'video'}.mp4"
        return await self._video(_upload(video.path, name), _with_post_dims(video, post), caption)

    async def _video(self, file: InputFile | str, info: MediaFile | None, caption: str | None) -> Sent:
        msg = await self.bot.send_video(
            video=file,
            width=info.width if info else None,
            height=info.height if info else None,
            duration=round(info.duration) if info and info.duration else None,
            supports_streaming=True,
            caption=caption,
            **self._where(),
        )
        assert msg.video is not None
        return Sent({"video": msg.video.file_id}, info.size if info and isinstance(file, InputFile) else 0)

    async def _audio(
        self,
        file: InputFile | str,
        info: MediaFile | None,
        post: Post | None,
        caption: str | None,
        key: str,
    ) -> Sent:
        music = post.music if post else None
        msg = await self.bot.send_audio(
            audio=file,
            title=(music.title if music and music.title else None),
            performer=(music.author if music and music.author else (post.author if post else None)),
            duration=round(info.duration) if info and info.duration else None,
            caption=caption,
            **self._where(),
        )
        assert msg.audio is not None
        return Sent({key: msg.audio.file_id}, info.size if info and isinstance(file, InputFile) else 0)

    async def _photos(self, media: Media, post: Post | None, caption: str | None) -> Sent:
        photos = [f for f in media.files if f.role == "photo"]
        sent = await self._albums([_upload(p.path) for p in photos], caption)
        sent.bytes_sent = sum(p.size for p in photos)
        audio = next((f for f in media.files if f.role == "audio"), None)
        if audio is not None and self.prefs.slideshow_sound:
            extra = await self._audio(_upload(audio.path), audio, post, None, "audio")
            sent.refs.update(extra.refs)
            sent.bytes_sent += extra.bytes_sent
        return sent

    async def _albums(self, files: Sequence[InputFile | str], caption: str | None) -> Sent:
        """Photos as albums of up to ten (a lone photo goes by sendPhoto); refs `photo:<n>`."""
        refs: dict[str, str] = {}
        index = 0
        for start in range(0, len(files), ALBUM_SIZE):
            chunk = files[start : start + ALBUM_SIZE]
            first_caption = caption if start == 0 else None
            if len(chunk) == 1:
                msg = await self.bot.send_photo(photo=chunk[0], caption=first_caption, **self._where())
                assert msg.photo
                refs[photo_variant(index)] = msg.photo[-1].file_id
                index += 1
                continue
            group: list[MediaUnion] = [
                InputMediaPhoto(media=item, caption=first_caption if i == 0 else None)
                for i, item in enumerate(chunk)
            ]
            messages = await self.bot.send_media_group(media=group, **self._where())
            for msg in messages:
                assert msg.photo
                refs[photo_variant(index)] = msg.photo[-1].file_id
                index += 1
        return Sent(refs, 0)

    # --- re-sends by file_id -------------------------------------------------------------------------------

    async def send_cached(self, post: Post | None, refs: Mapping[str, str], want: Want) -> Sent:
        """Re-send by file_id (no upload, no size limit); StaleReference if Telegram refuses one."""
        caption = self.caption(post)
        try:
            with self._replying():
                return await self._resend(post, refs, want, caption)
        except KeyError as exc:
            raise StaleReference(f"missing {exc}") from exc
        except TelegramBadRequest as exc:
            if _is_stale(exc):
                raise StaleReference(exc.message) from exc
            raise

    async def _resend(
        self, post: Post | None, refs: Mapping[str, str], want: Want, caption: str | None
    ) -> Sent:
        if want is Want.AUDIO:
            return await self._audio(refs["audio"], None, post, caption, "audio")
        if "video" in refs:
            return await self._video(refs["video"], _info_from_post(post), caption)
        photos = [refs[k] for k in photo_variants(refs)]
        if not photos:
            raise StaleReference("no usable reference")
        sent = await self._albums(photos, caption)
        if "audio" in refs and self.prefs.slideshow_sound:
            await self._audio(refs["audio"], None, post, None, "audio")
        return sent


def _upload(path: Path, name: str | None = None, mime: str = "application/octet-stream") -> SpoolUpload:
    """A finished file to upload, read in UPLOAD_CHUNK pieces."""
    return SpoolUpload(path, name, content_type=mime, chunk_size=UPLOAD_CHUNK)


def _first(files: Sequence[MediaFile], role: str) -> MediaFile:
    for f in files:
        if f.role == role:
            return f
    raise UpstreamError(f"the backend returned no {role} file")


def _with_post_dims(info: MediaFile, post: Post | None) -> MediaFile:
    """The file's own dimensions and duration, filled in from the post where the backend did not say."""
    if post is None or (info.width and info.height and info.duration):
        return info
    return dataclasses.replace(
        info,
        width=info.width or post.width,
        height=info.height or post.height,
        duration=info.duration or post.duration,
    )


def _info_from_post(post: Post | None) -> MediaFile | None:
    if post is None:
        return None
    return MediaFile(
        path=Path(),
        mime="video/mp4",
        size=0,
        width=post.width,
        height=post.height,
        duration=post.duration,
        role=FileRole.VIDEO,
    )
