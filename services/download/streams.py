"""Opening upstream streams with a declared retry policy, and turning httpx failures into ServiceErrors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager

import httpx

from services.errors import TruncatedStream, UpstreamError, UpstreamTimeout, UpstreamUnreachable
from services.http import FirstByteTimeout
from services.retry import RetryAnswer, RetryPolicy, retry_after

# Downloads retry less and wait less than metadata calls: a user is waiting on the other end.
DOWNLOAD_RETRY = RetryPolicy(retries=2, backoff=0.5, max_delay=10.0)


@asynccontextmanager
async def open_stream(
    client: httpx.AsyncClient,
    build: Callable[[], httpx.Request],
    policy: RetryPolicy,
    *,
    upstream: str,
) -> AsyncIterator[httpx.Response]:
    """Send a request built by `build` until an answer is final, and yield it unread (closed on exit).

    After the last attempt a 429/5xx is final too: the caller reads its status.
    """
    pending: httpx.Response | None = None  # the last retryable answer, kept until the next attempt
    try:
        async for attempt in policy.attempts():
            with attempt:
                if pending is not None:
                    await pending.aclose()
                    pending = None
                try:
                    response = await client.send(build(), stream=True)
                except FirstByteTimeout as exc:
                    # Not retried: a server that took the request and said nothing for that long will not
                    # answer a second one sooner, and the user is waiting.
                    raise UpstreamTimeout(f"{upstream} sent nothing: {exc}", upstream=upstream) from exc
                if policy.retryable(response.status_code):
                    pending = response
                    wait = retry_after(response) if response.status_code == 429 else None
                    failure = UpstreamError(
                        f"{upstream} answered {response.status_code}",
                        upstream=upstream,
                        status=response.status_code,
                    )
                    raise RetryAnswer(failure, wait=wait)
                break
    except RetryAnswer:
        if pending is None:  # pragma: no cover - only a retryable answer raises RetryAnswer
            raise
        response = pending
    except httpx.TimeoutException as exc:
        raise UpstreamTimeout(f"{upstream} did not answer in time", upstream=upstream) from exc
    except httpx.TransportError as exc:
        raise UpstreamUnreachable(f"{upstream} unreachable: {type(exc).__name__}", upstream=upstream) from exc
    try:
        yield response
    finally:
        await response.aclose()


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
