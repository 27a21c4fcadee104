"""Logs: JSON lines carry context fields; secrets never reach the output."""

from __future__ import annotations

import io
import json
import logging

from bot.logs import ConsoleFormatter, JsonFormatter, RedactSecrets


def _capture(formatter: logging.Formatter, secrets: list[str]) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactSecrets(secrets))
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"test-logs-{id(stream)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream


def test_json_lines_with_context_and_no_secret() -> None:
    logger, stream = _capture(JsonFormatter(), ["123456:SECRET-TOKEN", "ed-secret"])
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
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["platform"] == "telegram"
    assert lines[0]["chat"] == 42
    assert lines[0]["backend"] == "ttsave"
    assert lines[0]["message"].startswith("sent video")
    text = stream.getvalue()
    assert "SECRET-TOKEN" not in text
    assert "other-unknown" not in text
    assert "ed-secret" not in text
    assert "ValueError" in lines[2]["exception"]


def test_console_format_appends_context() -> None:
    logger, stream = _capture(ConsoleFormatter("%(levelname)s %(message)s"), [])
    logger.info("hello", extra={"platform": "discord", "action": "post"})
    assert stream.getvalue().strip() == "INFO hello platform=discord action=post"
