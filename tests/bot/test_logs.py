"""Logs: one structlog configuration; JSON or console lines with the bound context; never a secret."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest
from structlog.contextvars import bind_contextvars, bound_contextvars

from bot.logs import build_formatter, log_context, setup_logging

SECRETS = ["123456:SECRET-TOKEN", "ed-secret"]


def _capture(fmt: str, secrets: list[str]) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(build_formatter(fmt, secrets))
    logger = logging.getLogger(f"test-logs-{id(stream)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream


@pytest.fixture
def root_json() -> Iterator[io.StringIO]:
    """The process's logging as `run` sets it up with LOG__FORMAT=json, into a buffer; restored after."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    setup_logging("INFO", "json", SECRETS, stream=stream)
    try:
        yield stream
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_with_context_and_no_secret() -> None:
    logger, stream = _capture("json", SECRETS)
    logger.info(
        "sent %s via https://api.telegram.org/bot123456:SECRET-TOKEN/sendVideo",
        "video",
        extra={"platform": "telegram", "chat": 42, "action": "link", "backend": "ttsave"},
    )
    logger.warning("GET https://ensembledata.com/apis/tt/user/info?token=other-unknown&username=x")
    try:
        raise ValueError("token ed-secret leaked")
    except ValueError:
        logger.exception("failed")
    lines = _lines(stream)
    assert lines[0]["platform"] == "telegram"
    assert lines[0]["chat"] == 42
    assert lines[0]["backend"] == "ttsave"
    assert str(lines[0]["message"]).startswith("sent video")
    text = stream.getvalue()
    assert "SECRET-TOKEN" not in text
    assert "other-unknown" not in text
    assert "ed-secret" not in text
    assert "ValueError" in str(lines[2]["exception"])


def test_json_line_shape_bound_context_first() -> None:
    logger, stream = _capture("json", [])
    with bound_contextvars(platform="discord", update="message:9", chat=7, user=None):
        logger.info("link ok", extra={"action": "link", "outcome": "ok", "latency_ms": 12.5, "key": "x"})
    (line,) = _lines(stream)
    # The keys a log pipeline reads, in a fixed order; None (the user here) and non-context extras left out.
    assert list(line) == [
        "time",
        "level",
        "logger",
        "message",
        "platform",
        "update",
        "chat",
        "action",
        "outcome",
        "latency_ms",
    ]
    assert line["time"].endswith("+00:00") and line["level"] == "info"  # type: ignore[union-attr]
    assert (line["platform"], line["update"], line["chat"]) == ("discord", "message:9", 7)


def test_console_line_appends_context() -> None:
    logger, stream = _capture("console", [])
    with bound_contextvars(platform="discord"):
        logger.info("hello", extra={"action": "post"})
    line = stream.getvalue().strip()
    assert line.endswith(f"INFO    {logger.name}: hello platform=discord action=post")


def test_console_traceback_is_redacted_too() -> None:
    logger, stream = _capture("console", SECRETS)
    with bound_contextvars(link="https://api.telegram.org/bot123456:SECRET-TOKEN/getMe"):
        try:
            raise RuntimeError("with ed-secret inside")
        except RuntimeError:
            logger.exception("boom")
    text = stream.getvalue()
    assert "RuntimeError: with *** inside" in text and "link=https://api.telegram.org/bot***/getMe" in text
    assert "SECRET" not in text and "ed-secret" not in text


def test_context_is_restored_after_the_block() -> None:
    logger, stream = _capture("json", [])
    bind_contextvars(platform="telegram")
    try:
        with log_context(update=1, chat=5):
            with log_context(chat=None):  # an inner None hides the outer chat
                logger.info("inner")
            logger.info("middle")
        logger.info("outer")
    finally:
        bind_contextvars(platform=None)
    inner, middle, outer = _lines(stream)
    assert "chat" not in inner and inner["update"] == 1
    assert (middle["update"], middle["chat"]) == (1, 5)
    assert "update" not in outer and "chat" not in outer and outer["platform"] == "telegram"


async def test_each_task_keeps_its_own_context() -> None:
    logger, stream = _capture("json", [])

    async def handler(chat: int) -> None:
        with log_context(chat=chat):
            await asyncio.sleep(0)  # the other handler runs meanwhile
            logger.info("reply")

    await asyncio.gather(handler(1), handler(2))
    assert sorted(line["chat"] for line in _lines(stream)) == [1, 2]  # type: ignore[type-var]


def test_library_loggers_come_out_in_the_same_shape(root_json: io.StringIO) -> None:
    with log_context(platform="telegram", update=77):
        logging.getLogger("aiogram.event").warning("Update id=77 is handled. Duration 5 ms by bot id=1")
        logging.getLogger("discord.gateway").warning("Shard ID None has connected to Gateway")
        logging.getLogger("httpx").info(
            "HTTP Request: GET https://x/?token=ed-secret"
        )  # below WARNING: not shown
    lines = _lines(root_json)
    assert [line["logger"] for line in lines] == ["aiogram.event", "discord.gateway"]
    assert all(line["platform"] == "telegram" and line["update"] == 77 for line in lines)


def test_a_structlog_logger_ends_in_the_same_handler(root_json: io.StringIO) -> None:
    import structlog

    with log_context(chat=3):
        structlog.get_logger("tiktok_bot.test").warning("native %s", "line", action="probe")
    (line,) = _lines(root_json)
    assert line == {
        "time": line["time"],
        "level": "warning",
        "logger": "tiktok_bot.test",
        "message": "native line",
        "chat": 3,
        "action": "probe",
    }
