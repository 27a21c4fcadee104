"""The poller stores each update's JSON as Telegram sent it (kept by the session), not a re-dumped model."""

from __future__ import annotations

import json

from aiogram import Bot
from aiogram.methods import GetMe, GetUpdates
from aiogram.types import Update

from bot.telegram.polling import update_entry
from bot.telegram.session import RawUpdatesSession

TOKEN = "42:TEST"
UPDATES = [
    {
        "update_id": 501,
        "message": {
            "message_id": 7,
            "from": {"id": 1001, "is_bot": False, "first_name": "Ann", "language_code": "ru"},
            "chat": {"id": 1001, "type": "private", "first_name": "Ann"},
            "date": 1700000000,
            "text": "https://www.tiktok.com/@ann/video/7300000000000000001 — посмотри",
            # A field this aiogram may not model: kept as sent.
            "future_field": {"x": 1},
        },
    },
    {
        "update_id": 502,
        "callback_query": {
            "id": "9",
            "from": {"id": 2, "is_bot": False, "first_name": "B"},
            "chat_instance": "c",
            "data": "toggle:captions",
        },
    },
]


async def test_the_session_keeps_each_update_of_the_last_poll_as_sent() -> None:
    session = RawUpdatesSession()
    bot = Bot(TOKEN, session=session)
    try:
        content = json.dumps({"ok": True, "result": UPDATES})
        response = session.check_response(bot, GetUpdates(), 200, content)
        updates = response.result
        assert [u.update_id for u in updates] == [501, 502]
        assert {k: json.loads(v) for k, v in session.raw_updates.items()} == {
            501: UPDATES[0],
            502: UPDATES[1],
        }
        assert "посмотри" in session.raw_updates[501]  # not \\u-escaped

        entry = update_entry(updates[0], session.raw_updates[501])
        assert json.loads(entry.payload) == UPDATES[0]
        again = Update.model_validate_json(entry.payload, context={"bot": bot})
        assert again.message is not None and again.message.from_user is not None
        assert (again.message.text, again.message.from_user.language_code) == (updates[0].message.text, "ru")

        # Other methods leave the last poll's JSON alone; the next poll replaces it.
        session.check_response(
            bot,
            GetMe(),
            200,
            json.dumps({"ok": True, "result": {"id": 42, "is_bot": True, "first_name": "Bot"}}),
        )
        assert set(session.raw_updates) == {501, 502}
        session.check_response(bot, GetUpdates(), 200, json.dumps({"ok": True, "result": []}))
        assert session.raw_updates == {}
    finally:
        await session.close()


async def test_an_update_without_its_json_is_serialised_again() -> None:
    bot = Bot(TOKEN, session=RawUpdatesSession())
    try:
        update = Update.model_validate(UPDATES[0], context={"bot": bot})
        entry = update_entry(update)
        assert entry.key == "501" and entry.kind == "message"
        again = Update.model_validate_json(entry.payload, context={"bot": bot})
        assert again.message is not None and again.message.text == update.message.text  # type: ignore[union-attr]
    finally:
        await bot.session.close()
