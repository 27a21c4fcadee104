"""Failure knobs: a planned fault as a Bot API error, and Telegram's automatic per-chat rate limits."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from sandbox.faults import Fault
from sandbox.telegram.errors import ApiError, too_many_requests

FAULT_STATUSES = (
    'that error: {"ok": false, "error_code", "description": message (default "Internal Server Error")}; '
    "429 is flood control, `retry_after` whole seconds (default 5) in its description and parameters"
)
FLOOD_RETRY_AFTER = 5


def check_fault(fault: Fault) -> None:
    """Refuse a flood wait Telegram never sends: aiogram only raises TelegramRetryAfter for a positive one."""
    wait = fault.retry_after
    if fault.status == 429 and wait is not None and (wait < 1 or wait != int(wait)):
        raise ValueError("retry_after must be a whole number of seconds, at least 1")


def fault_error(fault: Fault) -> ApiError:
    """The Bot API error a planned fault answers with."""
    status = fault.status or 500
    if status == 429:
        wait = int(fault.retry_after or FLOOD_RETRY_AFTER)
        return too_many_requests(wait)
    return ApiError(status, fault.message or "Internal Server Error")


@dataclass(slots=True)
class _Bucket:
    capacity: float
    rate: float  # tokens per second
    tokens: float
    stamp: float = field(default_factory=time.monotonic)

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, count: int) -> float:
        """Seconds until `count` tokens are there (0 if they are)."""
        missing = count - self.tokens
        return 0.0 if missing <= 0 else missing / self.rate


@dataclass(slots=True)
class RateLimit:
    """Telegram's flood limits as token buckets: per chat, per group per minute, and per bot."""

    per_chat_per_second: float = 1.0
    chat_burst: int = 5
    group_per_minute: int = 20
    global_per_second: int = 30
    _buckets: dict[tuple[str, int], _Bucket] = field(default_factory=dict)

    def _bucket(self, key: tuple[str, int], capacity: float, rate: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(capacity, rate, capacity)
        return bucket

    def spend(self, chat_id: int, is_group: bool, count: int) -> None:
        """Take `count` messages' worth from the buckets, or raise 429 with the time until they refill."""
        now = time.monotonic()
        buckets = [
            self._bucket(("chat", chat_id), max(self.chat_burst, count), self.per_chat_per_second),
            self._bucket(("bot", 0), max(self.global_per_second, count), self.global_per_second),
        ]
        if is_group:
            buckets.append(
                self._bucket(
                    ("group", chat_id), max(self.group_per_minute, count), self.group_per_minute / 60
                )
            )
        for bucket in buckets:
            bucket.refill(now)
        wait = max(bucket.wait_for(count) for bucket in buckets)
        if wait > 0:
            raise too_many_requests(max(1, math.ceil(wait)))
        for bucket in buckets:
            bucket.tokens -= count
