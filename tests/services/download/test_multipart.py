"""The multipart parser: table tests, every split point, chunking equivalence (hypothesis), bounded memory."""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from services.download.multipart import (
    Event,
    HeaderTooLarge,
    MalformedMultipart,
    MultipartError,
    MultipartParser,
    MultipartTruncated,
    PartData,
    PartStart,
    TooManyParts,
    boundary_of,
    filename_of,
)
from services.errors import TruncatedStream


@dataclass(frozen=True)
class Part:
    """A part as the tests compare it: headers, file name, content type and the whole body."""

    headers: tuple[tuple[str, str], ...]
    filename: str | None
    content_type: str | None
    data: bytes


def parts_of(events: Iterable[Event]) -> list[Part]:
    """Fold an event stream into whole parts, checking it is well formed on the way."""
    parts: list[Part] = []
    current: PartStart | None = None
    data = bytearray()
    for event in events:
        if isinstance(event, PartStart):
            assert current is None, "PartStart inside a part"
            current, data = event, bytearray()
        elif isinstance(event, PartData):
            assert current is not None, "PartData outside a part"
            assert event.data, "empty PartData"
            data += event.data
        else:
            assert current is not None, "PartEnd outside a part"
            parts.append(Part(current.headers, current.filename, current.content_type, bytes(data)))
            current = None
    assert current is None, "a part never ended"
    return parts


def parse(body: bytes, boundary: str = "b", chunks: Iterable[int] | None = None, **kwargs: int) -> list[Part]:
    """Parse `body` fed in pieces of the given sizes (all at once by default), then close."""
    parser = MultipartParser(boundary, **kwargs)
    events: list[Event] = []
    if chunks is None:
        events += parser.feed(body)
    else:
        offset = 0
        for size in chunks:
            events += parser.feed(body[offset : offset + size])
            offset += size
        events += parser.feed(body[offset:])
    parser.close()
    return parts_of(events)


def p(data: bytes, *headers: tuple[str, str], filename: str | None = None, ctype: str | None = None) -> Part:
    return Part(tuple(headers), filename, ctype, data)


DOC_EXAMPLE = (
    b"--simple_boundary\r\n"
    b"Content-Type: video/mp4\r\n"
    b'Content-Disposition: attachment; filename="video.mp4"\r\n'
    b"\r\n"
    b"(binary data)\r\n"
    b"--simple_boundary\r\n"
    b"Content-Type: image/jpeg\r\n"
    b'Content-Disposition: attachment; filename="image.jpg"\r\n'
    b"\r\n"
    b"(binary data)\r\n"
    b"--simple_boundary\r\n"
    b"Content-Type: audio/mpeg\r\n"
    b'Content-Disposition: attachment; filename="audio.mp3"\r\n'
    b"\r\n"
    b"(binary data)\r\n"
    b"--simple_boundary--"
)

CT = ("content-type", "video/mp4")

