"""Telegram inline mode, /settings, /stats, /privacy and webhook mode, end to end against the emulator."""

from __future__ import annotations

import asyncio
import socket

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.config import Settings
from bot.telegram.app import run_telegram
from bot.wiring import App, build_app
from sandbox.catalogue import CATALOGUE
from sandbox.runner import Sandbox
from sandbox.telegram import TelegramEmulator
from sandbox.ttsave import TTSaveEmulator
from tests.e2e.conftest import usage_rows, wait_rows

CLIP = next(p for p in CATALOGUE.posts.values() if p.hashtags == ("pasta", "cooking"))
SLIDES = next(p for p in CATALOGUE.posts.values() if len(p.images) == 3)
ADMIN_ID = 4242


# --- inline mode -------------------------------------------------------------------------------------------


async def test_inline_query_for_a_cached_post_offers_the_video(tg: TelegramEmulator, app: App) -> None:
    user = tg.add_user("Una")
    chat = tg.private_chat(user)
    mark = tg.mark()
    tg.inject_message(chat, CLIP.url, user=user)
    sent = await tg.wait_for(method="sendVideo", chat_id=chat.id, after=mark, timeout=10)
    await wait_rows(app, "link")  # the file_id is cached once the reply is done
    query = tg.inline_query(CLIP.url, user=user)
    answer = await tg.wait_answered(query)
    [result] = answer["results"]
    assert result["type"] == "video"
    assert result["video_file_id"] == sent.files[0].file_id
    assert "@sandbox.cook" in result["caption"]
    rows = await wait_rows(app, "inline")
    assert (rows[-1]["cache_hit"], rows[-1]["outcome"]) == (1, "ok")


async def test_inline_query_without_storage_chat_answers_an_article(
    tg: TelegramEmulator, sandbox: Sandbox
) -> None:
    query = tg.inline_query(f"https://vm.tiktok.com/ZMclip01/ {CLIP.url}")
    answer = await tg.wait_answered(query)
    [result] = answer["results"]
    assert result["type"] == "article"
    assert "1.5M" in result["input_message_content"]["message_text"]
    # Nothing cached and nowhere to upload: no download was made for it.
    assert sandbox.get(TTSaveEmulator).downloads(CLIP.id) == 0


async def test_inline_query_uploads_once_to_the_storage_chat(tg: TelegramEmulator, app: App) -> None:
    storage = tg.channel("Storage")
    app.settings.telegram.storage_chat_id = storage.id
    query = tg.inline_query(SLIDES.url)
    answer = await tg.wait_answered(query, timeout=10)
    kinds = [r["type"] for r in answer["results"]]
    assert kinds == ["photo", "photo", "photo", "audio"]
    assert len(tg.transcript("sendMediaGroup", chat_id=storage.id, ok=True)) == 1
    again = tg.inline_query(SLIDES.url, user=tg.add_user("Other"))
    second = await tg.wait_answered(again)
    assert [r.get("photo_file_id") for r in second["results"]] == [
        r.get("photo_file_id") for r in answer["results"]
    ]
    assert len(tg.transcript("sendMediaGroup", chat_id=storage.id, ok=True)) == 1


# --- /settings ---------------------------------------------------------------------------------------------


async def _toggle(tg: TelegramEmulator, chat_id: int, message: object, label: str, user: object) -> None:
    mark = tg.mark()
    press = tg.press_button(message, text=label, user=user)  # type: ignore[arg-type]
    await tg.wait_answered(press)
    await tg.wait_for(method="editMessageReplyMarkup", chat_id=chat_id, after=mark)


