"""How the Telegram frontend is put together: what aiogram runs inline, and which answer models it keeps."""

from __future__ import annotations

import gc
import weakref
from typing import Any

from aiogram import F, Router
from aiogram.dispatcher.event.handler import FilterObject
from aiogram.methods import GetMyDescription, GetMyShortDescription, TelegramMethod
from aiogram.methods.base import Response
from aiogram.types import Chat, Message

from bot.telegram.filters import Where
from bot.telegram.routers import build_router
from bot.telegram.session import _RESPONSE_MODELS, KeepResponseModels


def _filters(router: Router) -> list[FilterObject]:
    found: list[FilterObject] = []
    for observer in router.observers.values():
        found += observer._handler.filters or []
        for handler in observer.handlers:
            found += handler.filters or []
    for sub in router.sub_routers:
        found += _filters(sub)
    return found


def test_no_filter_goes_to_a_worker_thread() -> None:
    # aiogram runs any filter that is not awaitable through asyncio.to_thread, on every update.
    filters = _filters(build_router())
    assert filters
    threaded = [f.callback for f in filters if not f.awaitable]
    assert threaded == []


def test_a_bare_magic_filter_would_go_to_a_thread() -> None:
    # The guard above can fail: this is what it catches.
    assert not FilterObject(F.text).awaitable
    assert FilterObject(Where(F.text)).awaitable


async def test_where_matches_like_the_magic_filter() -> None:
    chat = Chat(id=1, type="private")
    text = Message(message_id=1, date=0, chat=chat, text="/help")
    photo = Message(message_id=2, date=0, chat=chat, caption="hi")
    bare = Message(message_id=3, date=0, chat=chat)
    assert await Where(F.text | F.caption)(text)
    assert await Where(F.text | F.caption)(photo)
    assert not await Where(F.text | F.caption)(bare)
    assert await Where(F.text.startswith("/"))(text)
    assert not await Where(F.chat.type == "group")(text)


def _parametrise(method: type[TelegramMethod[Any]]) -> weakref.ref[type[Any]]:
    # As aiogram does for every answer: inside a function, keeping nothing.
    return weakref.ref(Response[method.__returning__])  # type: ignore[name-defined]


async def test_answer_models_are_built_once_and_kept() -> None:
    unkept = _parametrise(GetMyShortDescription)
    gc.collect()
    assert unkept() is None  # pydantic caches generic models weakly: this one is gone, and would be rebuilt
    calls: list[object] = []

    async def send(bot: object, m: object) -> str:
        calls.append(m)
        return "sent"

    method = GetMyDescription()
    assert await KeepResponseModels()(send, None, method) == "sent"  # type: ignore[arg-type]
    kept = _parametrise(GetMyDescription)
    gc.collect()
    assert kept() is not None
    assert kept() is _RESPONSE_MODELS[GetMyDescription]
    assert calls == [method]
