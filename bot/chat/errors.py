"""What a user reads when something fails: one friendly, localised line per error kind."""

from __future__ import annotations

import math

from bot.chat.i18n import t
from services.download.ttsave import NAME as TTSAVE
from services.errors import (
    CdnRejected,
    ChallengeFailed,
    EmptyShell,
    InvalidLink,
    IpBlocked,
    LinkNotFound,
    LocalResourceError,
    LoginWall,
    NotConfigured,
    NotFound,
    PostUnavailable,
    QuotaExceeded,
    RateLimited,
    ServiceError,
    ShuttingDown,
    StoreError,
    TooLarge,
    TruncatedStream,
    UnsafeRedirect,
    UpstreamError,
    UpstreamRejected,
    UpstreamServerError,
    UpstreamTimeout,
    UserNotFound,
)
from services.metadata.ensembledata import UPSTREAM as ENSEMBLEDATA
from services.metadata.research import UPSTREAM as RESEARCH


def human_size(size: int | None) -> str:
    """A byte count in the units Telegram and Discord state their limits in: 1 MB = 2**20 bytes."""
    # Both platforms' "50 MB" / "10 MB" are binary megabytes: in decimal units a 48 MiB video would read as
    # "50.3 MB" next to a limit of "50.0 MB".
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


# The metadata providers: when they fail, the stats services failed, not TikTok.
STATS_UPSTREAMS = frozenset({ENSEMBLEDATA, RESEARCH})


def error_text(exc: BaseException, lang: str) -> str:
    """The reply for a failure: specific for known errors, a short apology for anything else."""
    match exc:
        # Who failed comes first: a stats provider or the download service is never worded as TikTok.
        case QuotaExceeded() if exc.upstream == ENSEMBLEDATA:
            return t(lang, "error.stats_out_of_units")
        case UpstreamTimeout() if exc.upstream in STATS_UPSTREAMS:
            return t(lang, "error.stats_timeout")
        case UpstreamError() if exc.upstream in STATS_UPSTREAMS:
            return t(lang, "error.stats_unavailable")
        case UpstreamTimeout() if exc.upstream == TTSAVE:
            return t(lang, "error.download_service_timeout")
        case UpstreamRejected() if exc.upstream == TTSAVE:
            return t(lang, "error.download_service_rejected")
        case TruncatedStream():
            return t(lang, "error.truncated")
        case UpstreamError() if exc.upstream == TTSAVE:
            return t(lang, "error.download_service")
        case RateLimited():
            return t(lang, "error.rate_limited", seconds=max(1, math.ceil(exc.retry_after)))
        case PostUnavailable():
            return t(lang, f"error.{exc.detail_code}")
        case TooLarge():
            return t(lang, "error.too_large", size=human_size(exc.size), limit=human_size(exc.limit))
        case UserNotFound():
            return t(lang, "error.user_not_found")
        case NotFound():
            return t(lang, "error.not_found")
        case InvalidLink():
            return t(lang, "error.invalid_link")
        case LinkNotFound():
            return t(lang, "error.link_not_found")
        case UnsafeRedirect():
            return t(lang, "error.unsafe_redirect")
        case QuotaExceeded():
            return t(lang, "error.quota_exceeded")
        case NotConfigured():
            return t(lang, "error.not_configured")
        case ShuttingDown():
            return t(lang, "error.shutting_down")
        case IpBlocked():  # also NoEgress: every proxy blocked. A block, never "deleted".
            return t(lang, "error.ip_blocked")
        case ChallengeFailed():
            return t(lang, "error.challenge_failed")
        case EmptyShell():
            return t(lang, "error.empty_shell")
        case LoginWall():
            return t(lang, "error.login_wall")
        case CdnRejected():
            return t(lang, "error.cdn_rejected")
        case UpstreamServerError():
            return t(lang, "error.upstream_5xx")
        case UpstreamTimeout():
            return t(lang, "error.upstream_timeout")
        case LocalResourceError():  # the operator's log says which resource; the user only needs to wait
            return t(lang, "error.local")
        case StoreError():
            return t(lang, "error.store")
        case UpstreamRejected():
            return t(lang, "error.upstream_rejected")
        case UpstreamError():
            return t(lang, "error.upstream")
        case ServiceError():
            return t(lang, "error.internal")
    return t(lang, "error.internal")


def group_error_text(exc: BaseException, lang: str) -> str:
    """The one short line a group sees for a failure."""
    return t(lang, "group.failed", reason=error_text(exc, lang))
