"""The retry policy the metadata clients declare: how many more attempts, and the waits between them."""

from __future__ import annotations

from dataclasses import dataclass

import httpx


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Up to `retries` more attempts after the first, waiting `backoff * 2**n` seconds (capped)."""

    retries: int = 3
    backoff: float = 0.5
    max_delay: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt `attempt + 1`; an upstream's Retry-After wins when it gave one."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        return min(self.backoff * 2.0**attempt, self.max_delay)


def retry_after(response: httpx.Response) -> float | None:
    """The delay a 429/503 asked for, in seconds (only the delta-seconds form; dates are ignored)."""
    value = response.headers.get("Retry-After", "").strip()
    try:
        return float(value) if value else None
    except ValueError:
        return None
