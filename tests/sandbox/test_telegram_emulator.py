"""The Telegram Bot API emulator, driven by real aiogram 3 over loopback HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import struct
import time
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiogram import Bot, Dispatcher, F, Router, html
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramEntityTooLarge,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramUnauthorizedError,
)
from aiogram.filters import Command
from aiogram.methods import SendMessage
from aiogram.types import (
    BotCommand,
    BufferedInputFile,
    CallbackQuery,
    FSInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InlineQuery,
    InlineQueryResultArticle,
    InlineQueryResultCachedVideo,
    InputMediaPhoto,
    InputMediaVideo,
    InputTextMessageContent,
    Message,
    ReplyParameters,
)
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web

from sandbox.runner import Sandbox, all_emulators
from sandbox.telegram import SANDBOX_TOKEN, TelegramEmulator


class LoopbackSession(AiohttpSession):
    """aiogram's session minus the 250 ms pause its close() makes for TLS (loopback is plain HTTP)."""

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()


def make_bot(emu: TelegramEmulator, *, token: str | None = None, local: bool = False) -> Bot:
    api = TelegramAPIServer.from_base(emu.base_url, is_local=local)
    return Bot(
        token or emu.token,
        session=LoopbackSession(api=api),
        default=DefaultBotProperties(parse_mode="HTML"),
    )


@pytest.fixture
async def emu() -> AsyncIterator[TelegramEmulator]:
    emulator = TelegramEmulator()
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()


@pytest.fixture
async def bot(emu: TelegramEmulator) -> AsyncIterator[Bot]:
    client = make_bot(emu)
    try:
        yield client
    finally:
        await client.session.close()


@contextlib.asynccontextmanager
async def polling(emu: TelegramEmulator, dp: Dispatcher, bot: Bot) -> AsyncIterator[None]:
    """Run the dispatcher's long polling against the emulator for the duration of the block."""
    task = asyncio.create_task(dp.start_polling(bot, handle_signals=False, close_bot_session=False))
    await emu.wait_for(method="getMe")  # polling runs from here on
    try:
        yield
    finally:
        await dp.stop_polling()
        await task


