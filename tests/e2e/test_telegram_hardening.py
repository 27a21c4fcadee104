"""Telegram end to end under hostile conditions: flood control on every call, upload limits, full disk."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from bot.telegram import sender as telegram_sender
from bot.wiring import App
from sandbox.catalogue import CATALOGUE, FixturePost, Rendition, post_id_at
from sandbox.ensembledata import EnsembleDataEmulator
from sandbox.research import ResearchEmulator
from sandbox.runner import Sandbox
from sandbox.telegram import TelegramEmulator
from sandbox.telegram.methods import CLOUD_UPLOAD_LIMIT
from sandbox.ttsave import TTSaveEmulator
from tests.e2e.conftest import wait_rows
from tests.services.test_formatting import BIDI_CONTROLS, INVISIBLE

MIB = 1024 * 1024
CLIP = next(
    p
    for p in CATALOGUE.posts.values()
    if p.renditions and p.renditions[-1].file and p.hashtags == ("pasta", "cooking")
)


SLIDES = next(p for p in CATALOGUE.posts.values() if len(p.images) == 3)


@pytest.fixture
def backends() -> str:
    """The download chain (a test parametrizes it to try one backend)."""
    return "ttsave,web"


@pytest.fixture
def extra_env(backends: str) -> dict[str, str]:
    """A short reply budget, so a flood past it is given up within the test's time."""
    return {"LIMITS__REPLY_BUDGET": "8", "DOWNLOAD__BACKENDS": backends}


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Log records that carry a traceback."""
    return [r for r in caplog.records if r.exc_info is not None]


def added_post(monkeypatch: pytest.MonkeyPatch, serial: int, size: int) -> FixturePost:
    """A video post of `size` synthesised bytes, served by every emulator until the test ends."""
    post = dataclasses.replace(
        CLIP,
        id=post_id_at(1_700_900_000, serial),
        renditions=(Rendition("normal_720_0", "h264", 720, 1280, 900_000, size),),
        hashtags=(),
    )
    monkeypatch.setitem(CATALOGUE.posts, post.id, post)
    return post


async def test_a_48_mib_video_fits_telegrams_50_mb(
    tg: TelegramEmulator, app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Telegram's 50 MB is 50 << 20 bytes: 48 MiB (50.3 decimal MB) goes through.
    assert CLOUD_UPLOAD_LIMIT == app.settings.telegram.upload_limit == 50 * MIB
    post = added_post(monkeypatch, 48, 48 * MIB)
    user = tg.add_user("Max")
    chat = tg.private_chat(user)
    mark = tg.mark()
    tg.inject_message(chat, post.url, user=user)
    call = await tg.wait_for(method="sendVideo", chat_id=chat.id, after=mark, timeout=60)
    assert call.ok
    [video] = call.files
    assert video.size == 48 * MIB
    rows = await wait_rows(app, "link")
    assert rows[-1]["outcome"] == "ok"


async def test_a_video_over_50_mib_names_the_limit_in_telegrams_units(
    tg: TelegramEmulator, app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    post = added_post(monkeypatch, 56, 56 * MIB)
    user = tg.add_user("Mia")
    chat = tg.private_chat(user)
    mark = tg.mark()
    tg.inject_message(chat, post.url, user=user)
    call = await tg.wait_for(method="sendMessage", chat_id=chat.id, after=mark, timeout=60)
    assert "56.0 MB; the limit is 50.0 MB" in call.params["text"]
    assert not tg.transcript("sendVideo", chat_id=chat.id)
    rows = await wait_rows(app, "link")
    assert rows[-1]["outcome"] == "too_large"


# --- flood control (429) on every kind of call ------------------------------------------------------------


@pytest.mark.parametrize(("retry_after", "times"), [(2, 3), (1, 30)])
async def test_a_flooded_chat_action_never_costs_the_video(
    tg: TelegramEmulator, app: App, caplog: pytest.LogCaptureFixture, retry_after: int, times: int
) -> None:
    user = tg.add_user("Ada")
    chat = tg.private_chat(user)
    tg.fault_next("429", count=times, chat_id=chat.id, retry_after=retry_after, method="sendChatAction")
    mark = tg.mark()
    tg.inject_message(chat, CLIP.url, user=user)
    call = await tg.wait_for(method="sendVideo", chat_id=chat.id, after=mark, ok=True, timeout=20)
    rows = await wait_rows(app, "link")
    assert rows[-1]["outcome"] == "ok"
    assert [c.method for c in tg.sent_to(chat.id, after=mark)] == ["sendVideo"]  # one reply, nothing else
    assert call.files[0].uploaded
    assert not tracebacks(caplog)


async def test_sendvideo_429s_are_waited_out_past_three_attempts(
    tg: TelegramEmulator, app: App, caplog: pytest.LogCaptureFixture
) -> None:
    user = tg.add_user("Bea")
    chat = tg.private_chat(user)
    tg.fault_next("429", count=3, chat_id=chat.id, retry_after=1, method="sendVideo")
    tg.fault_next("429", chat_id=chat.id, retry_after=2, method="sendVideo")
    mark = tg.mark()
    tg.inject_message(chat, CLIP.url, user=user)
    call = await tg.wait_for(method="sendVideo", chat_id=chat.id, after=mark, ok=True, timeout=30)
    assert len(tg.transcript("sendVideo", chat_id=chat.id, ok=False, after=mark)) == 4
    assert call.files[0].uploaded
    rows = await wait_rows(app, "link")
    assert rows[-1]["outcome"] == "ok"
    assert [c.method for c in tg.sent_to(chat.id, after=mark)] == ["sendVideo"]
    assert not tracebacks(caplog)


async def test_sendmediagroup_429s_are_waited_out(
    tg: TelegramEmulator, app: App, caplog: pytest.LogCaptureFixture
) -> None:
    user = tg.add_user("Cid")
    chat = tg.private_chat(user)
    tg.fault_next("429", count=4, chat_id=chat.id, retry_after=1, method="sendMediaGroup")
    tg.fault_next("429", count=2, chat_id=chat.id, retry_after=1, method="sendAudio")
    mark = tg.mark()
    tg.inject_message(chat, SLIDES.url, user=user)
    await tg.wait_for(method="sendAudio", chat_id=chat.id, after=mark, ok=True, timeout=30)
    assert len(tg.transcript("sendMediaGroup", chat_id=chat.id, ok=True, after=mark)) == 1
    rows = await wait_rows(app, "link")
    assert rows[-1]["outcome"] == "ok"
    assert not tg.transcript("sendMessage", chat_id=chat.id, after=mark)
    assert not tracebacks(caplog)


async def test_a_flood_past_the_budget_is_its_own_outcome_logged_once(
    tg: TelegramEmulator, app: App, caplog: pytest.LogCaptureFixture
) -> None:
    user = tg.add_user("Dee")
    chat = tg.private_chat(user)
    tg.fault_next(
        "429", count=100, chat_id=chat.id, retry_after=3, method="sendVideo"
    )  # 3 s waits, an 8 s budget
    tg.fault_next("429", count=100, chat_id=chat.id, retry_after=30, method="sendMessage")
    mark = tg.mark()
    tg.inject_message(chat, CLIP.url, user=user)
    rows = await wait_rows(app, "link", timeout=30)
    assert rows[-1]["outcome"] == "reply_failed:flood"
    attempts = tg.transcript("sendVideo", chat_id=chat.id, after=mark)
    assert 2 <= len(attempts) <= 4 and not any(c.ok for c in attempts)
    assert not tg.transcript("sendMessage", chat_id=chat.id, after=mark)  # no error reply into the flood
    assert not tracebacks(caplog)
    failed = [r for r in caplog.records if "reply not delivered" in r.getMessage()]
    assert len(failed) == 1 and failed[0].levelno == logging.WARNING


async def test_the_chat_action_is_renewed_during_a_long_download(
    tg: TelegramEmulator, sandbox: Sandbox, app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(telegram_sender, "CHAT_ACTION_EVERY", 0.2)
    sandbox.get(TTSaveEmulator).fault_next("slow", delay=1.5)
    user = tg.add_user("Eve")
    chat = tg.private_chat(user)
    mark = tg.mark()
    tg.inject_message(chat, CLIP.url, user=user)
    await tg.wait_for(method="sendVideo", chat_id=chat.id, after=mark, ok=True, timeout=20)
    actions = tg.transcript("sendChatAction", chat_id=chat.id, ok=True, after=mark)
    assert len(actions) >= 3  # renewed while TTSave stalled, not shown once and left to lapse
    assert {c.params["action"] for c in actions} == {"upload_video"}


# --- bidi controls and invisible characters from TikTok ---------------------------------------------------

HOSTILE = "".join([*BIDI_CONTROLS, *INVISIBLE, "\u200d", "\u200c"])


def hostile_post(monkeypatch: pytest.MonkeyPatch) -> FixturePost:
    """A post whose author's nickname reverses the line and whose caption hides every invisible character."""
    author = dataclasses.replace(
        CATALOGUE.users["sandbox.cook"], username="rlo.cook", nickname="Nick\u202egnp.exe"
    )
    monkeypatch.setitem(CATALOGUE.users, author.username, author)
    post = dataclasses.replace(
        CLIP,
        id=post_id_at(1_700_900_000, 77),
        author=author.username,
        description=f"Safe{HOSTILE}text \u2067#tag\u2069 👨\u200d👩\u200d👧",
        hashtags=(),
    )
    monkeypatch.setitem(CATALOGUE.posts, post.id, post)
    return post


