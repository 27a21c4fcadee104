"""The emulator's sans-IO multipart parser: any split of the body gives the same parts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox.telegram.multipart import (
    MultipartError,
    MultipartParser,
    PartData,
    PartEnd,
    PartStart,
    boundary_of,
)

BOUNDARY = b"webhookBoundaryXyZ123"
Part = tuple[str, str | None, bytes]


def encode(parts: list[Part], boundary: bytes = BOUNDARY) -> bytes:
    body = b"preamble to ignore\r\n"
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        body += b"--" + boundary + b"\r\nContent-Disposition: " + disposition.encode() + b"\r\n"
        if filename is not None:
            body += b"Content-Type: application/octet-stream\r\n"
        body += b"\r\n" + data + b"\r\n"
    return body + b"--" + boundary + b"--\r\nepilogue"


def parse(chunks: list[bytes], boundary: bytes = BOUNDARY) -> list[Part]:
    parser = MultipartParser(boundary)
    parts: list[Part] = []
    current: tuple[str, str | None, bytearray] | None = None
    for chunk in chunks:
        for event in parser.feed(chunk):
            if isinstance(event, PartStart):
                current = (event.name, event.filename, bytearray())
            elif isinstance(event, PartData):
                assert current is not None
                current[2].extend(event.data)
            else:
                assert isinstance(event, PartEnd) and current is not None
                parts.append((current[0], current[1], bytes(current[2])))
                current = None
    parser.close()
    return parts


# Part bodies full of near-boundaries: CRLFs, dashes and prefixes of the boundary itself.
BODY = st.lists(
    st.sampled_from([b"\r\n", b"--", b"\r\n--", BOUNDARY[:7], b"x", b"\x00\xff"]), max_size=12
).map(b"".join)
PARTS = st.lists(
    st.tuples(
        st.sampled_from(["chat_id", "caption", "video", "media"]),
        st.one_of(st.none(), st.sampled_from(["clip.mp4", "фото.jpg"])),
        BODY,
    ),
    max_size=4,
)


@given(PARTS, st.data())
def test_any_split_of_the_body_gives_the_same_parts(parts: list[Part], data: st.DataObject) -> None:
    body = encode(parts)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=8)))
    chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    assert parse(chunks) == parts


def test_split_at_every_byte() -> None:
    parts: list[Part] = [
        ("chat_id", None, b"42"),
        ("video", "v.mp4", b"\r\n--webhook\r\n" * 3),
        ("empty", None, b""),
    ]
    body = encode(parts)
    for cut in range(len(body) + 1):
        assert parse([body[:cut], body[cut:]]) == parts
    assert parse([body[i : i + 1] for i in range(len(body))]) == parts


def test_boundary_and_filename_forms() -> None:
    assert boundary_of('multipart/form-data; boundary="a b"') == b"a b"
    assert boundary_of("multipart/form-data; charset=utf-8; boundary=xyz") == b"xyz"
    with pytest.raises(MultipartError):
        boundary_of("multipart/form-data")
    body = b"--b\r\nContent-Disposition: form-data; name=\"f\"; filename*=UTF-8''%D1%84.mp4\r\n\r\nx\r\n--b--"
    parser = MultipartParser(b"b")
    start = parser.feed(body)[0]
    assert start == PartStart("f", "ф.mp4", None)


@pytest.mark.parametrize(
    "body",
    [
        b'--b\r\nContent-Disposition: form-data; name="x"\r\n\r\nno closing boundary',
        b"--b\r\nX-Other: 1\r\n\r\nbody\r\n--b--",
        b"--b\r\n\r\nheaderless\r\n--b--",
        b"--bGARBAGE\r\n",
    ],
)
def test_malformed_bodies_are_refused(body: bytes) -> None:
    def parse_all() -> None:
        parser = MultipartParser(b"b")
        parser.feed(body)
        parser.close()

    with pytest.raises(MultipartError):
        parse_all()
