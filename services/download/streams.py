"""Opening upstream streams with a declared retry policy, and turning httpx failures into ServiceErrors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

import httpx

from services.errors import TruncatedStream, UpstreamError, UpstreamTimeout


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retry transport errors, 5xx and 429 (after its Retry-After) — never any other 4xx."""

    attempts: int = 3
    backoff: float = 0.5  # the first delay; it doubles on each retry
    max_delay: float = 10.0  # caps both the backoff and a server's Retry-After

    def retryable(self, status: int) -> bool:
        """Whether an answer with this status is worth asking again."""
        return status == 429 or status >= 500

    def delay(self, retry: int, response: httpx.Response | None = None) -> float:
        """Seconds to wait before retry number `retry` (1-based)."""
        wait = self.backoff * 2.0 ** (retry - 1)
        if response is not None and response.status_code == 429:
            after = _retry_after(response.headers.get("Retry-After"))
            if after is not None:
                wait = after
        return max(0.0, min(wait, self.max_delay))


INSTANT = RetryPolicy(attempts=3, backoff=0.0, max_delay=0.0)
"""Retries without waiting: for tests."""


def _retry_after(value: str | None) -> float | None:
    # Only the delta-seconds form; an HTTP date falls back to our own backoff.
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


@asynccontextmanager
async def open_stream(
    client: httpx.AsyncClient,
    build: Callable[[], httpx.Request],
    policy: RetryPolicy,
    *,
    upstream: str,
) -> AsyncIterator[httpx.Response]:
    """Send a request built by `build` until an answer is final, and yield it unread (closed on exit)."""
    for attempt in range(1, policy.attempts + 1):
        last = attempt == policy.attempts
        try:
            response = await client.send(build(), stream=True)
        except httpx.TimeoutException as exc:
            if last:
                raise UpstreamTimeout(f"{upstream} did not answer in time", upstream=upstream) from exc
            await asyncio.sleep(policy.delay(attempt))
            continue
        except httpx.TransportError as exc:
            if last:
                raise UpstreamError(
                    f"{upstream} unreachable: {type(exc).__name__}", upstream=upstream
                ) from exc
            await asyncio.sleep(policy.delay(attempt))
            continue
        if policy.retryable(response.status_code) and not last:
            wait = policy.delay(attempt, response)
            await response.aclose()
            await asyncio.sleep(wait)
            continue
        try:
            yield response
        finally:
            await response.aclose()
        return


@contextmanager
def body_errors(upstream: str) -> Iterator[None]:
    """Map failures while reading a body: a timeout, or a connection lost mid-stream."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise UpstreamTimeout(f"{upstream} stalled mid-stream", upstream=upstream) from exc
    except httpx.TransportError as exc:
        raise TruncatedStream(
            f"{upstream} broke off the stream: {type(exc).__name__}", upstream=upstream
        ) from exc
    except httpx.DecodingError as exc:
        raise UpstreamError(f"{upstream} sent an undecodable body", upstream=upstream) from exc


async def read_capped(response: httpx.Response, cap: int, *, upstream: str) -> bytes:
    """Read a small body (JSON, HTML), refusing one over `cap` bytes."""
    parts: list[bytes] = []
    size = 0
    with body_errors(upstream):
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > cap:
                raise UpstreamError(
                    f"{upstream} sent over {cap} bytes where a page was expected", upstream=upstream
                )
            parts.append(chunk)
    return b"".join(parts)
