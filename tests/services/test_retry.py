"""The shared retry policy: which statuses are retried and how long to wait."""

from __future__ import annotations

import httpx
import pytest

from services.retry import RetryAnswer, RetryPolicy, retry_after


@pytest.mark.parametrize(
    ("status", "retry"), [(429, True), (500, True), (503, True), (400, False), (404, False)]
)
def test_only_429_and_5xx_are_retried(status: int, retry: bool) -> None:
    assert RetryPolicy.retryable(status) is retry


def test_backoff_doubles_and_is_capped() -> None:
    policy = RetryPolicy(retries=5, backoff=0.5, max_delay=3.0)
    assert [policy.delay(n) for n in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.delay(0, retry_after=2.5) == 2.5
    assert policy.delay(0, retry_after=99) == 3.0
    assert RetryPolicy(backoff=0, max_delay=0).delay(3, retry_after=5) == 0.0


@pytest.mark.parametrize(
    ("header", "expected"), [("7", 7.0), ("1.5", 1.5), ("", None), ("Wed, 21 Oct 2015", None)]
)
def test_retry_after_header(header: str, expected: float | None) -> None:
    response = httpx.Response(429, headers={"Retry-After": header} if header else {})
    assert retry_after(response) == expected


async def _attempts(policy: RetryPolicy, error: Exception) -> int:
    count = 0

    async def run() -> None:
        nonlocal count
        async for attempt in policy.attempts():
            with attempt:
                count += 1
                raise error

    with pytest.raises(type(error)):
        await run()
    return count


async def test_stamina_retries_transport_errors_and_retryable_answers_only() -> None:
    policy = RetryPolicy(retries=2, backoff=0.0)
    request = httpx.Request("GET", "http://127.0.0.1/")
    assert await _attempts(policy, httpx.ConnectError("refused", request=request)) == 3
    assert await _attempts(policy, RetryAnswer(ValueError("503"), wait=5.0)) == 3
    assert await _attempts(policy, ValueError("a 404 mapped to an error")) == 1
