"""Structured logging: console or JSON lines, context fields on every line, secrets redacted."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

CONTEXT_FIELDS = ("platform", "chat", "user", "action", "target", "backend", "outcome", "latency_ms")
_TOKEN_QUERY = re.compile(r"((?:token|client_secret|access_token)=)[^&\s\"']+", re.IGNORECASE)
_BOT_PATH = re.compile(r"/bot\d+:[\w-]+")


class RedactSecrets(logging.Filter):
    """Replaces known secret values, `token=` query values and Bot API token paths in every record."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        """`text` with every secret masked."""
        for secret in self.secrets:
            text = text.replace(secret, "***")
        text = _TOKEN_QUERY.sub(r"\1***", text)
        return _BOT_PATH.sub("/bot***", text)

    def filter(self, record: logging.LogRecord) -> bool:
        """Render the message once, redacted, so formatters never see the raw secret."""
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message or record.args:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the context fields present."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the record as JSON."""
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                data[name] = value
        if record.exc_text:
            data["exception"] = record.exc_text
        elif record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


class ConsoleFormatter(logging.Formatter):
    """Readable lines: time level logger message key=value…"""

    def format(self, record: logging.LogRecord) -> str:
        """Render the record with its context fields appended."""
        base = super().format(record)
        extras = " ".join(
            f"{name}={getattr(record, name)}"
            for name in CONTEXT_FIELDS
            if getattr(record, name, None) is not None
        )
        return f"{base} {extras}" if extras else base


def setup_logging(level: str = "INFO", fmt: str = "console", secrets: Iterable[str] = ()) -> None:
    """Configure the root logger once for the process."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactSecrets(secrets))
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else ConsoleFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request URL at INFO; keep it at WARNING unless debugging.
    logging.getLogger("httpx").setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
