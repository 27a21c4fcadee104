"""Errors the core raises: every failure a frontend may show a user is one of these.

```
ServiceError                      base; `code` is the stable string logged in the usage log
├── InvalidLink                   the text is not a TikTok link we can act on
├── LinkNotFound                  a short link leads nowhere (dead code, home-page redirect)
├── UnsafeRedirect                a redirect left the TikTok allow-list; that host was never contacted
├── PostUnavailable               the post exists but cannot be served; `reason` says why
│                                 (private, private_account, deleted, region, age)
├── NotFound                      a user or hashtag that does not exist
│   └── UserNotFound
├── TooLarge                      media over the caller's size limit
├── RateLimited                   a user or chat asked too often; `retry_after` seconds
├── QuotaExceeded                 an upstream's units or daily quota are spent
├── NotConfigured                 no backend or provider is configured for the request
├── ShuttingDown                  the process is stopping; the request was cancelled
├── StoreError                    the SQLite store failed, or refused a database newer than the code
├── LocalResourceError            this machine ran short: disk full, too many open files, read-only or
│                                 forbidden spool directory; `reason` says which (outcome `local:<reason>`)
└── UpstreamError                 an upstream failed (5xx, bad body, transport error)
    ├── UpstreamTimeout           it did not answer in time
    ├── UpstreamUnreachable       it could not be reached at all (refused, reset before an answer)
    ├── TruncatedStream           a stream ended before it was complete
    ├── UpstreamRejected          it refused our credentials or request (4xx we cannot fix by retrying)
    ├── UpstreamServerError       it answered 5xx
    ├── DoorError                 TikTok's door turned this visitor away; another session/proxy may pass
    │   ├── ChallengeFailed       the proof-of-work challenge was not passed (unsolvable, or asked again)
    │   ├── EmptyShell            the page came without the post's data (no video detail)
    │   ├── IpBlocked             status 10204: this address is blocked from the post (not a deleted post)
    │   │   └── NoEgress          (services.download.sessions) every proxy is benched after a block
    │   ├── LoginWall             the page redirected to /login
    │   └── CdnRejected           the video CDN refused the media (403) despite the page's cookie
    └── MultipartError            (services.download.multipart) a multipart body that cannot be parsed:
                                  MalformedMultipart, HeaderTooLarge, TooManyParts, and
                                  MultipartTruncated (also a TruncatedStream)
```
"""

from __future__ import annotations

import errno
from enum import StrEnum


class ServiceError(Exception):
    """Base of every error the core raises; `code` names it in logs and the usage log."""

    code = "error"

    def __init__(self, message: str = "", *, upstream: str | None = None) -> None:
        super().__init__(message or self.__class__.__doc__ or self.code)
        self.message = message or (self.__class__.__doc__ or self.code)
        self.upstream = upstream


class InvalidLink(ServiceError):
    """The text is not a TikTok link the bot can act on."""

    code = "invalid_link"


class LinkNotFound(ServiceError):
    """A short link that leads nowhere."""

    code = "link_not_found"


class UnsafeRedirect(ServiceError):
    """A redirect pointed outside the TikTok allow-list and was not followed."""

    code = "unsafe_redirect"

    def __init__(self, message: str = "", *, location: str = "", upstream: str | None = None) -> None:
        super().__init__(message, upstream=upstream)
        self.location = location


class UnavailableReason(StrEnum):
    """Why a post that exists cannot be served."""

    PRIVATE = "private"
    PRIVATE_ACCOUNT = "private_account"
    DELETED = "deleted"
    REGION = "region"
    AGE = "age"


class PostUnavailable(ServiceError):
    """The post exists (or existed) but cannot be served."""

    code = "unavailable"

    def __init__(self, reason: UnavailableReason, message: str = "", *, upstream: str | None = None) -> None:
        super().__init__(message or f"post unavailable: {reason.value}", upstream=upstream)
        self.reason = reason

    @property
    def detail_code(self) -> str:
        """The code with its reason, as logged: e.g. `unavailable:private`."""
        return f"{self.code}:{self.reason.value}"


class NotFound(ServiceError):
    """A user, hashtag or post that does not exist."""

    code = "not_found"


class UserNotFound(NotFound):
    """No TikTok user by that name."""

    code = "user_not_found"


