"""A sans-IO incremental parser for multipart bodies (RFC 2046 framing: x-mixed-replace, mixed, form-data).

Feed it bytes as they arrive; it returns events — `PartStart` (the part's headers), `PartData` (a slice of
the part's body) and `PartEnd`. `close()` checks that the closing delimiter was seen. The parser does no I/O
and holds at most one fed chunk plus the header limit, whatever the part sizes: body bytes are handed out as
they are read, and only a tail short enough to be the start of a delimiter is kept back.

Framing accepted: a quoted or bare `boundary`, a preamble and an epilogue, CRLF or bare-LF line ends,
delimiters split across any chunk boundary, transport padding after a delimiter, parts without headers and
empty parts.
`--boundary` inside data counts only at a line start and followed by `--`, a line end or padding.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from enum import Enum
from urllib.parse import unquote

from services.errors import TruncatedStream, UpstreamError

DEFAULT_MAX_HEADER_BYTES = 16 * 1024
DEFAULT_MAX_PARTS = 100
# Transport padding after a delimiter is whitespace only; a long run of it is a broken or hostile stream.
_MAX_PADDING = 1024
_LF, _CR, _DASH, _SPACE, _TAB = 10, 13, 45, 32, 9


class MultipartError(UpstreamError):
    """A multipart body that cannot be parsed."""

    code = "bad_multipart"


class MalformedMultipart(MultipartError):
    """The body breaks multipart framing (a bad header line, a missing boundary, junk after a delimiter)."""

    code = "bad_multipart"


class MultipartTruncated(MultipartError, TruncatedStream):
    """The body ended before its closing delimiter."""

    code = "truncated"


class HeaderTooLarge(MultipartError):
    """A part's header block is over the limit."""

    code = "bad_multipart"


class TooManyParts(MultipartError):
    """The body has more parts than the parser allows."""

    code = "bad_multipart"


@dataclass(frozen=True, slots=True)
class PartStart:
    """A part begins; `headers` are (lower-case name, value) pairs in order."""

    headers: tuple[tuple[str, str], ...]
    filename: str | None = None
    content_type: str | None = None

    def header(self, name: str) -> str | None:
        """The first value of a header, by case-insensitive name."""
        name = name.lower()
        return next((value for key, value in self.headers if key == name), None)


@dataclass(frozen=True, slots=True)
class PartData:
    """A slice of the current part's body."""

    data: bytes


@dataclass(frozen=True, slots=True)
class PartEnd:
    """The current part is complete."""


Event = PartStart | PartData | PartEnd
_PART_END = PartEnd()


class _State(Enum):
    PREAMBLE = "before the first delimiter"
    PADDING = "in a delimiter line"
    HEADERS = "in a part's headers"
    BODY = "in a part's body"
    EPILOGUE = "after the closing delimiter"


# Module constants: an Enum attribute lookup costs more than the rest of a chunk's bookkeeping.
_PREAMBLE, _PADDING, _HEADERS, _BODY, _EPILOGUE = (
    _State.PREAMBLE,
    _State.PADDING,
    _State.HEADERS,
    _State.BODY,
    _State.EPILOGUE,
)

# One `; name=value` parameter: a quoted string (with backslash escapes) or a bare token.
_PARAM = re.compile(r';\s*([^\s=;]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^;]*))?', re.DOTALL)
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


def parse_header_value(value: str) -> tuple[str, dict[str, str]]:
    """Split `main; a=1; b="x y"` into the lower-cased main value and its parameters (names lower-cased)."""
    main, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for match in _PARAM.finditer(";" + rest):
        name, raw = match.group(1).lower(), match.group(2)
        if raw is None:
            continue
        raw = raw.strip()
        if len(raw) >= 2 and raw[0] == '"' and raw[-1] == '"':
            raw = _ESCAPE.sub(r"\1", raw[1:-1])
        params.setdefault(name, raw)
    return main.strip().lower(), params


def _rfc5987(value: str) -> str | None:
    """Decode an RFC 5987 `charset'lang'pct-encoded` value; None if it is not one."""
    parts = value.split("'", 2)
    if len(parts) != 3:
        return None
    charset = parts[0].strip().lower() or "utf-8"
    try:
        codecs.lookup(charset)  # unquote skips decoding (and so the charset) when nothing is escaped
        return unquote(parts[2], encoding=charset, errors="strict")
    except (LookupError, UnicodeDecodeError):
        return None


def filename_of(disposition: str | None) -> str | None:
    """The file name a Content-Disposition gives: `filename*` (RFC 5987) first, then `filename`."""
    if not disposition:
        return None
    _, params = parse_header_value(disposition)
    if "filename*" in params:
        decoded = _rfc5987(params["filename*"])
        if decoded:
            return decoded
    return params.get("filename") or None