async def test_settings_toggles_change_behaviour_at_once(tg: TelegramEmulator) -> None:
    owner = tg.add_user("Oli")
    group = tg.group("Club", owner=owner)
    tg.set_admin(group, owner)
    mark = tg.mark()
    tg.inject_message(group, "/settings", user=owner)
    menu = await tg.wait_for(method="sendMessage", chat_id=group.id, after=mark)
    labels = [row[0]["text"] for row in menu.params["reply_markup"]["inline_keyboard"]]
    captions = next(label for label in labels if "Captions" in label)
    await _toggle(tg, group.id, menu, captions, owner)
    mark = tg.mark()
    tg.inject_message(group, CLIP.url, user=owner)
    video = await tg.wait_for(method="sendVideo", chat_id=group.id, after=mark, timeout=10)
    assert not video.params.get("caption")
    current = tg.messages_in(group.id)
    menu_now = next(m for m in current if m.get("message_id") == menu.message["message_id"])  # type: ignore[index]
    auto = next(
        b["text"]
        for row in menu_now["reply_markup"]["inline_keyboard"]
        for b in row
        if "Download" in b["text"]
    )
    await _toggle(tg, group.id, menu, auto, owner)
    mark = tg.mark()
    injected = tg.inject_message(group, CLIP.url, user=owner)
    await tg.wait_confirmed(injected)
    await asyncio.sleep(0.3)
    assert tg.sent_to(group.id, after=mark) == []


async def test_a_stale_settings_button_is_answered_and_logged(tg: TelegramEmulator, app: App) -> None:
    owner = tg.add_user("Sam")
    chat = tg.private_chat(owner)
    mark = tg.mark()
    tg.inject_message(chat, "/settings", user=owner)
    menu = await tg.wait_for(method="sendMessage", chat_id=chat.id, after=mark)
    before = await app.store.chats.get("telegram", chat.id)
    # A keyboard sent by an older version of the bot can carry a setting this one no longer has.
    press = tg.press_button(menu, "st:old_setting", user=owner, check=False)
    answer = await tg.wait_answered(press)
    assert answer["text"] == "Sorry, that button has expired. Send the command again."
    assert await app.store.chats.get("telegram", chat.id) == before
    rows = await wait_rows(app, "settings", 2)
    assert [(r["target"], r["outcome"]) for r in rows] == [(None, "ok"), ("old_setting", "stale")]


async def test_settings_refused_to_non_admins(tg: TelegramEmulator, app: App) -> None:
    owner = tg.add_user("Pat")
    member = tg.add_user("Max")
    group = tg.supergroup("Open", owner=owner)
    mark = tg.mark()
    tg.inject_message(group, "/settings", user=member)
    call = await tg.wait_for(method="sendMessage", chat_id=group.id, after=mark)
    assert "Only the chat's admins" in call.params["text"]
    rows = await wait_rows(app, "settings")
    assert rows[-1]["outcome"] == "not_allowed"


# --- /stats and /privacy -----------------------------------------------------------------------------------


@pytest.mark.parametrize("extra_env", [{"TELEGRAM__ADMINS": str(ADMIN_ID)}])
async def test_stats_for_operators_match_the_usage_log(tg: TelegramEmulator, app: App) -> None:
    user = tg.add_user("Quinn")
    chat = tg.private_chat(user)
    tg.inject_message(chat, CLIP.url, user=user)
    tg.inject_message(chat, CLIP.url, user=user)
    await wait_rows(app, "link", 2)
    stranger = tg.add_user("Stan")
    mark = tg.mark()
    tg.inject_message(tg.private_chat(stranger), "/stats", user=stranger)
    refused = await tg.wait_for(method="sendMessage", after=mark)
    assert "operators" in refused.params["text"]
    admin = tg.add_user("Ada", id=ADMIN_ID)
    admin_chat = tg.private_chat(admin)
    await wait_rows(app, "stats")
    rows = await usage_rows(app)
    mark = tg.mark()
    tg.inject_message(admin_chat, "/stats", user=admin)
    call = await tg.wait_for(method="sendMessage", chat_id=admin_chat.id, after=mark)
    text = call.params["text"]
    users = len({r["user_id"] for r in rows if r["user_id"] is not None})
    assert f"requests {len(rows)} · users {users}" in text
    hits = sum(1 for r in rows if r["cache_hit"])
    assert f"cache hits {hits}/" in text
    assert "ttsave" in text
    # Per backend since start-up: the second link was a cache hit, so TTSave was asked once.
    assert "ttsave: 1 req, 1 ok" in text and "100% served" in text and "breaker closed — up" in text
    assert "web: 0 req, 0 ok" in text
    # The /stats update itself is the one open inbox entry; nothing was replayed in this run.
    assert "inbox: open 1, oldest 0 s · replayed 0 · expired 0 · duplicates ≤ 0" in text