TABLE: list[tuple[str, bytes, list[Part]]] = [
    (
        "one part",
        b"--b\r\nContent-Type: video/mp4\r\n\r\nhello\r\n--b--\r\n",
        [p(b"hello", CT, ctype="video/mp4")],
    ),
    (
        "preamble and epilogue",
        b"This is the preamble.\r\nIt is ignored.\r\n--b\r\n\r\ndata\r\n--b--\r\nepilogue --b\r\n--b\r\n",
        [p(b"data")],
    ),
    (
        "bare LF everywhere",
        b"--b\nContent-Type: video/mp4\n\nline1\nline2\n--b--\n",
        [p(b"line1\nline2", CT, ctype="video/mp4")],
    ),
    (
        "mixed line ends",
        b"--b\nA: 1\r\n\r\nx\r\n--b\r\nB: 2\n\ny\n--b--",
        [p(b"x", ("a", "1")), p(b"y", ("b", "2"))],
    ),
    (
        "case-insensitive header names",
        b"--b\r\nCONTENT-TYPE: Video/MP4; codecs=avc1\r\n"
        b"content-DISPOSITION: attachment; FILENAME=v.mp4\r\n\r\nz\r\n--b--",
        [
            p(
                b"z",
                ("content-type", "Video/MP4; codecs=avc1"),
                ("content-disposition", "attachment; FILENAME=v.mp4"),
                filename="v.mp4",
                ctype="video/mp4",
            )
        ],
    ),
    (
        "RFC 5987 filename* wins over filename",
        b'--b\r\nContent-Disposition: attachment; filename="fallback.mp4"; '
        b"filename*=UTF-8''na%C3%AFve%20clip.mp4\r\n\r\nq\r\n--b--",
        [
            p(
                b"q",
                (
                    "content-disposition",
                    "attachment; filename=\"fallback.mp4\"; filename*=UTF-8''na%C3%AFve%20clip.mp4",
                ),
                filename="naïve clip.mp4",
            )
        ],
    ),
    (
        "quoted filename with an escaped quote and a semicolon",
        b'--b\r\nContent-Disposition: attachment; filename="a \\"b\\"; c.jpg"\r\n\r\nq\r\n--b--',
        [
            p(
                b"q",
                ("content-disposition", 'attachment; filename="a \\"b\\"; c.jpg"'),
                filename='a "b"; c.jpg',
            )
        ],
    ),
    (
        "empty part and a part with no headers",
        b"--b\r\nX: 1\r\n\r\n\r\n--b\r\n\r\n\r\n--b--",
        [p(b"", ("x", "1")), p(b"")],
    ),
    ("empty body right after the header block", b"--b\r\nX: 1\r\n\r\n--b--", [p(b"", ("x", "1"))]),
    (
        "--boundary inside data but not at a line start",
        b"--b\r\n\r\nxx--b yy --b--\r\n--b--",
        [p(b"xx--b yy --b--")],
    ),
    (
        "the boundary at a line start but followed by other bytes",
        b"--b\r\n\r\none\r\n--bX\r\ntwo\n--b-x\r\n--bb\r\n--b--",
        [p(b"one\r\n--bX\r\ntwo\n--b-x\r\n--bb")],
    ),
    (
        "transport padding after delimiters",
        b"--b \t \r\n\r\nx\r\n--b  \r\n\r\ny\r\n--b--",
        [p(b"x"), p(b"y")],
    ),
    ("no parts at all", b"--b--\r\n", []),
    ("CR and LF at the end of data stay data", b"--b\r\n\r\nx\r\r\n\r\n--b--", [p(b"x\r\r\n")]),
    (
        "folded header line",
        b'--b\r\nContent-Disposition: attachment;\r\n\tfilename="f.mp3"\r\n\r\nm\r\n--b--',
        [p(b"m", ("content-disposition", 'attachment; filename="f.mp3"'), filename="f.mp3")],
    ),
    (
        "binary data with NULs and high bytes",
        b"--b\r\n\r\n\x00\xff\r\x00\n-\x00--b\r\n--b--",
        [p(b"\x00\xff\r\x00\n-\x00--b")],
    ),
]


@pytest.mark.parametrize(
    ("body", "expected"), [(b, e) for _, b, e in TABLE], ids=[name for name, _, _ in TABLE]
)
def test_table(body: bytes, expected: list[Part]) -> None:
    assert parse(body) == expected


def test_the_documented_ttsave_example() -> None:
    parts = parse(DOC_EXAMPLE, "simple_boundary")
    assert [(x.filename, x.content_type, x.data) for x in parts] == [
        ("video.mp4", "video/mp4", b"(binary data)"),
        ("image.jpg", "image/jpeg", b"(binary data)"),
        ("audio.mp3", "audio/mpeg", b"(binary data)"),
    ]


@pytest.mark.parametrize(
    ("content_type", "boundary"),
    [
        ("multipart/x-mixed-replace; boundary=simple_boundary", "simple_boundary"),
        ('multipart/x-mixed-replace; boundary="simple boundary"', "simple boundary"),
        ("Multipart/Mixed;Boundary=abc;charset=utf-8", "abc"),
        ('multipart/mixed; charset="a;b"; boundary="q\\"x"', 'q"x'),
    ],
)
def test_boundary_of(content_type: str, boundary: str) -> None:
    assert boundary_of(content_type) == boundary


def test_quoted_boundary_with_a_space_parses() -> None:
    parser = MultipartParser.from_content_type('multipart/x-mixed-replace; boundary="a b"')
    events = parser.feed(b"--a b\r\n\r\nx\r\n--a b--")
    parser.close()
    assert parts_of(events) == [p(b"x")]


