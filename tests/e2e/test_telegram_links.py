"""Telegram end to end: real aiogram polling the Bot API emulator, real services on sandbox upstreams."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from bot.wiring import App
from sandbox.catalogue import CATALOGUE, MEDIA_DIR, Status
from sandbox.runner import Sandbox
from sandbox.telegram import TelegramEmulator
from sandbox.tiktok import TikTokEmulator
from sandbox.ttsave import TTSaveEmulator
from tests.e2e.conftest import wait_rows

CLIP = next(
    p
    for p in CATALOGUE.posts.values()
    if p.renditions and p.renditions[-1].file and p.hashtags == ("pasta", "cooking")
)
SLIDES = next(p for p in CATALOGUE.posts.values() if len(p.images) == 3)
ALBUM12 = next(p for p in CATALOGUE.posts.values() if len(p.images) == 12)
BIG = next(p for p in CATALOGUE.posts.values() if any(r.size > 60_000_000 for r in p.renditions))


def by_status(status: Status) -> str:
    return next(p.url for p in CATALOGUE.posts.values() if p.status is status)


def sha(name: str) -> str:
    return hashlib.sha256((MEDIA_DIR / name).read_bytes()).hexdigest()


async def test_video_link_in_a_private_chat(tg: TelegramEmulator, sandbox: Sandbox, app: App) -> None:
    user = tg.add_user("Ann", language_code="en")
    chat = tg.private_chat(user)
    mark = tg.mark()
    injected = tg.inject_message(chat, f"look at this: {CLIP.url}!", user=user)
    call = await tg.wait_for(method="sendVideo", chat_id=chat.id, after=mark, timeout=10)
    assert call.ok
    [video] = [f for f in call.files if f.field == "video"]
    assert video.uploaded
    assert video.sha256 == sha("clip.mp4")
    params = call.params
    # Multipart form fields arrive as text.
    assert str(params["supports_streaming"]).lower() == "true"
    assert (int(params["width"]), int(params["height"]), int(params["duration"])) == (320, 568, 3)
    assert params["reply_parameters"]["message_id"] == injected.payload["message_id"]
    caption = params["caption"]
    assert "@sandbox.cook" in caption
    assert "1.5M" in caption  # views, compact
    assert CLIP.url in caption
    assert "&lt;b&gt;&amp;amp;&lt;/b&gt;" in caption  # the description's markup arrives escaped
    assert "upload_video" in tg.chat_actions(chat.id)
    link_rows = await wait_rows(app, "link")
    assert link_rows[-1]["outcome"] == "ok"
    assert link_rows[-1]["target"] == CLIP.id
    assert link_rows[-1]["backend"] == "ttsave"
    assert link_rows[-1]["bytes_sent"] == video.size
    assert link_rows[-1]["chat_type"] == "private"


async def test_second_paste_goes_out_by_file_id_without_download(
    tg: TelegramEmulator, sandbox: Sandbox, app: App
) -> None:
    user = tg.add_user("Ben")
    chat = tg.private_chat(user)
    mark = tg.mark()
    tg.inject_message(chat, CLIP.url, user=user)
    first = await tg.wait_for(method="sendVideo", chat_id=chat.id, after=mark, timeout=10)
    ttsave, tiktok = sandbox.get(TTSaveEmulator), sandbox.get(TikTokEmulator)
    before = (ttsave.downloads(CLIP.id), tiktok.downloads(CLIP.id), len(tiktok.requests))
    other = tg.add_user("Cat")
    other_chat = tg.private_chat(other)
    mark = tg.mark()
    tg.inject_message(other_chat, f"https://vm.tiktok.com/ZMclip01/ {CLIP.url}", user=other)
    second = await tg.wait_for(method="sendVideo", chat_id=other_chat.id, after=mark, timeout=10)
    [video] = second.files
    assert not video.uploaded
    assert video.file_id == first.files[0].file_id
    await asyncio.sleep(0.05)
    # The short link resolves to the same post: one reply, and nothing fetched but the redirect.
    assert len(tg.transcript("sendVideo", chat_id=other_chat.id, after=mark)) == 1
    assert ttsave.downloads(CLIP.id) == before[0]
    assert tiktok.downloads(CLIP.id) == before[1]
    assert all(r.host in ("vm.tiktok.com",) for r in tiktok.requests[before[2] :])
    rows = await wait_rows(app, "link", 3)
    assert (rows[1]["cache_hit"], rows[1]["backend"], rows[1]["outcome"]) == (1, "cache", "ok")
    assert rows[2]["outcome"] == "duplicate"


async def test_slideshow_in_a_group_is_an_album_then_its_sound(tg: TelegramEmulator) -> None:
    owner = tg.add_user("Dan")
    group = tg.group("Friends", owner=owner)
    mark = tg.mark()
    tg.inject_message(group, f"see {SLIDES.url}", user=owner)
    album = await tg.wait_for(method="sendMediaGroup", chat_id=group.id, after=mark, timeout=10)
    assert [f.sha256 for f in album.files] == [sha("photo1.jpg"), sha("photo2.jpg"), sha("photo3.jpg")]
    assert "@travel_bug-1" in album.params["media"][0]["caption"]
    audio = await tg.wait_for(method="sendAudio", chat_id=group.id, after=album.seq, timeout=10)
    assert audio.files[0].sha256 == sha("sound.mp3")
    assert audio.params["title"] == "Hill song"


async def test_twelve_photos_make_two_albums(tg: TelegramEmulator) -> None:
    user = tg.add_user("Eve")
    chat = tg.private_chat(user)
    mark = tg.mark()
    tg.inject_message(chat, ALBUM12.url, user=user)
    await tg.wait_for(method="sendAudio", chat_id=chat.id, after=mark, timeout=10)
    albums = tg.transcript("sendMediaGroup", chat_id=chat.id, after=mark, ok=True)
    assert [len(a.files) for a in albums] == [10, 2]


async def test_forum_topic_gets_the_answer_in_the_same_topic(tg: TelegramEmulator) -> None:
    owner = tg.add_user("Fay")
    forum = tg.supergroup("Forum", forum=True, owner=owner)
    topic = tg.add_topic(forum, "Clips")
    mark = tg.mark()
    tg.inject_message(forum, CLIP.url, user=owner, thread=topic)
    call = await tg.wait_for(method="sendVideo", chat_id=forum.id, after=mark, timeout=10)
    assert call.thread_id == topic.thread_id


async def test_channel_post_is_answered(tg: TelegramEmulator) -> None:
    channel = tg.channel("News")
    mark = tg.mark()
    tg.inject_message(channel, f"today: {CLIP.url}")
    call = await tg.wait_for(method="sendVideo", chat_id=channel.id, after=mark, timeout=10)
    assert call.ok


async def test_group_without_links_stays_silent(tg: TelegramEmulator) -> None:
    owner = tg.add_user("Gus")
    group = tg.group("Quiet", owner=owner)
    mark = tg.mark()
    injected = tg.inject_message(group, "hello everyone, no links here https://example.com/x", user=owner)
    await tg.wait_confirmed(injected)
    await asyncio.sleep(0.2)
    assert tg.sent_to(group.id, after=mark) == []


@pytest.mark.parametrize(
    ("status", "english"),
    [
        (Status.PRIVATE, "private"),
        (Status.DELETED, "deleted"),
        (Status.REGION, "region"),
        (Status.AGE, "age-restricted"),
        (Status.PRIVATE_ACCOUNT, "account is private"),
    ],
)
async def test_unavailable_posts_get_a_specific_answer(
    tg: TelegramEmulator, app: App, status: Status, english: str
) -> None:
    user = tg.add_user("Hal")
    chat = tg.private_chat(user)
    mark = tg.mark()
    tg.inject_message(chat, by_status(status), user=user)
    call = await tg.wait_for(method="sendMessage", chat_id=chat.id, after=mark, timeout=10)
    assert english in call.params["text"]
    rows = await wait_rows(app, "link")
    assert rows[-1]["outcome"] == f"unavailable:{status.value}"


async def test_failures_in_groups_are_one_short_line(tg: TelegramEmulator) -> None:
    owner = tg.add_user("Ivy")
    group = tg.group("Team", owner=owner)
    mark = tg.mark()
    tg.inject_message(group, by_status(Status.DELETED), user=owner)
    call = await tg.wait_for(method="sendMessage", chat_id=group.id, after=mark, timeout=10)
    assert call.params["text"].startswith("⚠️")
    assert "\n" not in call.params["text"]


async def test_russian_user_gets_russian_replies(tg: TelegramEmulator) -> None:
    user = tg.add_user("Иван", language_code="ru")
    chat = tg.private_chat(user)
    mark = tg.mark()
    tg.inject_message(chat, by_status(Status.PRIVATE), user=user)
    call = await tg.wait_for(method="sendMessage", chat_id=chat.id, after=mark, timeout=10)
    assert "закрытая публикация" in call.params["text"]


async def test_dead_short_link_and_private_text_without_link(tg: TelegramEmulator, app: App) -> None:
    user = tg.add_user("Jo")
    chat = tg.private_chat(user)
    mark = tg.mark()
    tg.inject_message(chat, "https://vm.tiktok.com/ZMdead000/", user=user)
    call = await tg.wait_for(method="sendMessage", chat_id=chat.id, after=mark, timeout=10)
    assert "leads nowhere" in call.params["text"]
    mark = tg.mark()
    tg.inject_message(chat, "hello?", user=user)
    call = await tg.wait_for(method="sendMessage", chat_id=chat.id, after=mark, timeout=10)
    assert "couldn't find a TikTok link" in call.params["text"]
    rows = await wait_rows(app, "link")
    assert rows[-1]["outcome"] == "link_not_found"


async def test_stale_file_id_falls_back_to_a_fresh_upload(tg: TelegramEmulator, sandbox: Sandbox) -> None:
    user = tg.add_user("Kim")
    chat = tg.private_chat(user)
    mark = tg.mark()
    tg.inject_message(chat, CLIP.url, user=user)
    first = await tg.wait_for(method="sendVideo", chat_id=chat.id, after=mark, timeout=10)
    tg.invalidate_file(first.files[0].file_id)
    downloads = sandbox.get(TTSaveEmulator).downloads(CLIP.id)
    mark = tg.mark()
    tg.inject_message(chat, CLIP.url, user=user)
    refused = await tg.wait_for(method="sendVideo", chat_id=chat.id, after=mark, timeout=10)
    assert not refused.ok
    fresh = await tg.wait_for(method="sendVideo", chat_id=chat.id, after=refused.seq, ok=True, timeout=10)
    assert fresh.files[0].uploaded
    assert sandbox.get(TTSaveEmulator).downloads(CLIP.id) == downloads + 1
    # The new file_id replaced the stale one: a third paste uploads nothing.
    mark = tg.mark()
    tg.inject_message(chat, CLIP.url, user=user)
    third = await tg.wait_for(method="sendVideo", chat_id=chat.id, after=mark, ok=True, timeout=10)
    assert third.files[0].file_id == fresh.files[0].file_id


async def test_flood_control_429_is_retried(tg: TelegramEmulator) -> None:
    user = tg.add_user("Lea")
    chat = tg.private_chat(user)
    tg.fault_next("429", chat_id=chat.id, retry_after=1, method="sendVideo")
    mark = tg.mark()
    tg.inject_message(chat, CLIP.url, user=user)
    refused = await tg.wait_for(method="sendVideo", chat_id=chat.id, after=mark, timeout=10)
    assert refused.status == 429
    retried = await tg.wait_for(method="sendVideo", chat_id=chat.id, after=refused.seq, ok=True, timeout=10)
    assert retried.ok


async def test_an_expired_file_reference_falls_back_to_a_fresh_upload(
    tg: TelegramEmulator, sandbox: Sandbox
) -> None:
    # Telegram's words for an outdated file_id: "Bad Request: FILE_REFERENCE_EXPIRED", underscores and all.
    user = tg.add_user("Ola")
    chat = tg.private_chat(user)
    mark = tg.mark()
    tg.inject_message(chat, CLIP.url, user=user)
    first = await tg.wait_for(method="sendVideo", chat_id=chat.id, after=mark, timeout=10)
    tg.invalidate_file(first.files[0].file_id, expired=True)
    mark = tg.mark()
    tg.inject_message(chat, CLIP.url, user=user)
    refused = await tg.wait_for(method="sendVideo", chat_id=chat.id, after=mark, timeout=10)
    assert not refused.ok and refused.error == "Bad Request: FILE_REFERENCE_EXPIRED"
    fresh = await tg.wait_for(method="sendVideo", chat_id=chat.id, after=refused.seq, ok=True, timeout=10)
    assert fresh.files[0].uploaded
