"""Health per upstream: a circuit breaker (a small state machine on an injected clock) and figures.

The download service skips a backend whose breaker is open; the metadata service only observes its providers'
breakers (for /healthz), since a provider's own quota logic already decides when to move on.

```
            N consecutive upstream faults            cool-down over: one probe
  CLOSED ─────────────────────────────────► OPEN ─────────────────────────────► HALF_OPEN
    ▲  ▲                                      ▲                                    │
    │  └──── probe succeeded ─────────────────┼────────────────────────────────────┤
    │                                         └──────── probe failed ──────────────┘
    └── a backend with a probe (TTSave /ping) that could not be reached at all goes to HALF_OPEN at once
```

Only faults of the upstream count: timeouts, refused or dropped connections, 5xx, 429, 403 blocks, broken
streams. A verdict about the post (private, deleted, not found, too large) or a 4xx about our request shows
the upstream working and resets the count. An open backend is skipped at once. The probe is the backend's own
health check when it has one (run in the background, so no user waits for it), else the next real request.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from services.errors import (
    InvalidLink,
    LinkNotFound,
    NotFound,
    PostUnavailable,
    TooLarge,
    UnsafeRedirect,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnreachable,
)

Clock = Callable[[], float]
SKIPPED = "circuit_open"  # the attempt-list code of a backend skipped because its breaker is open
_LATENCIES_KEPT = 1000


class BreakerState(StrEnum):
    """Where a breaker stands."""

    CLOSED = "closed"  # requests go through
    OPEN = "open"  # requests are skipped until the cool-down is over
    HALF_OPEN = "half_open"  # one probe is under way; other requests are skipped


class Verdict(StrEnum):
    """What an attempt's outcome says about the upstream's health."""

    OK = "ok"  # it answered (with media, or with a verdict about the post)
    FAULT = "fault"  # it failed in a way that counts toward opening the breaker
    UNREACHABLE = "unreachable"  # a fault where nothing came back at all: no connection, or silence


def judge(exc: BaseException | None) -> Verdict:
    """How an attempt's outcome (None: served) counts for the backend's breaker."""
    if exc is None or isinstance(
        exc, PostUnavailable | LinkNotFound | NotFound | TooLarge | InvalidLink | UnsafeRedirect
    ):
        return Verdict.OK
    if isinstance(exc, UpstreamUnreachable | UpstreamTimeout):
        return Verdict.UNREACHABLE
    if isinstance(exc, UpstreamRejected):
        # 403 is a block of our address or session; other 4xx are about the request (or the post).
        return Verdict.FAULT if exc.status in (403, 429) else Verdict.OK
    if isinstance(exc, UpstreamError):
        if exc.status is not None and 400 <= exc.status < 500 and exc.status != 429:
            return Verdict.OK  # e.g. TTSave's 400 "No files available": it answered, about this post
        if getattr(exc, "neutral", False):
            return Verdict.OK  # a backend's own statement that it cannot serve this kind of post
        return Verdict.FAULT
    return Verdict.OK  # a bug of ours is not the upstream's fault


class CircuitBreaker:
    """Closed → open after `failures` consecutive faults; half-open after `cooldown` seconds, one probe.

    In half-open any outcome decides: a success closes, a fault opens again for another cool-down. A backend
    with a probe of its own (`has_probe`) is probed by its owner (see `probe_due`), never by a user's request.
    """

    def __init__(
        self,
        *,
        failures: int = 3,
        cooldown: float = 30.0,
        clock: Clock = time.monotonic,
        has_probe: bool = False,
    ) -> None:
        self.failures = failures
        self.cooldown = cooldown
        self.has_probe = has_probe
        self._clock = clock
        self.state = BreakerState.CLOSED
        self.consecutive = 0
        self.opened_at: float | None = None
        self.changed_at = clock()
        self._probing = False
        self._probe_started = 0.0

    def _move(self, state: BreakerState) -> None:
        if state is not self.state:
            self.state = state
            self.changed_at = self._clock()
        if state is not BreakerState.HALF_OPEN:
            self._probing = False

    def allow(self) -> bool:
        """Whether a request may go to the backend now. Once the cool-down is over, the first caller is let
        through as the probe of a backend without a probe of its own; everyone else is skipped."""
        if self.state is BreakerState.CLOSED:
            return True
        if not self.has_probe and (self._cooled_open() or self._stale_probe()):
            self.start_probe()
            return True
        return False

    def probe_due(self) -> bool:
        """Whether the backend's own probe should start now; True once per cool-down (it takes the slot)."""
        if self.has_probe and (self._cooled_open() or self._stale_probe()):
            self.start_probe()
            return True
        return False

    def start_probe(self) -> None:
        """Skip requests while a probe runs (at start-up, at the end of a cool-down, after silence)."""
        self._move(BreakerState.HALF_OPEN)
        self._probing = True
        self._probe_started = self._clock()

    def _cooled_open(self) -> bool:
        return self.state is BreakerState.OPEN and self._cooled()

    def _stale_probe(self) -> bool:
        # A probe that never reported (its request was cancelled) must not leave the backend skipped forever.
        return (
            self.state is BreakerState.HALF_OPEN
            and self._probing
            and self._clock() - self._probe_started >= max(self.cooldown, 1.0)
        )

    def record(self, verdict: Verdict) -> bool:
        """Count an outcome (a request's or a probe's); True when the owner should run its probe now."""
        if verdict is Verdict.OK:
            self.consecutive = 0
            self.opened_at = None
            self._move(BreakerState.CLOSED)
            return False
        self.consecutive += 1
        if self.state is not BreakerState.CLOSED or self.consecutive >= self.failures:
            self.opened_at = self._clock()
            self._move(BreakerState.OPEN)
            return False
        if verdict is Verdict.UNREACHABLE and self.has_probe:
            # Nothing came back at all: ask the cheap health check now rather than let N more users wait.
            self.start_probe()
            return True
        return False

    def probe_result(self, ok: bool) -> None:
        """The backend's own probe answered: closed when it worked, open for a cool-down when not. A good
        probe leaves the fault count alone: a health check that answers while downloads hang must not let
        every user pay for the hang — only a served request resets the count."""
        if not ok:
            self.consecutive = max(self.consecutive, 1)
        self.opened_at = None if ok else self._clock()
        self._move(BreakerState.CLOSED if ok else BreakerState.OPEN)

    def _cooled(self) -> bool:
        return self.opened_at is None or self._clock() - self.opened_at >= self.cooldown

    def retry_in(self) -> float | None:
        """Seconds until an open breaker lets a probe through (None when not open)."""
        if self.state is not BreakerState.OPEN or self.opened_at is None:
            return None
        return max(0.0, self.cooldown - (self._clock() - self.opened_at))


