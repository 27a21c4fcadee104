"""Reading Bot API calls off the wire: query string, urlencoded, JSON or streamed multipart bodies."""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qsl

from aiohttp import BodyPartReader, MultipartReader, StreamReader, hdrs
from aiohttp.helpers import parse_mimetype
from aiohttp.http_exceptions import HttpProcessingError

from sandbox.blobs import Pace
from sandbox.telegram.errors import ApiError, bad_request, entity_too_large
from sandbox.telegram.media import Spool, Upload

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


class _Metered:
    """The request stream as aiohttp's multipart reader sees it: counted, paced, checked at the close.

    aiohttp reads ahead of a part's data and two lines past the close delimiter, so a Content-Length longer
    than the body would leave it waiting for bytes that never come; a real server says so as soon as the close
    delimiter shows (a boundary never occurs inside a part, so its first sight is the end of the body).
    """

    def __init__(
        self,
        stream: StreamReader,
        boundary: bytes,
        declared: int | None,
        first_byte: Callable[[], None] | None,
        pace: Pace | None,
    ) -> None:
        self._stream = stream
        self._close = b"\r\n--" + boundary + b"--"
        self._declared = declared
        self._first_byte = first_byte
        self._pace = pace
        self._tail = (
            b"\r\n"  # the last bytes read, to find a delimiter split across reads (a body starts fresh)
        )
        self._checked = declared is None
        self.consumed = 0

    async def _count(self, data: bytes) -> bytes:
        if data and self.consumed == 0 and self._first_byte is not None:
            self._first_byte()
        if not self._checked:
            self._check_length(data)
        self.consumed += len(data)
        if self._pace is not None:
            await self._pace.sent(len(data))
        return data

    def _check_length(self, data: bytes) -> None:
        keep = len(self._close) - 1
        seam = self._tail + data[:keep]
        at = seam.find(self._close)
        if at >= 0:
            end = self.consumed - len(self._tail) + at + len(self._close)
        else:
            at = data.find(self._close)
            end = self.consumed + at + len(self._close) if at >= 0 else -1
        if end < 0:
            self._tail = seam[-keep:] if len(data) < keep else data[-keep:]
            return
        self._checked = True
        assert self._declared is not None
        actual = end + 2  # the CRLF every client ends the body with
        if actual != self._declared:
            raise bad_request(_length_mismatch(self._declared, actual))

    async def read(self, n: int = -1) -> bytes:
        return await self._count(await self._stream.read(n))

    async def readline(self, *, max_line_length: int | None = None) -> bytes:
        return await self._count(await self._stream.readline(max_line_length=max_line_length))

    def at_eof(self) -> bool:
        return self._stream.at_eof()

    def unread_data(self, data: bytes) -> None:
        self.consumed -= len(data)
        self._tail = b""
        with warnings.catch_warnings():
            # Deprecated for applications; aiohttp's own multipart reader is built on it.
            warnings.simplefilter("ignore", DeprecationWarning)
            self._stream.unread_data(data)


async def _read_multipart(
    headers: Mapping[str, str],
    stream: StreamReader,
    spool_dir: Path,
    file_limit: int,
    body: Body,
    first_byte: Callable[[], None] | None = None,
    pace: Pace | None = None,
) -> None:
    declared = _content_length(headers)
    spool: Spool | None = None
    too_large = False
    boundary = parse_mimetype(headers.get(hdrs.CONTENT_TYPE, "")).parameters.get("boundary", "")
    if not boundary:
        raise bad_request("multipart body without a boundary")
    metered = _Metered(stream, boundary.encode("latin-1"), declared, first_byte, pace)
    try:
        # The reader only calls read / readline / at_eof / unread_data, all of which _Metered passes on.
        reader = MultipartReader(headers, cast(StreamReader, metered))
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or part.headers.get(hdrs.CONTENT_DISPOSITION) is None:
                raise bad_request("a part without Content-Disposition")
            name = part.name or ""
            if part.filename is None:
                field = bytearray()
                while chunk := await part.read_chunk(CHUNK):
                    field += chunk
                    if len(field) > MAX_FIELD:
                        raise bad_request(f'parameter "{name}" is too long')
                _check_complete(part, declared, metered.consumed)
                body.params[name] = field.decode("utf-8", "replace")
                continue
            spool = (
                None
                if too_large
                else Spool(spool_dir, name, part.filename, part.headers.get(hdrs.CONTENT_TYPE))
            )
            while chunk := await part.read_chunk(CHUNK):
                if spool is None:
                    continue  # past the limit: read on, so the client gets to read the 413
                spool.write(chunk)
                if spool.size > file_limit:
                    too_large = True
                    spool.discard()
                    spool = None
            _check_complete(part, declared, metered.consumed)
            if spool is not None:
                body.uploads[name] = spool.finish()
                spool = None
        while await stream.read(CHUNK):  # an epilogue past aiohttp's two lines (chunked bodies)
            pass
    except BaseException as exc:
        if spool is not None:
            spool.discard()
        for upload in body.uploads.values():
            upload.path.unlink(missing_ok=True)
        if isinstance(exc, ValueError | HttpProcessingError):
            raise bad_request(f"malformed multipart body: {exc}") from None
        raise
    if too_large:
        for upload in body.uploads.values():
            upload.path.unlink(missing_ok=True)
        raise entity_too_large()


def _check_complete(part: BodyPartReader, declared: int | None, consumed: int) -> None:
    """A part whose reads ran dry before its closing boundary: the body ended early (or was cut short)."""
    if not part.at_eof():
        # With a Content-Length shorter than the body, the body "ends" before its close delimiter.
        detail = f" (Content-Length {declared}, {consumed} bytes read)" if declared is not None else ""
        raise bad_request(f"the multipart body ended early{detail}")


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