def boundary_of(content_type: str) -> str:
    """The boundary of a multipart Content-Type; MalformedMultipart if it has none or is not multipart."""
    main, params = parse_header_value(content_type)
    if not main.startswith("multipart/"):
        raise MalformedMultipart(f"not a multipart body: {main or 'no content type'}")
    boundary = params.get("boundary", "")
    _check_boundary(boundary)
    return boundary


def _check_boundary(boundary: str) -> None:
    # RFC 2046 allows 1..70 characters; be lenient on length but never accept line breaks.
    if not boundary or len(boundary) > 200 or "\r" in boundary or "\n" in boundary:
        raise MalformedMultipart(f"unusable multipart boundary: {boundary[:80]!r}")


def _decode_header_bytes(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _parse_headers(block: bytes) -> tuple[tuple[str, str], ...]:
    """Header lines (CRLF or LF, obsolete folding allowed) into (lower-case name, value) pairs."""
    headers: list[tuple[str, str]] = []
    for raw_line in _decode_header_bytes(block).split("\n"):
        line = raw_line.rstrip("\r")
        if not line:
            continue
        if line[0] in " \t":
            if not headers:
                raise MalformedMultipart("a part's headers begin with a continuation line")
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}")
            continue
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not name or " " in name:
            raise MalformedMultipart(f"bad header line in a part: {line[:80]!r}")
        headers.append((name.lower(), value.strip()))
    return tuple(headers)


def _part_start(headers: tuple[tuple[str, str], ...]) -> PartStart:
    """The PartStart event for a header block: its file name and bare, lower-case content type."""
    ctype = disposition = None
    for name, value in headers:
        if name == "content-type" and ctype is None:
            ctype = value
        elif name == "content-disposition" and disposition is None:
            disposition = value
    return PartStart(
        headers,
        filename=filename_of(disposition),
        content_type=ctype.partition(";")[0].strip().lower() or None if ctype else None,
    )


