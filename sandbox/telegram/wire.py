"""Reading Bot API calls off the wire: query string, urlencoded, JSON or streamed multipart bodies."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import StreamReader, hdrs

from sandbox.blobs import Pace
from sandbox.telegram.errors import ApiError, bad_request, entity_too_large
from sandbox.telegram.media import Spool, Upload
from sandbox.telegram.multipart import MultipartError, MultipartParser, PartData, PartStart, boundary_of

CHUNK = 256 * 1024
MAX_FIELD = 1024 * 1024  # a plain (non-file) field; Telegram's own limits are far lower
MAX_FORM = 16 * 1024 * 1024  # a whole urlencoded or JSON body


@dataclass(slots=True)
class Body:
    """The decoded parameters of one call and the files it carried."""

    params: dict[str, Any] = field(default_factory=dict)
    uploads: dict[str, Upload] = field(default_factory=dict)


async def _read_capped(stream: StreamReader, cap: int) -> bytes:
    data = bytearray()
    while chunk := await stream.read(CHUNK):
        data += chunk
        if len(data) > cap:
            while await stream.read(CHUNK):  # drain, so the client can read our answer
                pass
            raise entity_too_large()
    return bytes(data)


async def read_body(
    headers: Mapping[str, str],
    stream: StreamReader,
    query: Mapping[str, str],
    spool_dir: Path,
    file_limit: int,
    first_byte: Callable[[], None] | None = None,
    pace: Pace | None = None,
) -> Body:
    """Decode a call; files go to `spool_dir`; any file over `file_limit` bytes answers 413 after draining.

    `first_byte` is called when the first bytes of a multipart body arrive (tests see uploads overlap);
    `pace` holds the reading of a multipart body to a network-like rate (the bot's uplink, in benchmarks).
    """
    body = Body(params=dict(query))
    ctype = headers.get(hdrs.CONTENT_TYPE, "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        await _read_multipart(headers, stream, spool_dir, file_limit, body, first_byte, pace)
    elif ctype == "application/json":
        raw = await _read_capped(stream, MAX_FORM)
        if raw.strip():
            try:
                decoded = json.loads(raw)
            except ValueError:
                raise bad_request("can't parse JSON object") from None
            if not isinstance(decoded, dict):
                raise bad_request("JSON object expected")
            body.params.update(decoded)
    elif ctype == "application/x-www-form-urlencoded":
        raw = await _read_capped(stream, MAX_FORM)
        body.params.update(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    else:
        await _read_capped(stream, MAX_FORM)
    return body


# What follows a multipart body's close delimiter: the CRLF every client ends it with. With a Content-Length,
# anything else means the length is wrong: more than the body would leave the request hanging (the server says
# so at once), less cuts the body short.
_EPILOGUE = b"\r\n"


async def _read_multipart(
    headers: Mapping[str, str],
    stream: StreamReader,
    spool_dir: Path,
    file_limit: int,
    body: Body,
    first_byte: Callable[[], None] | None = None,
    pace: Pace | None = None,
) -> None:
    try:
        parser = MultipartParser(boundary_of(headers.get(hdrs.CONTENT_TYPE, "")))
    except MultipartError as exc:
        raise bad_request(str(exc)) from None
    spool: Spool | None = None
    field: bytearray | None = None
    name = ""
    too_large = False
    declared = _content_length(headers)
    consumed = 0
    try:
        while chunk := await stream.read(CHUNK):
            if consumed == 0 and first_byte is not None:
                first_byte()
            consumed += len(chunk)
            if pace is not None:
                await pace.sent(len(chunk))
            try:
                events = parser.feed(chunk)
            except MultipartError as exc:
                raise bad_request(str(exc)) from None
            if parser.done and declared is not None:
                still_due = max(0, len(_EPILOGUE) - parser.epilogue)
                if declared - consumed > still_due or parser.epilogue > len(_EPILOGUE):
                    raise bad_request(_length_mismatch(declared, consumed + still_due))
            for event in events:
                if isinstance(event, PartStart):
                    name = event.name
                    if event.filename is None:
                        field = bytearray()
                    elif not too_large:
                        spool = Spool(spool_dir, name, event.filename, event.content_type)
                elif isinstance(event, PartData):
                    if field is not None:
                        field += event.data
                        if len(field) > MAX_FIELD:
                            raise bad_request(f'parameter "{name}" is too long')
                    elif spool is not None:
                        spool.write(event.data)
                        if spool.size > file_limit:
                            # Keep reading (and discarding) so the client gets to read the 413.
                            too_large = True
                            spool.discard()
                            spool = None
                elif field is not None:
                    body.params[name] = field.decode("utf-8", "replace")
                    field = None
                elif spool is not None:
                    body.uploads[name] = spool.finish()
                    spool = None
        try:
            parser.close()
        except MultipartError as exc:
            # With a Content-Length shorter than the body, the body "ends" before its close delimiter.
            detail = f" (Content-Length {declared}, {consumed} bytes read)" if declared is not None else ""
            raise bad_request(f"{exc}{detail}") from None
        if declared is not None and parser.epilogue != len(_EPILOGUE):
            raise bad_request(_length_mismatch(declared, consumed - parser.epilogue + len(_EPILOGUE)))
    except BaseException:
        if spool is not None:
            spool.discard()
        for upload in body.uploads.values():
            upload.path.unlink(missing_ok=True)
        raise
    if too_large:
        for upload in body.uploads.values():
            upload.path.unlink(missing_ok=True)
        raise entity_too_large()


def _length_mismatch(declared: int, actual: int) -> str:
    return f"Content-Length is {declared} but the multipart body is {actual} bytes"


def _content_length(headers: Mapping[str, str]) -> int | None:
    value = headers.get(hdrs.CONTENT_LENGTH)
    return int(value) if value is not None and value.strip().isdigit() else None


_INT_PREFIX = re.compile(r"^\s*[+-]?\d+")
_TRUE = {"true", "1", "yes"}


class Params:
    """Typed access to a call's parameters, lenient the way the Bot API server is."""

    def __init__(self, body: Body) -> None:
        self.raw = body.params
        self.uploads = body.uploads

    def has(self, name: str) -> bool:
        """Whether the parameter is present and not empty."""
        value = self.raw.get(name)
        return value is not None and value != ""

    def text(self, name: str, default: str | None = None) -> str | None:
        """The parameter as text (numbers and booleans as the form encoding would spell them)."""
        value = self.raw.get(name)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, dict | list):
            return json.dumps(value)
        return str(value)

    def integer(self, name: str, default: int | None = None) -> int | None:
        """The parameter as an integer; a malformed value reads as its numeric prefix, or 0."""
        value = self.raw.get(name)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            return int(value)
        match = _INT_PREFIX.match(str(value))
        return int(match.group(0)) if match else 0

    def flag(self, name: str) -> bool:
        """The parameter as a flag (`true`, `1`, `yes`)."""
        value = self.raw.get(name)
        if isinstance(value, bool):
            return value
        if isinstance(value, int):
            return value != 0
        return str(value).strip().lower() in _TRUE if value is not None else False

    def decoded(self, name: str, what: str | None = None) -> Any:
        """A nested field: a JSON string on form bodies, a native value on JSON bodies; None if absent."""
        value = self.raw.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                raise bad_request(f"can't parse {what or name} JSON object") from None
        return value

    def chat_id(self, name: str = "chat_id") -> int | str | None:
        """`chat_id` as an integer or an `@username`."""
        value = self.raw.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        text = str(value).strip()
        if re.fullmatch(r"[+-]?\d+", text):
            return int(text)
        return text


def error_of(exc: BaseException) -> ApiError:
    """The ApiError an exception stands for (unexpected ones become 500s)."""
    if isinstance(exc, ApiError):
        return exc
    return ApiError(500, f"Internal Server Error: {type(exc).__name__}: {exc}")