@pytest.mark.parametrize("content_type", ["text/html", "multipart/mixed", "multipart/mixed; boundary=", ""])
def test_boundary_of_refuses(content_type: str) -> None:
    with pytest.raises(MalformedMultipart):
        boundary_of(content_type)


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (None, None),
        ("attachment", None),
        ('attachment; filename="video.mp4"', "video.mp4"),
        ("attachment; filename=audio.mp3", "audio.mp3"),
        ("attachment; filename*=utf-8'en'%E2%82%AC%20rates.jpg", "€ rates.jpg"),
        ("attachment; filename*=iso-8859-1''caf%E9.jpg", "café.jpg"),
        ("attachment; filename*=bogus-charset''x.jpg; filename=y.jpg", "y.jpg"),
        ("attachment; filename*=no-quotes-at-all; filename=z.jpg", "z.jpg"),
    ],
)
def test_filename_of(value: str | None, name: str | None) -> None:
    assert filename_of(value) == name


# --- errors ---


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b"", "before the first delimiter"),
        (b"no delimiter at all", "before the first delimiter"),
        (b"--b", "before the first delimiter"),
        (b"--b\r\nContent-Type: video/mp4\r\n", "headers"),
        (b"--b\r\n\r\nhalf a video", "body"),
        (b"--b\r\n\r\ndata\r\n--b", "body"),
        (b"--b\r\n\r\ndata\r\n--b-", "body"),
        (b"--b\r\n\r\ndata\r\n--b\r\n", "headers"),
        (b"--b  ", "delimiter line"),
    ],
)
def test_truncated(body: bytes, where: str) -> None:
    parser = MultipartParser("b")
    parser.feed(body)
    with pytest.raises(MultipartTruncated, match="truncated") as info:
        parser.close()
    assert where in str(info.value)
    assert isinstance(info.value, TruncatedStream) and info.value.code == "truncated"


def test_header_block_over_the_limit() -> None:
    big = b"X-Filler: " + b"a" * (16 * 1024) + b"\r\n"
    with pytest.raises(HeaderTooLarge):
        parse(b"--b\r\n" + big + b"\r\ndata\r\n--b--")
    # Also when the block never ends: it must not grow without bound.
    with pytest.raises(HeaderTooLarge):
        parse(b"--b\r\n" + (b"X-Filler: " + b"a" * 1000 + b"\r\n") * 100, chunks=[1000] * 30)


def test_header_block_at_the_limit_is_fine_in_any_chunking() -> None:
    line = b"X: " + b"a" * (16 * 1024 - 3)  # exactly 16 KiB before its line end
    body = b"--b\r\n" + line + b"\r\n\r\nd\r\n--b--"
    assert parse(body)[0].data == b"d"
    for cut in range(len(body) - 30, len(body)):
        assert parse(body, chunks=[cut])[0].data == b"d"


def test_too_many_parts() -> None:
    body = b"--b\r\n\r\n1\r\n--b\r\n\r\n2\r\n--b\r\n\r\n3\r\n--b--"
    assert len(parse(body, max_parts=3)) == 3
    with pytest.raises(TooManyParts):
        parse(body, max_parts=2)


@pytest.mark.parametrize(
    "body",
    [
        b"--b\r\nno colon here\r\n\r\nx\r\n--b--",
        b"--b\r\n continuation first\r\n\r\nx\r\n--b--",
        b"--b\r\nBad Name: x\r\n\r\nx\r\n--b--",
        b"--b   junk\r\n\r\nx\r\n--b--",
        b"--b" + b" " * 2000 + b"\r\n\r\nx\r\n--b--",
    ],
)
def test_malformed(body: bytes) -> None:
    with pytest.raises(MalformedMultipart):
        parse(body)


def test_feed_after_close_is_an_error() -> None:
    parser = MultipartParser("b")
    parser.feed(b"--b--")
    parser.close()
    with pytest.raises(MalformedMultipart):
        parser.feed(b"more")


