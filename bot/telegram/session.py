"""Bot API session behaviour: Telegram's 429s are waited out within a reply's time budget; the answer models
are built once."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import TelegramRetryAfter
from aiogram.methods import GetUpdates, SendChatAction, TelegramMethod
from aiogram.methods.base import Response, TelegramType

log = logging.getLogger("tiktok_bot.telegram")

# Method class -> the `Response[...]` model its answers are parsed with, held for the life of the process.
_RESPONSE_MODELS: dict[type[Any], type[Any]] = {}
# The event-loop time by which the reply being sent must be out; flood waits past it are not taken.
_REPLY_DEADLINE: ContextVar[float | None] = ContextVar("reply_deadline", default=None)
# Calls that only decorate a reply: a 429 on them is never waited out (the next refresh may get through).
COSMETIC_METHODS: tuple[type[TelegramMethod[Any]], ...] = (SendChatAction,)


@contextmanager
def reply_budget(seconds: float) -> Iterator[None]:
    """Calls inside share one deadline `seconds` from now (an enclosing budget, if any, is kept)."""
    if _REPLY_DEADLINE.get() is not None:
        yield
        return
    token = _REPLY_DEADLINE.set(asyncio.get_running_loop().time() + seconds)
    try:
        yield
    finally:
        _REPLY_DEADLINE.reset(token)


class RawUpdatesSession(AiohttpSession):
    """An AiohttpSession keeping the JSON of each update in the last getUpdates answer, as Telegram sent it.

    The poller stores that JSON in the inbox: aiogram keeps no raw copy, and serialising the parsed Update
    again (`model_dump_json`) cost about four times as much per update as encoding the decoded dict.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._decoded: Any = None
        self.json_loads = self._loads
        # update_id -> its JSON, for the latest getUpdates answer only (replaced by the next one).
        self.raw_updates: dict[int, str] = {}

    def _loads(self, content: str) -> Any:
        self._decoded = decoded = json.loads(content)
        return decoded

    def check_response(
        self, bot: Bot, method: TelegramMethod[TelegramType], status_code: int, content: str
    ) -> Response[TelegramType]:
        """aiogram's check; for getUpdates, also keep each update's JSON."""
        self._decoded = None
        try:
            response = super().check_response(bot, method, status_code, content)
            if isinstance(method, GetUpdates):
                self.raw_updates = _update_json(self._decoded)
        finally:
            self._decoded = None
        return response


def _update_json(decoded: Any) -> dict[int, str]:
    """update_id -> the update's JSON, from a decoded getUpdates answer."""
    result = decoded.get("result") if isinstance(decoded, dict) else None
    if not isinstance(result, list):
        return {}
    return {
        item["update_id"]: json.dumps(item, ensure_ascii=False, separators=(",", ":"))
        for item in result
        if isinstance(item, dict) and isinstance(item.get("update_id"), int)
    }


class KeepResponseModels(BaseRequestMiddleware):
    """Holds on to the `Response[<result type>]` model of every method sent, so pydantic builds each once."""

    # aiogram parametrises Response on every call and pydantic caches the class only weakly, so once garbage
    # collection had freed it, the next call built it afresh: ~0.5 ms of schema work, a hundred times in a
    # burst of 1,000 messages.
    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        """Pin the answer model, then send."""
        kind = type(method)
        if kind not in _RESPONSE_MODELS:
            _RESPONSE_MODELS[kind] = Response[method.__returning__]  # type: ignore[name-defined]
        return await make_request(bot, method)


class RetryAfter(BaseRequestMiddleware):
    """On a 429, sleep `retry_after` seconds and send again, for as long as the reply's time budget allows.

    The budget is the enclosing `reply_budget`, else `budget` seconds from the call's first attempt. However
    many 429s Telegram sends, a call waits them out while the next attempt still lands inside it; a wait that
    would pass the deadline raises the last TelegramRetryAfter at once. Cosmetic calls are never retried.
    """

    def __init__(self, budget: float = 60.0) -> None:
        self.budget = budget

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        """Send, waiting out flood-control answers within the budget."""
        loop = asyncio.get_running_loop()
        deadline = _REPLY_DEADLINE.get()
        if deadline is None:
            deadline = loop.time() + self.budget
        while True:
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as exc:
                if isinstance(method, COSMETIC_METHODS) or loop.time() + exc.retry_after > deadline:
                    raise
                log.info("flood control: waiting %ss before %s", exc.retry_after, type(method).__name__)
                await asyncio.sleep(exc.retry_after)
