"""Failure knobs: scripted errors (floods, outages) and Telegram's automatic per-chat rate limits."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from sandbox.telegram.errors import ApiError, too_many_requests


@dataclass(slots=True)
class Fault:
    """The next `times` calls matching `method` / `chat_id` (None matches any) fail with this error."""

    code: int
    description: str
    parameters: dict[str, Any] | None = None
    method: str | None = None
    chat_id: int | str | None = None
    times: int = 1

    def matches(self, method: str, chat_id: int | str | None) -> bool:
        """Whether a call is hit by this fault."""
        if self.method is not None and self.method.lower() != method.lower():
            return False
        return self.chat_id is None or self.chat_id == chat_id

    def error(self) -> ApiError:
        """The error to answer with."""
        return ApiError(self.code, self.description, dict(self.parameters) if self.parameters else None)


class FaultPlan:
    """Scripted failures, consumed in the order they were added."""

    def __init__(self) -> None:
        self.faults: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        """Schedule a fault."""
        self.faults.append(fault)
        return fault

    def take(self, method: str, chat_id: int | str | None) -> ApiError | None:
        """The error for this call, if a fault is scheduled for it (consuming one use)."""
        for fault in self.faults:
            if fault.times > 0 and fault.matches(method, chat_id):
                fault.times -= 1
                if fault.times == 0:
                    self.faults.remove(fault)
                return fault.error()
        return None

    def clear(self) -> None:
        """Cancel every scheduled fault."""
        self.faults.clear()


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
