"""Who asked where, and the bookkeeping every interaction shares on both platforms: limits and its usage row.

A frontend builds a `ChatContext` per event; `Interactions` (one per process) counts the request against the
rate limits and records one usage row (and the reply metrics) for it, whatever happens inside.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from bot.chat.inbox import next_hit_id
from bot.metrics import Metrics
from services.errors import error_code
from services.metadata.service import Answer
from services.ratelimit import RateLimits
from services.store import Store
from services.store.usage import UsageEvent

# The usage line keeps the logger it always had, so filters on it still match.
log = logging.getLogger("tiktok_bot.flow")

PRIVATE_CHAT_TYPES = frozenset({"private", "dm"})
# The outcome of a command whose argument was unusable (the user got the command's usage).
INVALID_ARGUMENT = "invalid_argument"
# The outcome of a request the user may not make here (settings without the right, /stats for non-operators).
NOT_ALLOWED = "not_allowed"
# Called once a request is let through, before the work (Discord acknowledges the command there).
Admitted = Callable[[], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class ChatContext:
    """Who asked, where: enough to limit, localise, reply and log."""

    platform: str
    chat_id: int | str
    chat_type: str
    user_id: int | str | None
    language: str = "en"

    @property
    def is_private(self) -> bool:
        """A one-to-one chat, where every failure gets its specific answer."""
        return self.chat_type in PRIVATE_CHAT_TYPES


class ReplyFailed(Exception):
    """The chat platform would not take the reply (flood control past its budget, bot blocked...)."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.reason = reason

    @property
    def outcome(self) -> str:
        """The usage-log outcome: `reply_failed:<reason>`."""
        return f"reply_failed:{self.reason}"


@dataclass(slots=True)
class Tracker:
    """What one interaction did, filled in by its body, recorded when it ends."""

    target: str | None = None
    backend: str | None = None
    bytes_sent: int = 0
    cache_hit: bool = False
    units: int = 0
    outcome: str = "ok"

    def answered(self, answer: Answer[Any]) -> None:
        """Note which metadata provider answered, what it cost and whether the answer was cached."""
        self.backend, self.units, self.cache_hit = answer.provider, answer.units, answer.cached


class Interactions:
    """The rate limits every request counts against and the usage row every interaction leaves."""

    def __init__(self, *, store: Store, limits: RateLimits, metrics: Metrics | None = None) -> None:
        self.store = store
        self.limits = limits
        self.metrics = metrics

    async def check_limits(self, ctx: ChatContext) -> None:
        """Count one request against the user's and the chat's limits (raises RateLimited)."""
        # The hit's id is the served update's: an update run again after a replica died is not counted twice.
        await self.limits.check((ctx.platform, ctx.user_id), (ctx.platform, ctx.chat_id), next_hit_id())

    @asynccontextmanager
    async def track(
        self,
        ctx: ChatContext,
        action: str,
        target: str | None = None,
        *,
        tracker: Tracker | None = None,
        outcome: str = "ok",
    ) -> AsyncIterator[Tracker]:
        """Time the body and record one usage row with its outcome, whatever happens."""
        tracker = tracker or Tracker(target=target, outcome=outcome)
        started = time.perf_counter()
        try:
            yield tracker
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                tracker.outcome = "cancelled"
            elif isinstance(exc, ReplyFailed):
                tracker.outcome = exc.outcome
            else:
                tracker.outcome = error_code(exc)
            raise
        finally:
            latency = (time.perf_counter() - started) * 1000
            if self.metrics is not None:
                self.metrics.replied(ctx.platform, action, tracker.outcome, latency / 1000, tracker.cache_hit)
            self.store.usage.record(
                UsageEvent(
                    platform=ctx.platform,
                    action=action,
                    chat_id=ctx.chat_id,
                    chat_type=ctx.chat_type,
                    user_id=ctx.user_id,
                    target=tracker.target,
                    backend=tracker.backend,
                    outcome=tracker.outcome,
                    bytes_sent=tracker.bytes_sent,
                    latency_ms=latency,
                    cache_hit=tracker.cache_hit,
                    units=tracker.units,
                )
            )
            log.info(
                "%s %s",
                action,
                tracker.outcome,
                extra={  # platform, update, chat and user are bound where the interaction came in
                    "action": action,
                    "target": tracker.target,
                    "backend": tracker.backend,
                    "outcome": tracker.outcome,
                    "latency_ms": round(latency, 1),
                },
            )

    @asynccontextmanager
    async def admit(self, ctx: ChatContext, action: str, target: str | None = None) -> AsyncIterator[Tracker]:
        """`track` a request that first passes the rate limits (a refusal is its row's outcome)."""
        async with self.track(ctx, action, target) as tracker:
            await self.check_limits(ctx)
            yield tracker