@dataclass(frozen=True, slots=True)
class BackendFigures:
    """One backend's figures since start-up, and its breaker now."""

    backend: str
    requests: int  # attempts made (skips not counted)
    successes: int  # attempts that served the media
    skipped: int  # attempts skipped while the breaker was open
    p50_ms: float | None
    p95_ms: float | None
    share: float  # of all downloads served by any backend, the part this one served (0..1)
    breaker: BreakerState
    consecutive_faults: int
    retry_in: float | None

    @property
    def status(self) -> str:
        """`up`, `degraded` or `down`, for health endpoints."""
        if self.breaker is BreakerState.OPEN:
            return "down"
        if self.breaker is BreakerState.HALF_OPEN or self.consecutive_faults:
            return "degraded"
        return "up"

    def to_dict(self, kind: str = "download") -> dict[str, Any]:
        """Plain data for JSON; `kind` says which chain the upstream serves (download, metadata)."""
        return {
            "backend": self.backend,
            "kind": kind,
            "status": self.status,
            "breaker": self.breaker.value,
            "requests": self.requests,
            "successes": self.successes,
            "skipped": self.skipped,
            "latency_ms": {"p50": self.p50_ms, "p95": self.p95_ms},
            "share": self.share,
            "consecutive_faults": self.consecutive_faults,
            "retry_in": self.retry_in,
        }


def nearest_rank(values: Sequence[float], p: int) -> float | None:
    """The p-th percentile by nearest rank (always a measured value); None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, -(-p * len(ordered) // 100)) - 1]


class BackendHealth:
    """A backend's breaker and its counters."""

    def __init__(self, name: str, breaker: CircuitBreaker) -> None:
        self.name = name
        self.breaker = breaker
        self.requests = 0
        self.successes = 0
        self.skipped = 0
        self.latencies: deque[float] = deque(maxlen=_LATENCIES_KEPT)

    def observe(self, seconds: float, exc: BaseException | None) -> bool:
        """Count one attempt and feed the breaker; True when the backend's probe should run now."""
        self.requests += 1
        self.successes += exc is None
        self.latencies.append(seconds * 1000)
        return self.breaker.record(judge(exc))

    def figures(self, total_served: int) -> BackendFigures:
        """This backend's figures; `total_served` is the downloads served by every backend together."""
        values = list(self.latencies)
        return BackendFigures(
            backend=self.name,
            requests=self.requests,
            successes=self.successes,
            skipped=self.skipped,
            p50_ms=nearest_rank(values, 50),
            p95_ms=nearest_rank(values, 95),
            share=self.successes / total_served if total_served else 0.0,
            breaker=self.breaker.state,
            consecutive_faults=self.breaker.consecutive,
            retry_in=self.breaker.retry_in(),
        )