def assert_clean(text: str) -> None:
    assert not set(text) & set(HOSTILE.replace("\u200d", "")), repr(text)


async def test_bidi_and_invisible_characters_never_reach_a_caption_or_inline_result(
    tg: TelegramEmulator, app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    post = hostile_post(monkeypatch)
    user = tg.add_user("Ivo")
    chat = tg.private_chat(user)
    mark = tg.mark()
    tg.inject_message(chat, post.url, user=user)
    call = await tg.wait_for(method="sendVideo", chat_id=chat.id, after=mark, ok=True, timeout=20)
    caption = call.params["caption"]
    assert "Nickgnp.exe (@rlo.cook)" in caption and "Safetext #tag 👨\u200d👩\u200d👧" in caption
    assert_clean(caption)
    query = tg.inline_query(post.url, user=tg.add_user("Ola"))
    answer = await tg.wait_answered(query, timeout=10)
    for result in answer["results"]:
        for value in (result.get("title", ""), result.get("description", ""), result.get("caption", "")):
            assert_clean(value)
        assert_clean(result.get("input_message_content", {}).get("message_text", ""))


# --- wording: who failed -----------------------------------------------------------------------------------


async def test_stats_providers_down_never_blame_tiktok(
    tg: TelegramEmulator, app: App, sandbox: Sandbox
) -> None:
    sandbox.get(EnsembleDataEmulator).units_balance = 0  # 495: out of units
    sandbox.get(ResearchEmulator).fault_next("500", count=20)  # and the Research API down
    for lang, words in (("en", "stats services"), ("ru", "Сервисы статистики")):
        user = tg.add_user("Rex", language_code=lang)
        chat = tg.private_chat(user)
        mark = tg.mark()
        tg.inject_message(chat, f"/post {CLIP.url}", user=user)
        call = await tg.wait_for(method="sendMessage", chat_id=chat.id, after=mark, timeout=30)
        assert words in call.params["text"] and "TikTok" not in call.params["text"]
    rows = await wait_rows(app, "post", 2)
    assert {r["outcome"] for r in rows} == {"upstream_error"}


@pytest.mark.parametrize("backends", ["ttsave"])
async def test_the_download_service_failing_is_named_as_such(tg: TelegramEmulator, sandbox: Sandbox) -> None:
    sandbox.get(TTSaveEmulator).fault_next("500", count=10)
    user = tg.add_user("Sid")
    chat = tg.private_chat(user)
    mark = tg.mark()
    tg.inject_message(chat, CLIP.url, user=user)
    call = await tg.wait_for(method="sendMessage", chat_id=chat.id, after=mark, timeout=30)
    assert "download service failed" in call.params["text"] and "TikTok" not in call.params["text"]


async def test_user_by_account_number_gets_its_own_answer(tg: TelegramEmulator, app: App) -> None:
    user = tg.add_user("Tom")
    chat = tg.private_chat(user)
    mark = tg.mark()
    tg.inject_message(chat, "/user https://m.tiktok.com/h5/share/usr/188294915489964032.html", user=user)
    call = await tg.wait_for(method="sendMessage", chat_id=chat.id, after=mark, timeout=10)
    assert "by its number" in call.params["text"]
