"""Bot API error answers, worded as the real server words them."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A failed Bot API call: `{"ok": false, "error_code": ..., "description": ...}`."""

    def __init__(self, code: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters

    def body(self) -> dict[str, Any]:
        """The JSON body Telegram answers with."""
        body: dict[str, Any] = {"ok": False, "error_code": self.code, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def bad_request(message: str) -> ApiError:
    """400 `Bad Request: <message>`."""
    return ApiError(400, f"Bad Request: {message}")


def forbidden(message: str) -> ApiError:
    """403 `Forbidden: <message>`."""
    return ApiError(403, f"Forbidden: {message}")


def too_many_requests(retry_after: int) -> ApiError:
    """429 flood control with `parameters.retry_after`."""
    return ApiError(429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after})


def conflict(message: str) -> ApiError:
    """409 `Conflict: <message>`."""
    return ApiError(409, f"Conflict: {message}")


def not_found() -> ApiError:
    """404 for unknown methods and paths, as api.telegram.org answers."""
    return ApiError(404, "Not Found")


def unauthorized() -> ApiError:
    """401 for a token the server does not know."""
    return ApiError(401, "Unauthorized")


def entity_too_large() -> ApiError:
    """413 for an upload over the server's limit."""
    return ApiError(413, "Request Entity Too Large")


WRONG_FILE = "wrong file identifier/HTTP URL specified"
# A file_id whose file reference is outdated (media groups name the item: FILE_REFERENCE_0_EXPIRED).
FILE_REFERENCE_EXPIRED = "FILE_REFERENCE_EXPIRED"
