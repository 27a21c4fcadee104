"""Structured logging, configured once: structlog over the standard library, console or JSON lines.

Every logger — ours, aiogram's, discord.py's, httpx's — goes through the standard library to one handler whose
`structlog.stdlib.ProcessorFormatter` adds the context bound to the running task (`structlog.contextvars`:
the frontends bind platform, update, chat and user where an interaction enters), the context fields passed as
`extra=`, level, logger and time; renders a JSON object (LOG__FORMAT=json) or a readable line (console); and
masks secrets in the rendered line, whatever part of it they reached.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

# The context a line may carry, in the order a JSON line lists them (bound context first, then the extras).
CONTEXT_FIELDS = (
    "platform",
    "update",
    "chat",
    "user",
    "link",
    "action",
    "target",
    "backend",
    "outcome",
    "latency_ms",
)
_TOKEN_QUERY = re.compile(r"((?:token|client_secret|access_token)=)[^&\s\"']+", re.IGNORECASE)
_BOT_PATH = re.compile(r"/bot\d+:[\w-]+")


class RedactSecrets:
    """Masks known secret values, `token=` query values and Bot API token paths in a rendered line."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        """`text` with every secret masked."""
        for secret in self.secrets:
            text = text.replace(secret, "***")
        text = _TOKEN_QUERY.sub(r"\1***", text)
        return _BOT_PATH.sub("/bot***", text)

    def __call__(self, logger: WrappedLogger, method: str, line: Any) -> str:
        """The last processor: the whole rendered line (message, context, traceback) redacted at once."""
        return self.redact(str(line))


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Bind `fields` to every line logged inside the block (a None hides an outer value), then restore them.

    structlog's `bound_contextvars` with its tokens kept: a quarter of its cost, once per update.
    """
    tokens = structlog.contextvars.bind_contextvars(**fields)
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)


def _add_time(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
    """When the record was made (not when it was formatted), UTC, to the millisecond."""
    record = event.get("_record")
    created = record.created if record is not None else time.time()
    event["timestamp"] = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    return event


def _drop_unset(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
    """Leave out context fields that are None (an inline query has no chat), as a line never showed them."""
    for name in [k for k, v in event.items() if v is None]:
        del event[name]
    return event


def _json_shape(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
    """time, level, logger, message, then the context fields in their order, then the exception."""
    shaped: EventDict = {
        "time": event.pop("timestamp", None),
        "level": event.pop("level", None),
        "logger": event.pop("logger", None),
        "message": event.pop("event", None),
    }
    for name in CONTEXT_FIELDS:
        if name in event:
            shaped[name] = event.pop(name)
    exception = event.pop("exception", None)
    shaped.update(event)
    if exception is not None:
        shaped["exception"] = exception
    return shaped


def _console_line(logger: WrappedLogger, method: str, event: EventDict) -> str:
    """`time level logger: message key=value…` and the traceback below: plain text for a file or a pipe."""
    head = (
        f"{event.pop('timestamp', '')} {str(event.pop('level', '')).upper():<7} "
        f"{event.pop('logger', '')}: {event.pop('event', '')}"
    )
    exception = event.pop("exception", None)
    fields = " ".join(f"{key}={value}" for key, value in event.items())
    line = f"{head} {fields}" if fields else head
    return f"{line}\n{exception}" if exception else line


def shared_processors() -> list[Processor]:
    """What every line gets, from a standard-library record or a structlog logger alike."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.ExtraAdder(CONTEXT_FIELDS),
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _add_time,
        _drop_unset,
    ]


def build_formatter(
    fmt: str = "console", secrets: Iterable[str] = (), *, colors: bool = False
) -> structlog.stdlib.ProcessorFormatter:
    """The formatter of the process's one handler: JSON objects or console lines, secrets masked."""
    render: Sequence[Processor]
    if fmt == "json":
        render = [
            structlog.processors.format_exc_info,
            _json_shape,
            structlog.processors.JSONRenderer(ensure_ascii=False, default=str),
        ]
    elif colors:
        # Someone reading a terminal: structlog's aligned, coloured lines.
        render = [
            structlog.dev.ConsoleRenderer(
                colors=True, exception_formatter=structlog.dev.plain_traceback, sort_keys=False
            )
        ]
    else:
        # A file, a pipe, `docker logs`: the same fields as one plain line, at a fifth of the renderer's cost.
        render = [structlog.processors.format_exc_info, _console_line]
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *render,
            RedactSecrets(secrets),
        ],
    )


def setup_logging(
    level: str = "INFO", fmt: str = "console", secrets: Iterable[str] = (), *, stream: TextIO | None = None
) -> None:
    """Configure the root logger and structlog once for the process (LOG__LEVEL, LOG__FORMAT)."""
    out = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(out)
    handler.setFormatter(build_formatter(fmt, secrets, colors=fmt != "json" and out.isatty()))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request URL at INFO; keep it at WARNING unless debugging.
    logging.getLogger("httpx").setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    # A structlog logger, if code asks for one, ends in the same handler with the same fields.
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.stdlib.PositionalArgumentsFormatter(),
            *shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        # Not structlog.stdlib.LoggerFactory: it swaps the class of every logger made afterwards for one that
        # walks the stack on each call; no line here shows the caller's frame.
        logger_factory=logging.getLogger,
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
