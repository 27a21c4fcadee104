"""A sans-IO multipart/form-data parser: feed it bytes as they arrive, get part events back.

The emulator streams uploads of up to 2000 MB through it without holding a part in memory; it does no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

MAX_HEADERS = 16 * 1024


class MultipartError(ValueError):
    """The body is not well-formed multipart/form-data."""


@dataclass(frozen=True, slots=True)
class PartStart:
    """A part begins; `filename` is None for plain fields."""

    name: str
    filename: str | None
    content_type: str | None


@dataclass(frozen=True, slots=True)
class PartData:
    """Some bytes of the current part."""

    data: bytes


@dataclass(frozen=True, slots=True)
class PartEnd:
    """The current part is complete."""


Event = PartStart | PartData | PartEnd

_PARAM = re.compile(r';\s*([^=;\s]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


def boundary_of(content_type: str) -> bytes:
    """The boundary parameter of a multipart Content-Type header."""
    for key, value in _PARAM.findall(";" + content_type.split(";", 1)[-1]):
        if key.lower() == "boundary":
            boundary = value.strip()
            if boundary.startswith('"'):
                boundary = boundary[1:-1]
            if boundary:
                return bytes(boundary.encode("latin-1"))
    raise MultipartError("multipart body without a boundary")


def _params(header: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for key, raw in _PARAM.findall(header):
        value = raw.strip()
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[key.lower()] = value
    return params


def _part_start(raw: bytes) -> PartStart:
    headers: dict[str, str] = {}
    for line in raw.decode("utf-8", "replace").split("\r\n"):
        if ":" in line:
            key, value = line.split(":", 1)
            headers[key.strip().lower()] = value.strip()
    disposition = headers.get("content-disposition")
    if disposition is None:
        raise MultipartError("a part without Content-Disposition")
    params = _params(disposition)
    filename = params.get("filename")
    extended = params.get("filename*")
    if extended and "''" in extended:
        filename = unquote(extended.split("''", 1)[1])
    return PartStart(params.get("name", ""), filename, headers.get("content-type"))


class MultipartParser:
    """Incremental parser: `feed()` chunks in any sizes, then `close()`."""

    def __init__(self, boundary: bytes) -> None:
        self._dash_boundary = b"--" + boundary
        self._delimiter = b"\r\n--" + boundary
        self._buffer = bytearray()
        self._state = "preamble"
        self.epilogue = 0  # bytes seen after the close delimiter's "--"

    def feed(self, data: bytes) -> list[Event]:
        """Parse more of the body; returns the events it completes."""
        self._buffer += data
        events: list[Event] = []
        while True:
            if self._state == "preamble":
                index = self._buffer.find(self._dash_boundary)
                if index < 0:
                    # Keep only what could still be the start of the first boundary.
                    del self._buffer[: max(0, len(self._buffer) - len(self._dash_boundary))]
                    return events
                del self._buffer[: index + len(self._dash_boundary)]
                self._state = "after_boundary"
            elif self._state == "after_boundary":
                if len(self._buffer) < 2:
                    return events
                if self._buffer[:2] == b"--":
                    del self._buffer[:2]
                    self._state = "done"
                    continue
                end = self._buffer.find(b"\r\n")
                if end < 0:
                    if len(self._buffer) > 1024:
                        raise MultipartError("garbage after a boundary")
                    return events
                if self._buffer[:end].strip(b" \t"):
                    raise MultipartError("garbage after a boundary")
                del self._buffer[: end + 2]
                self._state = "headers"
            elif self._state == "headers":
                end = self._buffer.find(b"\r\n\r\n")
                if end < 0:
                    if self._buffer.startswith(b"\r\n"):  # a part with no headers at all
                        raise MultipartError("a part without Content-Disposition")
                    if len(self._buffer) > MAX_HEADERS:
                        raise MultipartError("part headers are too long")
                    return events
                events.append(_part_start(bytes(self._buffer[:end])))
                del self._buffer[: end + 4]
                self._state = "body"
            elif self._state == "body":
                index = self._buffer.find(self._delimiter)
                if index < 0:
                    keep = len(self._delimiter) - 1
                    if len(self._buffer) > keep:
                        events.append(PartData(bytes(self._buffer[:-keep])))
                        del self._buffer[:-keep]
                    return events
                if index:
                    events.append(PartData(bytes(self._buffer[:index])))
                events.append(PartEnd())
                del self._buffer[: index + len(self._delimiter)]
                self._state = "after_boundary"
            else:  # done: the epilogue is counted, not kept
                self.epilogue += len(self._buffer)
                self._buffer.clear()
                return events

    @property
    def done(self) -> bool:
        """Whether the close delimiter has been read."""
        return self._state == "done"

    def close(self) -> None:
        """The body ended; raise if it ended before the closing boundary."""
        if self._state != "done":
            raise MultipartError("the multipart body ended early")