def png(width: int, height: int) -> bytes:
    """A small valid PNG of the given size."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def jpeg_header(width: int, height: int) -> bytes:
    """The start of a baseline JPEG: enough for Telegram (and the emulator) to read its size."""
    sof = struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8\xff\xc0" + sof + b"\xff\xd9"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---- identity, tokens, wire


async def test_get_me_names_the_sandbox_bot(emu: TelegramEmulator, bot: Bot) -> None:
    me = await bot.get_me()
    assert me.id == 123456 == bot.id
    assert me.is_bot and me.username == "tiktok_sandbox_bot"
    assert me.can_read_all_group_messages is True  # privacy mode off unless a test turns it on
    assert emu.transcript("getMe")[0].ok
    assert await bot.close() and await bot.log_out()  # harmless here
    assert (await bot.get_me()).id == me.id


async def test_unknown_token_and_method_answer_like_telegram(emu: TelegramEmulator) -> None:
    stranger = make_bot(emu, token="999:not-this-bot")
    try:
        with pytest.raises(TelegramUnauthorizedError, match="Unauthorized"):
            await stranger.get_me()
    finally:
        await stranger.session.close()
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{emu.base_url}/bot{emu.token}/sendTelepathy") as resp:
            assert resp.status == 404
            assert await resp.json() == {"ok": False, "error_code": 404, "description": "Not Found"}
        # Method names are case-insensitive, and JSON bodies work as well as forms.
        chat = emu.private_chat()
        async with http.post(
            f"{emu.base_url}/bot{emu.token}/SENDMESSAGE", json={"chat_id": chat.id, "text": "json body"}
        ) as resp:
            body = await resp.json()
    assert body["ok"] and body["result"]["text"] == "json body"
    assert emu.transcript("sendMessage")[0].params == {"chat_id": chat.id, "text": "json body"}


async def test_env_points_the_bot_at_the_emulator() -> None:
    assert any(isinstance(e, TelegramEmulator) for e in all_emulators())
    async with Sandbox([TelegramEmulator()]) as sandbox:
        env = sandbox.env()
        emu = sandbox.get(TelegramEmulator)
        assert env["TELEGRAM__TOKEN"] == SANDBOX_TOKEN
        assert env["TELEGRAM__API_URL"] == emu.base_url
        assert env["TELEGRAM__LOCAL_API"] == "false"


# ---- text


async def test_send_message_parses_html_into_entities(emu: TelegramEmulator, bot: Bot) -> None:
    chat = emu.private_chat()
    sent = await bot.send_message(chat.id, "😀 <b>bold</b> &amp; <a href='https://example.com'>link</a>")
    assert sent.text == "😀 bold & link"
    assert sent.from_user is not None and sent.from_user.id == bot.id
    entities = [(e.type, e.offset, e.length, e.url) for e in sent.entities or []]
    # Offsets count UTF-16 units: the emoji is two of them.
    assert entities == [("bold", 3, 4, None), ("text_link", 10, 4, "https://example.com/")]
    call = emu.sent_to(chat.id)[-1]
    assert call.method == "sendMessage" and call.params["parse_mode"] == "HTML"
    assert call.message == emu.messages_in(chat.id)[-1]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("<b>unclosed", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<blink>x</blink>", 'Unsupported start tag "blink" at byte offset 0'),
        ("a <b>x</i>", 'Unmatched end tag at byte offset 6, expected "</b>", found "</i>"'),
        ("1 < 2", 'Unsupported start tag "" at byte offset 2'),
    ],
)
async def test_bad_html_is_refused_with_telegrams_words(
    emu: TelegramEmulator, bot: Bot, text: str, error: str
) -> None:
    with pytest.raises(TelegramBadRequest) as caught:
        await bot.send_message(emu.private_chat().id, text)
    assert caught.value.message == f"Bad Request: can't parse entities: {error}"
    assert emu.sent_to(emu.private_chat().id) == []


async def test_text_limits(emu: TelegramEmulator, bot: Bot) -> None:
    chat = emu.private_chat()
    # 4096 characters after parsing pass, however long the markup; one more does not.
    await bot.send_message(chat.id, "<b>" + "я" * 4096 + "</b>")
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(chat.id, "x" * 4097)
    with pytest.raises(TelegramBadRequest, match="text must be non-empty"):
        await bot.send_message(chat.id, "<b> </b>")
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(-100999, "nobody here")


# ---- files


async def test_send_video_uploads_the_bytes_and_reports_them(
    emu: TelegramEmulator, bot: Bot, tmp_path: Path
) -> None:
    chat = emu.private_chat()
    data = bytes(range(256)) * 2000
    path = tmp_path / "clip.mp4"
    path.write_bytes(data)
    sent = await bot.send_video(
        chat.id,
        FSInputFile(path),
        width=720,
        height=1280,
        duration=15,
        supports_streaming=True,
        thumbnail=BufferedInputFile(jpeg_header(180, 320), "thumb.jpg"),
        caption="<b>@author</b> — 1.2K views",
    )
    video = sent.video
    assert video is not None
    assert (video.width, video.height, video.duration, video.file_size) == (720, 1280, 15, len(data))
    assert video.mime_type == "video/mp4" and video.file_name == "clip.mp4"
    assert video.thumbnail is not None and (video.thumbnail.width, video.thumbnail.height) == (180, 320)
    assert sent.caption == "@author — 1.2K views" and sent.caption_entities
    call = emu.sent_to(chat.id)[-1]
    upload = call.files[0]
    assert (upload.field, upload.uploaded, upload.source) == ("video", True, "upload")
    assert upload.sha256 == sha256(data) and upload.path.read_bytes() == data
    assert call.files[1].field == "thumbnail"
    # getFile and the file URL give the same bytes back.
    buffer = io.BytesIO()
    await bot.download(video.file_id, destination=buffer)
    assert buffer.getvalue() == data


async def test_resending_by_file_id_uploads_nothing(emu: TelegramEmulator, bot: Bot) -> None:
    chat = emu.private_chat()
    first = await bot.send_video(
        chat.id, BufferedInputFile(b"\x00" * 5000, "a.mp4"), width=1, height=2, duration=3
    )
    assert first.video is not None
    mark = emu.mark()
    again = await bot.send_video(emu.supergroup().id, first.video.file_id, caption="again")
    assert again.video is not None
    assert (again.video.file_id, again.video.duration) == (first.video.file_id, 3)
    call = emu.transcript("sendVideo", after=mark)[0]
    assert call.uploads == [] and call.files[0].source == "file_id"
    # The same bytes uploaded again get a new file_id but keep their file_unique_id.
    twin = await bot.send_video(chat.id, BufferedInputFile(b"\x00" * 5000, "b.mp4"))
    assert twin.video is not None and twin.video.file_id != first.video.file_id
    assert twin.video.file_unique_id == first.video.file_unique_id
    # A video's file_id also goes out as a document (same family), but not as a photo.
    await bot.send_document(chat.id, first.video.file_id)
    with pytest.raises(TelegramBadRequest, match="can't use file of type Video as Photo"):
        await bot.send_photo(chat.id, first.video.file_id)


async def test_stale_or_unknown_file_id_is_refused(emu: TelegramEmulator, bot: Bot) -> None:
    chat = emu.private_chat()
    sent = await bot.send_audio(chat.id, BufferedInputFile(b"ID3" + b"\x00" * 100, "sound.mp3"), title="Song")
    assert sent.audio is not None and sent.audio.title == "Song" and sent.audio.mime_type == "audio/mpeg"
    emu.invalidate_file(sent.audio.file_id)
    for file_id in (sent.audio.file_id, "AgACAgIAAxkBAAIBbmZnotAFileId"):
        with pytest.raises(TelegramBadRequest) as caught:
            await bot.send_audio(chat.id, file_id)
        assert caught.value.message == "Bad Request: wrong file identifier/HTTP URL specified"
    with pytest.raises(TelegramBadRequest, match="wrong file identifier"):
        await bot.send_video(chat.id, "ftp://example.com/video.mp4")
    with pytest.raises(TelegramBadRequest, match="failed to get HTTP URL content"):
        await bot.send_video(chat.id, "https://v16.tiktokcdn.com/video.mp4")  # never fetched: not loopback


async def test_photo_sizes_and_photo_limits(emu: TelegramEmulator, bot: Bot) -> None:
    chat = emu.private_chat()
    sent = await bot.send_photo(chat.id, BufferedInputFile(png(800, 600), "slide.png"))
    assert [(p.width, p.height) for p in sent.photo or []] == [(90, 68), (320, 240), (800, 600)]
    assert len({p.file_id for p in sent.photo or []}) == 3
    with pytest.raises(TelegramBadRequest, match="photo has unsupported extension"):
        await bot.send_photo(chat.id, BufferedInputFile(png(10, 10), "slide.webp"))
    with pytest.raises(TelegramBadRequest, match="IMAGE_PROCESS_FAILED"):
        await bot.send_photo(chat.id, BufferedInputFile(b"not an image", "x.jpg"))
    with pytest.raises(TelegramBadRequest, match="PHOTO_INVALID_DIMENSIONS"):
        await bot.send_photo(chat.id, BufferedInputFile(jpeg_header(9000, 2000), "wide.jpg"))
    big = jpeg_header(1000, 1000) + b"\x00" * (10 * 1024 * 1024)
    with pytest.raises(TelegramBadRequest, match="too big for a photo"):
        await bot.send_photo(chat.id, BufferedInputFile(big, "big.jpg"))


async def test_caption_limit_counts_text_after_parsing(emu: TelegramEmulator, bot: Bot) -> None:
    chat = emu.private_chat()
    photo = BufferedInputFile(png(10, 10), "p.png")
    ok = await bot.send_photo(chat.id, photo, caption="<i>" + "c" * 1024 + "</i>")
    assert ok.caption is not None and len(ok.caption) == 1024
    with pytest.raises(TelegramBadRequest) as caught:
        await bot.send_photo(chat.id, photo, caption="c" * 1025)
    assert caught.value.message == "Bad Request: message caption is too long"


async def test_upload_over_50_mb_answers_413(emu: TelegramEmulator, bot: Bot, tmp_path: Path) -> None:
    chat = emu.private_chat()
    big = tmp_path / "big.mp4"
    with big.open("wb") as fh:
        fh.truncate(50 * 1024 * 1024 + 1)  # sparse: nothing is written to disk
    started = time.monotonic()
    with pytest.raises(TelegramEntityTooLarge):
        await bot.send_video(chat.id, FSInputFile(big, chunk_size=1024 * 1024))
    assert time.monotonic() - started < 10
    assert emu.transcript("sendVideo")[0].status == 413
    assert list(emu.files.directory.iterdir()) == []  # the partial spool is gone
    await bot.send_message(chat.id, "still talking")  # and the server is fine afterwards


async def test_local_api_mode(tmp_path: Path) -> None:
    emu = TelegramEmulator(local_api=True)
    await emu.start()
    bot = make_bot(emu, local=True)
    try:
        assert emu.env()["TELEGRAM__LOCAL_API"] == "true"
        assert emu.upload_limit == 2000 * 1024 * 1024
        source = tmp_path / "local.mp4"
        source.write_bytes(b"local bytes")
        # A local server takes file:// paths, and getFile answers with an absolute path.
        sent = await bot.send_video(emu.private_chat().id, source.as_uri())
        assert sent.video is not None
        file = await bot.get_file(sent.video.file_id)
        assert file.file_path is not None and file.file_path.startswith("/")
        buffer = io.BytesIO()
        await bot.download(sent.video.file_id, destination=buffer)  # a local server's files are read in place
        assert buffer.getvalue() == b"local bytes"
    finally:
        await bot.session.close()
        await emu.stop()


# ---- albums


async def test_media_group_of_two_is_one_album(emu: TelegramEmulator, bot: Bot) -> None:
    chat = emu.private_chat()
    messages = await bot.send_media_group(
        chat.id,
        [
            InputMediaPhoto(media=BufferedInputFile(png(40, 30), "1.png"), caption="<b>first</b>"),
            InputMediaVideo(media=BufferedInputFile(b"\x01" * 300, "2.mp4"), width=4, height=3, duration=1),
        ],
    )
    assert len(messages) == 2 and messages[0].media_group_id == messages[1].media_group_id is not None
    assert messages[0].caption == "first" and messages[1].video is not None
    assert messages[1].message_id == messages[0].message_id + 1
    call = emu.sent_to(chat.id)[-1]
    assert [f.field for f in call.files] == ["media[0]", "media[1]"]
    assert [f.uploaded for f in call.files] == [True, True]


async def test_media_group_sizes_outside_2_to_10_are_refused(emu: TelegramEmulator, bot: Bot) -> None:
    chat = emu.private_chat()
    photo = (await bot.send_photo(chat.id, BufferedInputFile(png(20, 20), "p.png"))).photo
    assert photo is not None
    eleven = [InputMediaPhoto(media=photo[-1].file_id) for _ in range(11)]
    with pytest.raises(TelegramBadRequest, match="too many messages to send as an album"):
        await bot.send_media_group(chat.id, eleven)
    with pytest.raises(TelegramBadRequest, match="2-10"):
        await bot.send_media_group(chat.id, eleven[:1])
    ten = await bot.send_media_group(chat.id, eleven[:10])
    assert len(ten) == 10
    assert all(not f.uploaded for f in emu.sent_to(chat.id)[-1].files)


# ---- flood control


async def test_flooded_chat_answers_429_with_retry_after(emu: TelegramEmulator, bot: Bot) -> None:
    chat = emu.private_chat()
    other = emu.private_chat(emu.add_user("Other"))
    emu.fault_next("429", count=2, chat_id=chat.id, retry_after=7)
    await bot.send_message(other.id, "other chats are fine")
    for _ in range(2):
        with pytest.raises(TelegramRetryAfter) as caught:
            await bot.send_message(chat.id, "hello")
        assert caught.value.retry_after == 7
    await bot.send_message(chat.id, "after the flood")
    failed = emu.transcript(chat_id=chat.id, ok=False)
    assert [c.status for c in failed] == [429, 429]


async def test_automatic_rate_limit(emu: TelegramEmulator, bot: Bot) -> None:
    chat = emu.private_chat()
    emu.rate_limit(per_chat_per_second=1.0, chat_burst=2)
    await bot.send_message(chat.id, "one")
    await bot.send_message(chat.id, "two")
    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(chat.id, "three")
    assert caught.value.retry_after == 1
    emu.rate_limit(False)
    await bot.send_message(chat.id, "three, later")


# ---- updates


async def test_long_poll_returns_when_an_update_arrives_and_offset_confirms(
    emu: TelegramEmulator, bot: Bot
) -> None:
    chat = emu.private_chat()
    poll = asyncio.create_task(bot.get_updates(timeout=30))
    await emu.wait_until(lambda: emu.updates.waiting, what="a waiting long poll")
    started = time.monotonic()
    first = emu.inject_message(chat, "/start")
    updates = await poll
    assert time.monotonic() - started < 2
    assert [u.update_id for u in updates] == [first.update_id]
    assert updates[0].message is not None and updates[0].message.text == "/start"
    entities = updates[0].message.entities or []
    assert [(e.type, e.offset, e.length) for e in entities] == [("bot_command", 0, 6)]
    second = emu.inject_message(chat, "see https://www.tiktok.com/@a/video/1")
    again = await bot.get_updates(offset=first.update_id + 1, timeout=0)
    assert [u.update_id for u in again] == [second.update_id]
    assert emu.updates.is_confirmed(first.update_id) and not emu.updates.is_confirmed(second.update_id)
    assert await bot.get_updates(offset=second.update_id + 1, timeout=0) == []
    await emu.wait_confirmed([first, second], timeout=1)


async def test_a_second_poller_terminates_the_first_with_409(emu: TelegramEmulator, bot: Bot) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=30))
    await emu.wait_until(lambda: emu.updates.waiting)
    second = asyncio.create_task(bot.get_updates(timeout=30))
    with pytest.raises(TelegramConflictError, match="terminated by other getUpdates request"):
        await first
    emu.inject_message(emu.private_chat(), "for the survivor")
    assert len(await second) == 1


async def test_allowed_updates_filter_what_is_queued(emu: TelegramEmulator, bot: Bot) -> None:
    await bot.get_updates(allowed_updates=["message"], timeout=0)
    kept = emu.inject_message(emu.private_chat(), "kept")
    dropped = emu.inline_query("cats")
    assert kept.dropped is None and dropped.update_id not in [u["update_id"] for u in emu.updates.pending]
    assert [u.update_id for u in await bot.get_updates(timeout=0)] == [kept.update_id]


async def test_privacy_mode_hides_group_chatter(emu: TelegramEmulator) -> None:
    emu.privacy_mode = True
    group = emu.supergroup()
    assert emu.inject_message(group, "just chatting https://vm.tiktok.com/ZM1/").dropped
    assert emu.inject_message(group, "/post https://vm.tiktok.com/ZM1/").dropped is None
    assert emu.inject_message(group, "hey @tiktok_sandbox_bot").dropped is None
    emu.set_bot_status(group, "administrator")  # admins see everything
    assert emu.inject_message(group, "just chatting").dropped is None


# ---- a dispatcher polling the emulator


def demo_router() -> Router:
    router = Router()

    @router.message(Command("start"))
    async def start(message: Message) -> None:
        more = InlineKeyboardButton(text="More", callback_data="more:2")
        await message.answer("<b>hello</b>", reply_markup=InlineKeyboardMarkup(inline_keyboard=[[more]]))

    @router.message(F.text)
    async def echo(message: Message) -> None:
        await message.reply(f"echo: {html.quote(message.text or '')}")

    @router.channel_post(F.text)
    async def channel(message: Message) -> None:
        await message.answer("seen in the channel")

    @router.callback_query(F.data.startswith("more:"))
    async def more(query: CallbackQuery) -> None:
        await query.answer("page 2")
        if isinstance(query.message, Message):
            await query.message.edit_text("page <i>2</i>")

    @router.inline_query()
    async def inline(query: InlineQuery) -> None:
        result = InlineQueryResultArticle(
            id="stats", title=query.query, input_message_content=InputTextMessageContent(message_text="stats")
        )
        await query.answer([result], cache_time=5, is_personal=True)

    return router


async def test_polling_bot_answers_every_chat_type(emu: TelegramEmulator, bot: Bot) -> None:
    dp = Dispatcher()
    dp.include_router(demo_router())
    russian = emu.add_user("Борис", username="boris", language_code="ru")
    private = emu.private_chat(russian)
    forum = emu.supergroup("Forum", forum=True)
    topic = emu.add_topic(forum, "Links")
    channel = emu.channel("News", username="news")
    async with polling(emu, dp, bot):
        emu.inject_message(private, "/start")
        hello = await emu.wait_for(method="sendMessage", chat_id=private.id)
        assert hello.message is not None and hello.message["text"] == "hello"

        emu.inject_message(forum, "a <link>", thread=topic, user=russian)
        echo = await emu.wait_for(method="sendMessage", chat_id=forum.id)
        assert echo.thread_id == topic.thread_id
        assert echo.message is not None and echo.message["text"] == "echo: a <link>"
        assert echo.message["is_topic_message"] is True

        post = emu.inject_message(channel, "breaking")
        seen = await emu.wait_for(method="sendMessage", chat_id=channel.id)
        assert post.kind == "channel_post" and "sender_chat" in post.payload
        assert seen.message is not None and seen.message["sender_chat"]["id"] == channel.id

        press = emu.press_button(hello, "more:2", user=russian)
        assert await emu.wait_answered(press) == {
            "text": "page 2",
            "show_alert": False,
            "url": None,
            "cache_time": 0,
        }
        edit = await emu.wait_for(method="editMessageText", chat_id=private.id)
        assert edit.message is not None and edit.message["text"] == "page 2" and "edit_date" in edit.message
        assert "reply_markup" not in emu.messages_in(private.id)[0]  # editing without markup drops it

        query = emu.inline_query("cats", user=russian)
        answer = await emu.wait_answered(query)
        assert [r["id"] for r in answer["results"]] == ["stats"] and answer["is_personal"] is True
    assert [c.method for c in emu.transcript(ok=False)] == []


async def test_callback_queries_are_answered_once(emu: TelegramEmulator, bot: Bot) -> None:
    chat = emu.private_chat()
    button = InlineKeyboardButton(text="Go", callback_data="go")
    sent = await bot.send_message(
        chat.id, "pick", reply_markup=InlineKeyboardMarkup(inline_keyboard=[[button]])
    )
    press = emu.press_button(sent.model_dump(by_alias=True, exclude_none=True), text="Go")
    assert press.data == "go"
    assert await bot.answer_callback_query(press.id, text="ok")
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query(press.id)
    with pytest.raises(ValueError, match="no button"):
        emu.press_button(emu.sent_to(chat.id)[0], "missing")


async def test_editing_rules(emu: TelegramEmulator, bot: Bot) -> None:
    chat = emu.private_chat()
    sent = await bot.send_message(chat.id, "same")
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text(text="same", chat_id=chat.id, message_id=sent.message_id)
    keyboard = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="Next", callback_data="n")]])
    edited = await bot.edit_message_reply_markup(
        chat_id=chat.id, message_id=sent.message_id, reply_markup=keyboard
    )
    assert isinstance(edited, Message) and edited.reply_markup is not None
    assert edited.reply_markup.inline_keyboard[0][0].callback_data == "n"
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_reply_markup(
            chat_id=chat.id, message_id=sent.message_id, reply_markup=keyboard
        )
    too_long = InlineKeyboardButton(text="X", callback_data="x" * 65)
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(chat.id, "k", reply_markup=InlineKeyboardMarkup(inline_keyboard=[[too_long]]))
    user_message = emu.inject_message(chat, "mine").payload
    with pytest.raises(TelegramBadRequest, match="message can't be edited"):
        await bot.edit_message_text(text="yours", chat_id=chat.id, message_id=user_message["message_id"])
    assert await bot.delete_message(chat.id, sent.message_id)
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(chat.id, sent.message_id)
    group = emu.group()
    theirs = emu.inject_message(group, "not yours").payload["message_id"]
    with pytest.raises(TelegramBadRequest, match="message can't be deleted"):
        await bot.delete_message(group.id, theirs)


async def test_replies_and_forum_threads(emu: TelegramEmulator, bot: Bot) -> None:
    forum = emu.supergroup(forum=True)
    topic = emu.add_topic(forum, "Clips")
    asked = emu.inject_message(forum, "link please", thread=topic).payload
    # Replying to a topic message lands in that topic even without message_thread_id.
    reply = await bot.send_message(
        forum.id, "here", reply_parameters=ReplyParameters(message_id=asked["message_id"])
    )
    assert reply.message_thread_id == topic.thread_id and reply.reply_to_message is not None
    assert reply.reply_to_message.message_id == asked["message_id"]
    with pytest.raises(TelegramBadRequest, match="message thread not found"):
        await bot.send_message(forum.id, "x", message_thread_id=999)
    with pytest.raises(TelegramBadRequest, match="message to be replied not found"):
        await bot.send_message(forum.id, "x", reply_parameters=ReplyParameters(message_id=424242))


async def test_chat_actions_commands_and_members(emu: TelegramEmulator, bot: Bot) -> None:
    chat = emu.private_chat()
    assert await bot.send_chat_action(chat.id, "upload_video")
    with pytest.raises(TelegramBadRequest, match="wrong parameter action"):
        await bot.send_chat_action(chat.id, "dancing")
    assert emu.chat_actions(chat.id) == ["upload_video"]
    commands = [
        BotCommand(command="post", description="Send a post"),
        BotCommand(command="help", description="?"),
    ]
    await bot.set_my_commands(commands)
    await bot.set_my_commands([BotCommand(command="post", description="Пост")], language_code="ru")
    assert [c.command for c in await bot.get_my_commands()] == ["post", "help"]
    assert emu.commands(language_code="ru") == [{"command": "post", "description": "Пост"}]
    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand(command="Bad-Name", description="x")])
    group = emu.supergroup(owner=emu.default_user)
    admin = emu.add_user("Admin")
    emu.set_admin(group, admin)
    assert (await bot.get_chat_member(group.id, emu.default_user.id)).status == "creator"
    assert (await bot.get_chat_member(group.id, admin.id)).status == "administrator"
    assert (await bot.get_chat_member(group.id, emu.add_user("Nobody").id)).status == "member"
    assert len(await bot.get_chat_administrators(group.id)) == 2
    assert (await bot.get_chat(group.id)).title == "Sandbox supergroup"


async def test_inline_answers_with_cached_results(emu: TelegramEmulator, bot: Bot) -> None:
    storage = emu.channel("Storage")
    stored = await bot.send_video(storage.id, BufferedInputFile(b"\x02" * 100, "v.mp4"))
    assert stored.video is not None
    query = emu.inline_query("https://vm.tiktok.com/ZM1/")
    result = InlineQueryResultCachedVideo(id="v1", video_file_id=stored.video.file_id, title="Video")
    assert await bot.answer_inline_query(query.id, [result], cache_time=60)
    assert query.results[0]["video_file_id"] == stored.video.file_id
    late = emu.inline_query("again")
    stale = InlineQueryResultCachedVideo(id="v2", video_file_id="no-such-file", title="Video")
    with pytest.raises(TelegramBadRequest, match="wrong file identifier"):
        await bot.answer_inline_query(late.id, [stale])
    with pytest.raises(TelegramBadRequest, match="RESULT_ID_DUPLICATE"):
        await bot.answer_inline_query(late.id, [result, result])


# ---- webhooks


@contextlib.asynccontextmanager
async def webhook_server(dp: Dispatcher, bot: Bot, secret: str, **options: bool) -> AsyncIterator[str]:
    app = web.Application()
    SimpleRequestHandler(dp, bot, secret_token=secret, **options).register(app, path="/hook")
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        await runner.cleanup()


async def test_webhook_delivery_with_the_secret_header(emu: TelegramEmulator, bot: Bot) -> None:
    dp = Dispatcher()
    dp.include_router(demo_router())
    chat = emu.private_chat()
    async with webhook_server(dp, bot, "s3cret-Token_1") as url:
        assert await bot.set_webhook(url, secret_token="s3cret-Token_1")
        assert emu.transcript("setWebhook")[0].description == "Webhook was set"
        with pytest.raises(TelegramConflictError, match="webhook is active"):
            await bot.get_updates()
        injected = emu.inject_message(chat, "via webhook")
        reply = await emu.wait_for(method="sendMessage", chat_id=chat.id)
        assert reply.message is not None and reply.message["text"] == "echo: via webhook"
        await emu.wait_confirmed(injected)
        assert [(d.update_id, d.status, d.secret) for d in emu.deliveries] == [
            (injected.update_id, 200, "s3cret-Token_1")
        ]
        assert await emu.post_to_webhook(secret="wrong") == 401
        assert await emu.post_to_webhook() == 401
        info = await bot.get_webhook_info()
        assert (info.url, info.pending_update_count) == (url, 0)
        assert await bot.delete_webhook(drop_pending_updates=True)
    assert await bot.get_updates(timeout=0) == []


async def test_webhook_reply_in_the_response_body_is_executed(emu: TelegramEmulator, bot: Bot) -> None:
    router = Router()

    @router.message()
    async def answer_in_response(message: Message) -> SendMessage:
        return message.answer("answered in the webhook response")

    dp = Dispatcher()
    dp.include_router(router)
    chat = emu.private_chat()
    async with webhook_server(dp, bot, "abc", handle_in_background=False) as url:
        await bot.set_webhook(url, secret_token="abc")
        emu.inject_message(chat, "hi")
        call = await emu.wait_for(method="sendMessage", chat_id=chat.id)
        assert call.via == "webhook-reply" and call.message is not None
        await bot.delete_webhook()


async def test_failing_webhook_is_retried_and_reported(emu: TelegramEmulator, bot: Bot) -> None:
    emu.webhook_retry_delay = 0.01
    dp = Dispatcher()
    dp.include_router(demo_router())
    async with webhook_server(dp, bot, "right") as url:
        await bot.set_webhook(url, secret_token="wrong")  # the bot's server will refuse every delivery
        emu.inject_message(emu.private_chat(), "lost")
        await emu.wait_until(lambda: len(emu.deliveries) >= 2, what="two delivery attempts")
        info = await bot.get_webhook_info()
        assert info.pending_update_count == 1
        assert info.last_error_message == "Wrong response from the webhook: 401 Unauthorized"
        await bot.delete_webhook(drop_pending_updates=True)
    assert await bot.get_updates(timeout=0) == []  # the undelivered update was dropped


# ---- the HTTP control API


async def test_control_api_over_http(emu: TelegramEmulator, bot: Bot) -> None:
    control = f"{emu.base_url}/_control"
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{control}/users", json={"first_name": "Ivan", "language_code": "ru"}) as resp:
            user = await resp.json()
        async with http.post(f"{control}/chats", json={"type": "private", "user_id": user["id"]}) as resp:
            chat = await resp.json()
        async with http.post(f"{control}/messages", json={"chat_id": chat["id"], "text": "/help"}) as resp:
            injected = await resp.json()
        updates = await bot.get_updates(timeout=0)
        assert updates[0].update_id == injected["update_id"]
        assert updates[0].message is not None and updates[0].message.from_user is not None
        assert updates[0].message.from_user.language_code == "ru"
        await bot.send_message(chat["id"], "help text")
        async with http.get(f"{control}/transcript", params={"chat_id": chat["id"]}) as resp:
            calls = await resp.json()
        assert [(c["method"], c["result"]["text"]) for c in calls] == [("sendMessage", "help text")]
        async with http.post(f"{control}/faults", json={"kind": "429", "chat_id": chat["id"]}) as resp:
            assert resp.status == 200
        with pytest.raises(TelegramRetryAfter):
            await bot.send_message(chat["id"], "flooded")
        async with http.post(f"{control}/messages", json={"chat_id": 1, "text": "x"}) as resp:
            assert resp.status == 400


async def test_unknown_method_through_aiogram_raises_not_found(emu: TelegramEmulator, bot: Bot) -> None:
    emu.fault_next("404", method="sendMessage", message="Not Found")
    with pytest.raises(TelegramNotFound):
        await bot.send_message(emu.private_chat().id, "x")