def test_epilogue_is_ignored_and_parsing_stops() -> None:
    parser = MultipartParser("b")
    assert parts_of(parser.feed(b"--b\r\n\r\nx\r\n--b--")) == [p(b"x")]
    assert parser.done
    assert parser.feed(b"\r\n--b\r\n\r\nnot a part\r\n--b--") == []
    parser.close()


def test_accepts_bytearray_and_memoryview() -> None:
    parser = MultipartParser(b"b")
    events = parser.feed(bytearray(b"--b\r\n\r\nab")) + parser.feed(memoryview(b"c\r\n--b--"))
    parser.close()
    assert parts_of(events) == [p(b"abc")]


def test_unusable_boundary() -> None:
    for bad in ("", "a\r\nb", "x" * 201):
        with pytest.raises(MalformedMultipart):
            MultipartParser(bad)


# --- every split point ---

SPLIT_BODIES = [
    (DOC_EXAMPLE, "simple_boundary"),
    (TABLE[3][1], "b"),  # mixed line ends
    (TABLE[10][1], "b"),  # boundary followed by other bytes
    (TABLE[11][1], "b"),  # padding
    (TABLE[8][1], "b"),  # empty body right after the headers
    (b"pre\r\n--bnd\r\nContent-Type: a/b\r\n\r\n\r\n--bn\r\n\r\r\n--bnd\n\nz\r\n--bnd--\r\nepi", "bnd"),
]


@pytest.mark.parametrize(("body", "boundary"), SPLIT_BODIES, ids=range(len(SPLIT_BODIES)))
def test_every_split_point(body: bytes, boundary: str) -> None:
    whole = parse(body, boundary)
    assert whole, "the body should have parts"
    for cut in range(len(body) + 1):
        assert parse(body, boundary, chunks=[cut]) == whole, f"split at {cut}"
    assert parse(body, boundary, chunks=[1] * len(body)) == whole, "byte by byte"


@pytest.mark.parametrize(("body", "boundary"), SPLIT_BODIES[1:4], ids=range(3))
def test_every_pair_of_split_points(body: bytes, boundary: str) -> None:
    whole = parse(body, boundary)
    for first in range(len(body) + 1):
        for second in range(len(body) - first + 1):
            assert parse(body, boundary, chunks=[first, second]) == whole, (first, second)


# --- hypothesis ---

BOUNDARIES = st.text(alphabet="abcXYZ0129'()+_,-./:=? ", min_size=1, max_size=12).filter(
    lambda b: not b.endswith(" ")
)
TRICKY = [b"\r\n", b"\n", b"\r", b"--", b"-", b" ", b"\t", b"\x00", b"\xff"]


@st.composite
def data_for(draw: st.DrawFn, boundary: bytes) -> bytes:
    """Part data rich in near-delimiters: line ends, dashes and pieces of the boundary."""
    pieces = st.one_of(
        st.binary(max_size=20),
        st.sampled_from(TRICKY),
        st.integers(0, len(boundary)).map(lambda k: b"\r\n--" + boundary[:k]),
        st.sampled_from([b"\r\n--" + boundary + b"X", b"\n--" + boundary + b"-x", b"--" + boundary]),
    )
    return b"".join(draw(st.lists(pieces, max_size=12)))


def has_false_delimiter(data: bytes, boundary: bytes) -> bool:
    """Whether `data`, framed by a header block before and a delimiter after, contains a real delimiter."""
    framed = b"\n" + data + b"\r\n--" + boundary
    needle = b"\n--" + boundary
    index = framed.find(needle)
    while 0 <= index < len(framed) - len(needle):
        after = framed[index + len(needle) : index + len(needle) + 2]
        if after[:1] in (b" ", b"\t", b"\n") or after in (b"--", b"\r\n"):
            return True
        index = framed.find(needle, index + 1)
    return False