async def test_privacy_deletes_this_users_rows_only(tg: TelegramEmulator, app: App) -> None:
    alice, bob = tg.add_user("Al"), tg.add_user("Bo")
    for user in (alice, bob):
        tg.inject_message(tg.private_chat(user), f"/post {CLIP.url}", user=user)
    await wait_rows(app, "post", 2)
    chat = tg.private_chat(alice)
    mark = tg.mark()
    tg.inject_message(chat, "/privacy", user=alice)
    call = await tg.wait_for(method="sendMessage", chat_id=chat.id, after=mark)
    assert "1 usage rows" in call.params["text"]
    mark = tg.mark()
    press = tg.press_button(call, "privacy:delete", user=alice)
    await tg.wait_answered(press)
    done = await tg.wait_for(method="editMessageText", chat_id=chat.id, after=mark)
    assert "2 rows" in done.params["text"]  # the /post row and the /privacy row
    rows = await usage_rows(app)
    assert not [r for r in rows if r["user_id"] == str(alice.id)]
    assert [r for r in rows if r["user_id"] == str(bob.id)]


# --- webhook mode ------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def metric_values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text format as {(name, sorted labels): value}, parsed by prometheus-client's own parser."""
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def video_backend(scraped: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> str:
    """The backend that served the one successful download attempt."""
    [(_, labels)] = [
        key for key, value in scraped.items() if key[0] == "tiktok_bot_download_attempts_total" and value
    ]
    assert dict(labels)["outcome"] == "ok"
    return dict(labels)["backend"]


async def test_webhook_mode_serves_updates_and_refuses_wrong_secrets(
    sandbox: Sandbox, settings: Settings
) -> None:
    port = _free_port()
    hooked = settings.model_copy(
        update={
            "telegram": settings.telegram.model_copy(
                update={
                    "webhook_url": f"http://127.0.0.1:{port}/tg/hook",
                    "webhook_listen": f"127.0.0.1:{port}",
                }
            )
        }
    )
    app = await build_app(hooked)
    tg = sandbox.get(TelegramEmulator)
    stop = asyncio.Event()
    task = asyncio.create_task(run_telegram(app, stop))
    try:
        registered = await tg.wait_for(method="setWebhook", timeout=10)
        secret = registered.params["secret_token"]
        assert secret
        user = tg.add_user("Wes")
        chat = tg.private_chat(user)
        mark = tg.mark()
        tg.inject_message(chat, CLIP.url, user=user)
        video = await tg.wait_for(method="sendVideo", chat_id=chat.id, after=mark, timeout=10)
        assert video.ok
        assert tg.deliveries[-1].status == 200
        assert await tg.post_to_webhook(secret="wrong") == 401
        assert await tg.post_to_webhook() == 401
        import aiohttp

        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                assert resp.status == 200
                health = await resp.json()
                assert health["ready"] is True and health["status"] == "up"
                assert [(u["kind"], u["backend"], u["status"]) for u in health["upstreams"]] == [
                    ("download", "ttsave", "up"),
                    ("download", "web", "up"),
                    ("metadata", "ensembledata", "up"),
                    ("metadata", "research", "up"),
                ]
            await wait_rows(app, "link")
            async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("text/plain; version=")
                scraped = metric_values(await resp.text())
        assert (
            scraped[("tiktok_bot_updates_received_total", (("kind", "message"), ("platform", "telegram")))]
            == 1
        )
        ok = (("action", "link"), ("outcome", "ok"), ("platform", "telegram"))
        assert scraped[("tiktok_bot_replies_total", ok)] == 1
        backend = video_backend(scraped)
        assert scraped[("tiktok_bot_download_seconds_count", (("backend", backend),))] == 1
        assert ("tiktok_bot_event_loop_lag_seconds_count", ()) in scraped
        closed = (("backend", "ttsave"), ("state", "closed"))
        assert scraped[("tiktok_bot_breaker_state", closed)] == 1
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        await app.aclose()
    assert sandbox.get(TTSaveEmulator).downloads(CLIP.id) >= 1
