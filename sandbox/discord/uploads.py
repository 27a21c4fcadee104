"""Reading Discord request bodies: JSON, or multipart `payload_json` + `files[n]` spooled under a limit."""

from __future__ import annotations

import hashlib
import json
import mimetypes
import os
import tempfile
from dataclasses import dataclass
from typing import IO, Any

from aiohttp import BodyPartReader, web

from sandbox.discord.transcript import UploadedFile

CHUNK = 256 * 1024
MAX_JSON_BYTES = 4 * 1024 * 1024


class TooLarge(Exception):
    """The files of one request exceed the destination's upload limit."""


class BadBody(Exception):
    """The body is not valid JSON or multipart."""


@dataclass(slots=True)
class Body:
    """A parsed request body."""

    payload: Any
    files: list[UploadedFile]


class _Spool:
    """A temporary file that hashes and counts what is written to it."""

    def __init__(self, directory: str) -> None:
        fd, self.path = tempfile.mkstemp(dir=directory, prefix="upload-")
        self._file: IO[bytes] = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self._hash.update(chunk)
        self.size += len(chunk)

    def close(self) -> str:
        """Close the file and return its sha256."""
        self._file.close()
        return self._hash.hexdigest()

    def discard(self) -> None:
        self._file.close()
        os.unlink(self.path)


async def drain(request: web.Request) -> None:
    """Read and drop what is left of the body, so the client can finish sending and read our answer."""
    while not request.content.at_eof():
        if not await request.content.read(CHUNK):
            break


async def read_body(request: web.Request, *, limit: int, spool_dir: str) -> Body:
    """The JSON payload and spooled files of a request; TooLarge once the files pass `limit` bytes."""
    ctype = request.content_type
    if ctype == "multipart/form-data":
        return await _read_multipart(request, limit=limit, spool_dir=spool_dir)
    raw = await request.content.read(MAX_JSON_BYTES + 1)
    if len(raw) > MAX_JSON_BYTES:
        raise TooLarge
    if not raw.strip():
        return Body(payload={}, files=[])
    try:
        return Body(payload=json.loads(raw), files=[])
    except ValueError as exc:
        raise BadBody("invalid JSON") from exc


async def _read_multipart(request: web.Request, *, limit: int, spool_dir: str) -> Body:
    reader = await request.multipart()
    payload: Any = {}
    files: list[UploadedFile] = []
    total = 0
    try:
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                raise BadBody("nested multipart")
            if part.name == "payload_json":
                text = (await part.read(decode=True)).decode("utf-8")
                try:
                    payload = json.loads(text)
                except ValueError as exc:
                    raise BadBody("invalid payload_json") from exc
                continue
            spool = _Spool(spool_dir)
            try:
                while chunk := await part.read_chunk(CHUNK):
                    total += len(chunk)
                    if total > limit:
                        raise TooLarge
                    spool.write(chunk)
            except BaseException:
                spool.discard()
                raise
            filename = part.filename or part.name or "file"
            files.append(
                UploadedFile(
                    field=part.name or "",
                    filename=filename,
                    size=spool.size,
                    sha256=spool.close(),
                    path=spool.path,
                    content_type=mimetypes.guess_type(filename)[0],
                )
            )
    except BaseException:
        for f in files:
            os.unlink(f.path)
        raise
    return Body(payload=payload, files=files)