@st.composite
def bodies(draw: st.DrawFn) -> tuple[str, bytes, list[Part]]:
    """A valid multipart body and the parts it holds."""
    boundary = draw(BOUNDARIES)
    raw = boundary.encode()
    nl = draw(st.sampled_from([b"\r\n", b"\n"]))
    parts = []
    body = draw(st.sampled_from([b"", b"preamble" + nl, b"\r\n"]))
    for index in range(draw(st.integers(0, 4))):
        data = draw(data_for(raw))
        assume(not has_false_delimiter(data, raw))
        # With LF framing, a CR ending the data would join the delimiter's LF: CRLF is the delimiter then.
        assume(not (nl == b"\n" and data.endswith(b"\r")))
        headers: tuple[tuple[str, str], ...] = ()
        if draw(st.booleans()):
            headers = (
                ("content-type", "video/mp4"),
                ("content-disposition", f'attachment; filename="f{index}.mp4"'),
            )
        head = b"".join(f"{k.title()}: {v}".encode() + nl for k, v in headers)
        body += (nl if index else b"") + b"--" + raw + nl + head + nl + data
        filename = f"f{index}.mp4" if headers else None
        parts.append(Part(headers, filename, "video/mp4" if headers else None, data))
    body += (nl if parts else b"") + b"--" + raw + b"--" + draw(st.sampled_from([b"", nl, nl + b"epilogue"]))
    return boundary, body, parts


def chunked(body: bytes, cuts: list[int]) -> Iterator[bytes]:
    points = sorted({c % (len(body) + 1) for c in cuts})
    start = 0
    for point in points:
        yield body[start:point]
        start = point
    yield body[start:]


def run(boundary: str, pieces: Iterable[bytes]) -> list[Part]:
    parser = MultipartParser(boundary, max_parts=8)
    events: list[Event] = []
    for piece in pieces:
        events += parser.feed(piece)
    parser.close()
    return parts_of(events)


@settings(max_examples=300, deadline=None)
@given(bodies(), st.lists(st.integers(0, 10_000), max_size=12))
def test_any_chunking_gives_the_parts_of_one_feed(
    case: tuple[str, bytes, list[Part]], cuts: list[int]
) -> None:
    boundary, body, parts = case
    assert run(boundary, [body]) == parts
    assert run(boundary, chunked(body, cuts)) == parts


def outcome(boundary: str, pieces: Iterable[bytes]) -> list[Part] | type[MultipartError]:
    try:
        return run(boundary, pieces)
    except MultipartError as exc:
        return type(exc)


@settings(max_examples=300, deadline=None)
@given(
    bodies(),
    st.lists(st.tuples(st.integers(0, 10_000), st.binary(max_size=4)), max_size=4),
    st.lists(st.integers(0, 10_000), max_size=8),
)
def test_damaged_bodies_raise_only_parser_errors_whatever_the_chunking(
    case: tuple[str, bytes, list[Part]], damage: list[tuple[int, bytes]], cuts: list[int]
) -> None:
    boundary, body, _ = case
    for position, replacement in damage:  # overwrite, insert or delete a few bytes
        at = position % (len(body) + 1)
        body = body[:at] + replacement + body[at + (position % 3) :]
    assert outcome(boundary, chunked(body, cuts)) == outcome(boundary, [body])


@settings(max_examples=300, deadline=None)
@given(BOUNDARIES, st.binary(max_size=300), st.lists(st.integers(0, 400), max_size=8))
def test_arbitrary_bytes_raise_only_parser_errors(boundary: str, body: bytes, cuts: list[int]) -> None:
    assert outcome(boundary, chunked(body, cuts)) == outcome(boundary, [body])


# --- memory ---


def test_a_200_mb_part_in_bounded_memory() -> None:
    boundary = b"ttsave_boundary_7MA4YWxkTrZu0gW"
    chunk = 64 * 1024
    block = os.urandom(chunk).replace(b"\n", b"n")
    # Every fourth chunk ends in what could be a delimiter, so the parser must hold a tail back.
    teaser = block[: -len(boundary)] + b"\r\n--" + boundary[:-4]
    count = 200 * 1024 * 1024 // chunk

    def body() -> Iterator[bytes]:
        yield b"--" + boundary + b"\r\nContent-Type: video/mp4\r\n\r\n"
        for index in range(count):
            yield teaser if index % 4 == 3 else block
        yield b"\r\n--" + boundary + b"--\r\n"

    parser = MultipartParser(boundary)
    received = 0
    tracemalloc.start()
    try:
        for piece in body():
            for event in parser.feed(piece):
                if isinstance(event, PartData):
                    received += len(event.data)
        parser.close()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert received == 200 * 1024 * 1024
    assert peak < 4 * chunk, f"peak {peak} bytes while parsing a {received} byte part"
