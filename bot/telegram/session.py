"""Bot API session behaviour: Telegram's 429s are waited out and retried, a bounded number of times."""

from __future__ import annotations

import asyncio
import logging

from aiogram import Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import TelegramRetryAfter
from aiogram.methods import TelegramMethod
from aiogram.methods.base import Response, TelegramType

log = logging.getLogger("tiktok_bot.telegram")


class RetryAfter(BaseRequestMiddleware):
    """On a 429, sleep `retry_after` seconds (capped) and send the same request again."""

    def __init__(self, attempts: int = 3, max_wait: float = 60.0) -> None:
        self.attempts = attempts
        self.max_wait = max_wait

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        """Send, retrying after flood-control answers."""
        for attempt in range(self.attempts):
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as exc:
                if attempt == self.attempts - 1 or exc.retry_after > self.max_wait:
                    raise
                log.warning("flood control: waiting %ss before %s", exc.retry_after, type(method).__name__)
                await asyncio.sleep(exc.retry_after)
        raise AssertionError("unreachable")  # pragma: no cover