class MultipartParser:
    """Incremental multipart parser: `feed(bytes) -> events`, then `close()`."""

    def __init__(
        self,
        boundary: str | bytes,
        *,
        max_parts: int = DEFAULT_MAX_PARTS,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    ) -> None:
        text = boundary.decode("latin-1") if isinstance(boundary, bytes) else boundary
        _check_boundary(text)
        # A delimiter is "--boundary" at a line start; the CR before the LF belongs to it when present.
        self._delim = b"\n--" + text.encode("latin-1")
        self._max_parts = max_parts
        self._max_header_bytes = max_header_bytes
        self._state = _PREAMBLE
        # The stream's start counts as a line start: pretend a line break came before it.
        self._buf = b"\r\n"
        self._lead = 0  # leading bytes of `_buf` that are not body data (the header block's last LF)
        self._header_scan = 0  # where to resume looking for the end of a header block in `_buf`
        self._padding = 0
        self._parts = 0
        self._closed = False

    @classmethod
    def from_content_type(
        cls,
        content_type: str,
        *,
        max_parts: int = DEFAULT_MAX_PARTS,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    ) -> MultipartParser:
        """A parser for the boundary named in a Content-Type header."""
        return cls(boundary_of(content_type), max_parts=max_parts, max_header_bytes=max_header_bytes)

    @property
    def parts(self) -> int:
        """How many parts have started so far."""
        return self._parts

    @property
    def done(self) -> bool:
        """Whether the closing delimiter has been seen."""
        return self._state is _EPILOGUE

    def feed(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Parse the next bytes of the body and return the events they complete."""
        if self._closed:
            raise MalformedMultipart("data fed to a closed multipart parser")
        if self._state is _EPILOGUE or not data:
            return []
        chunk = data if isinstance(data, bytes) else bytes(data)
        buf = self._buf + chunk if self._buf else chunk
        self._buf = b""
        events: list[Event] = []
        pos: int | None = 0
        while pos is not None:
            state = self._state
            if state is _BODY or state is _PREAMBLE:
                pos = self._scan(buf, pos, events)
            elif state is _HEADERS:
                pos = self._headers(buf, pos, events)
            elif state is _PADDING:
                pos = self._skip_padding(buf, pos)
            else:  # the epilogue is ignored
                pos = None
        return events

    def close(self) -> None:
        """Finish the body; MultipartTruncated unless the closing delimiter was seen."""
        self._closed = True
        if self._state is not _EPILOGUE:
            where = self._state.value
            if self._state in (_HEADERS, _BODY):
                where = f"{where} (part {self._parts})"
            raise MultipartTruncated(f"multipart body truncated {where}: no closing delimiter")

    # --- states ---

    def _scan(self, buf: bytes, pos: int, events: list[Event]) -> int | None:
        """Find the next delimiter in the preamble or a body, handing out the body bytes before it."""
        # The hot path of the parser: one `find` per chunk, few attribute loads, no per-byte work.
        delim = self._delim
        in_body = self._state is _BODY
        start = pos + self._lead  # the first byte that is body data
        self._lead = 0
        size = len(buf)
        search = pos
        while True:
            idx = buf.find(delim, search)
            if idx < 0:
                keep = self._tail(buf, search, size)
                if in_body and keep > start:
                    events.append(PartData(buf if start == 0 and keep == size else buf[start:keep]))
                if keep < size:
                    self._buf = buf[keep:]
                    if start > keep:
                        self._lead = start - keep
                return None
            end = idx - 1 if idx > pos and buf[idx - 1] == _CR else idx
            after = idx + len(delim)
            if size - after < 2 and (after == size or buf[after] == _DASH or buf[after] == _CR):
                # Too few bytes after "--boundary" to tell a delimiter from data: wait for more.
                if in_body and end > start:
                    events.append(PartData(buf[start:end]))
                self._buf = buf[end:]
                if start > end:
                    self._lead = start - end
                return None
            first = buf[after]
            second = buf[after + 1] if after + 1 < size else -1
            if first == _DASH and second == _DASH:
                nxt, state = after + 2, _EPILOGUE
            elif first == _CR and second == _LF:
                nxt, state = after + 2, _HEADERS
            elif first == _LF:
                nxt, state = after + 1, _HEADERS
            elif first in (_SPACE, _TAB):
                nxt, state = after + 1, _PADDING
                self._padding = 1
            else:  # "--boundary" followed by anything else is body data
                search = idx + 1
                continue
            if in_body:
                if end > start:
                    events.append(PartData(buf[start:end]))
                events.append(_PART_END)
            self._state = state
            self._header_scan = 0
            return nxt

    def _tail(self, buf: bytes, lo: int, size: int) -> int:
        """Where the bytes that could begin a delimiter start (`size` if none could)."""
        window = size - len(self._delim) + 1
        nl = buf.rfind(b"\n", window if window > lo else lo)
        if nl >= 0 and self._delim.startswith(buf[nl:]):
            return nl - 1 if nl > lo and buf[nl - 1] == _CR else nl
        if size > lo and buf[size - 1] == _CR:
            return size - 1
        return size

    def _skip_padding(self, buf: bytes, pos: int) -> int | None:
        """Skip whitespace after a delimiter up to its line end."""
        rest = buf[pos : pos + _MAX_PADDING + 2]
        stripped = rest.lstrip(b" \t")
        self._padding += len(rest) - len(stripped)
        if self._padding > _MAX_PADDING:
            raise MalformedMultipart("too much padding after a multipart delimiter")
        skipped = pos + len(rest) - len(stripped)
        if not stripped:
            return None
        if stripped[0] == _LF:
            self._state = _HEADERS
            return skipped + 1
        if stripped[0] == _CR:
            if len(stripped) == 1:
                self._buf = b"\r"
                return None
            if stripped[1] == _LF:
                self._state = _HEADERS
                return skipped + 2
        raise MalformedMultipart("junk after a multipart delimiter")

    def _headers(self, buf: bytes, pos: int, events: list[Event]) -> int | None:
        """Collect a part's header block; emit PartStart at the empty line that ends it."""
        size = len(buf)
        if pos < size and buf[pos] == _LF:  # no headers at all
            block, body_lf = b"", pos
        elif pos + 1 < size and buf[pos] == _CR and buf[pos + 1] == _LF:
            block, body_lf = b"", pos + 1
        elif pos + 1 == size and buf[pos] == _CR:
            self._buf = buf[pos:]
            return None
        else:
            scan = pos + self._header_scan
            # Never look past the limit (and a terminator): a miss would otherwise scan the whole chunk,
            # and the second search only needs to look before the first one's hit.
            limit = pos + self._max_header_bytes + 4
            lf_crlf = buf.find(b"\n\r\n", scan, limit)
            lf_lf = buf.find(b"\n\n", scan, lf_crlf + 1 if lf_crlf >= 0 else limit)
            if lf_lf < 0 and lf_crlf < 0:
                # The limit counts the block without its last line end; up to three bytes here may be that
                # CR and the start of the terminator, so any chunking reaches the same verdict.
                if size - pos > self._max_header_bytes + 3:
                    raise HeaderTooLarge(f"a part's header block is over {self._max_header_bytes} bytes")
                self._buf = buf[pos:]
                # Resume two bytes back: the terminator may straddle this chunk and the next.
                self._header_scan = max(0, size - pos - 2)
                return None
            if lf_crlf < 0 or 0 <= lf_lf < lf_crlf:
                end, body_lf = lf_lf, lf_lf + 1
            else:
                end, body_lf = lf_crlf, lf_crlf + 2
            if end - pos - (buf[end - 1] == _CR) > self._max_header_bytes:
                raise HeaderTooLarge(f"a part's header block is over {self._max_header_bytes} bytes")
            block = buf[pos:end]
        self._parts += 1
        if self._parts > self._max_parts:
            raise TooManyParts(f"more than {self._max_parts} parts in a multipart body")
        events.append(_part_start(_parse_headers(block)))
        self._state = _BODY
        self._header_scan = 0
        # The header block's last LF doubles as the line start of a delimiter right after it (an empty body).
        self._lead = 1
        return body_lf