class TooLarge(ServiceError):
    """The media is larger than the destination accepts."""

    code = "too_large"

    def __init__(self, message: str = "", *, size: int | None = None, limit: int | None = None) -> None:
        super().__init__(message or f"media over the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class RateLimited(ServiceError):
    """Someone asked too often; try again after `retry_after` seconds."""

    code = "rate_limited"

    def __init__(self, retry_after: float, message: str = "") -> None:
        super().__init__(message or f"rate limited for {retry_after:.0f}s")
        self.retry_after = retry_after


class QuotaExceeded(ServiceError):
    """An upstream's units or daily quota are spent."""

    code = "quota_exceeded"


class NotConfigured(ServiceError):
    """No backend or provider is configured for this request."""

    code = "not_configured"


class StoreError(ServiceError):
    """The SQLite store failed, or refused a database it cannot safely use."""

    code = "store_error"


class LocalReason(StrEnum):
    """Which local resource ran out or refused us."""

    DISK_FULL = "disk_full"
    TOO_MANY_FILES = "too_many_files"
    READ_ONLY = "read_only"
    PERMISSION = "permission"
    IO = "io"


_LOCAL_REASONS = {
    errno.ENOSPC: LocalReason.DISK_FULL,
    errno.EDQUOT: LocalReason.DISK_FULL,
    errno.EFBIG: LocalReason.DISK_FULL,
    errno.EMFILE: LocalReason.TOO_MANY_FILES,
    errno.ENFILE: LocalReason.TOO_MANY_FILES,
    errno.EROFS: LocalReason.READ_ONLY,
    errno.EACCES: LocalReason.PERMISSION,
    errno.EPERM: LocalReason.PERMISSION,
}


class LocalResourceError(ServiceError):
    """This machine ran short of a resource (disk, file handles) or may not write where it should."""

    code = "local"

    def __init__(self, reason: LocalReason, message: str = "", *, path: str | None = None) -> None:
        super().__init__(message or f"local resource: {reason.value}")
        self.reason = reason
        self.path = path

    @classmethod
    def from_os_error(cls, exc: OSError, what: str) -> LocalResourceError:
        """The local error an OSError from our own files is: ENOSPC is disk_full, EMFILE too_many_files..."""
        reason = _LOCAL_REASONS.get(exc.errno or 0, LocalReason.IO)
        name = errno.errorcode.get(exc.errno or 0, "EIO")
        return cls(reason, f"{what}: {name} {exc.strerror or exc}", path=exc.filename)

    @property
    def detail_code(self) -> str:
        """The code with its reason, as logged: e.g. `local:disk_full`."""
        return f"{self.code}:{self.reason.value}"


class ShuttingDown(ServiceError):
    """The bot is restarting; the request was cancelled."""

    code = "shutting_down"


class UpstreamError(ServiceError):
    """An upstream failed: 5xx, an unreadable body or a transport error."""

    code = "upstream_error"

    def __init__(self, message: str = "", *, upstream: str | None = None, status: int | None = None) -> None:
        super().__init__(message, upstream=upstream)
        self.status = status


class UpstreamTimeout(UpstreamError):
    """An upstream did not answer in time."""

    code = "upstream_timeout"


class UpstreamUnreachable(UpstreamError):
    """An upstream could not be reached: the connection was refused or dropped before any answer."""


class TruncatedStream(UpstreamError):
    """A stream ended before its closing delimiter or announced length."""

    code = "truncated"


class UpstreamRejected(UpstreamError):
    """An upstream refused our credentials or request."""

    code = "upstream_rejected"


class UpstreamServerError(UpstreamError):
    """An upstream answered with a server error (5xx)."""

    code = "upstream_5xx"


class DoorError(UpstreamError):
    """TikTok's front door turned this visitor away; another session or proxy may get through."""

    code = "door"


class ChallengeFailed(DoorError):
    """TikTok's anti-bot challenge could not be passed."""

    code = "challenge_failed"


class EmptyShell(DoorError):
    """TikTok served the page without the post's data."""

    code = "empty_shell"


class IpBlocked(DoorError):
    """TikTok blocks this address from the post (status 10204)."""

    code = "ip_blocked"


class LoginWall(DoorError):
    """TikTok wants a login before it shows the post."""

    code = "login_wall"


class CdnRejected(DoorError):
    """TikTok's video CDN refused the media."""

    code = "cdn_rejected"


def error_code(exc: BaseException) -> str:
    """The usage-log outcome for an exception: its code, with a reason where it has one."""
    if isinstance(exc, PostUnavailable | LocalResourceError):
        return exc.detail_code
    if isinstance(exc, ServiceError):
        return exc.code
    return "internal"
