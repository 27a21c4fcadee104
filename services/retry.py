"""The one retry policy every upstream client declares (run by stamina): what to ask again, the waits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import stamina


class RetryAnswer(Exception):
    """An answer worth asking again (429, 5xx): what to raise or return once the attempts run out."""

    def __init__(self, failure: Exception, *, wait: float | None = None) -> None:
        super().__init__(str(failure))
        self.failure = failure
        self.wait = wait  # the upstream's Retry-After, when it sent one


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Up to `retries` more attempts after the first, on transport errors, 5xx and 429 — never another 4xx.

    The wait before retry n (0-based) is `backoff * 2**n`, capped at `max_delay`; a 429's Retry-After wins.
    """

    retries: int = 3
    backoff: float = 0.5
    max_delay: float = 30.0

    @staticmethod
    def retryable(status: int) -> bool:
        """Whether an answer with this status is worth asking again."""
        return status == 429 or status >= 500

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt `attempt` (0-based); an upstream's Retry-After wins."""
        wait = retry_after if retry_after is not None else self.backoff * 2.0**attempt
        return max(0.0, min(wait, self.max_delay))

    def attempts(self) -> AsyncIterator[stamina.Attempt]:
        """The attempts: `async for attempt in policy.attempts(): with attempt: ...` (waits between them)."""
        return aiter(
            stamina.retry_context(
                on=self._on,
                attempts=self.retries + 1,
                timeout=None,  # each request has its own timeouts; the attempts bound the whole
                wait_initial=self.backoff,
                wait_max=self.max_delay,
                wait_jitter=0.0,
            )
        )

    def _on(self, exc: Exception) -> bool | float:
        """Retry transport errors and retryable answers; a Retry-After (capped) replaces the backoff."""
        if isinstance(exc, RetryAnswer):
            return True if exc.wait is None else self.delay(0, exc.wait)
        return isinstance(exc, httpx.TransportError)


def retry_after(response: httpx.Response) -> float | None:
    """The delay a 429/503 asked for, in seconds (only the delta-seconds form; an HTTP date is ignored)."""
    value = response.headers.get("Retry-After", "").strip()
    try:
        return float(value) if value else None
    except ValueError:
        return None
