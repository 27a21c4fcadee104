"""Files the emulated server holds: spooled uploads, file_ids, and what Telegram reports about them."""

from __future__ import annotations

import base64
import hashlib
import mimetypes
import secrets
import shutil
import struct
import tempfile
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, Any


class FileKind(StrEnum):
    """What Telegram stored a file as; a file_id only fits methods of a compatible kind."""

    PHOTO = "photo"
    VIDEO = "video"
    AUDIO = "audio"
    DOCUMENT = "document"
    ANIMATION = "animation"
    THUMBNAIL = "thumbnail"

    @property
    def td_name(self) -> str:
        """The name tdlib uses in "can't use file of type X as Y"."""
        return self.value.capitalize()


# tdlib treats these as one family: a video's file_id may be sent as a document and back.
DOCUMENT_FAMILY = {FileKind.VIDEO, FileKind.AUDIO, FileKind.DOCUMENT, FileKind.ANIMATION}

# Prefixes real file_ids of each kind start with, so logs and fixtures look familiar.
_ID_PREFIX = {
    FileKind.PHOTO: b"\x01\x00\x00",
    FileKind.VIDEO: b"\x04\x00\x00",
    FileKind.AUDIO: b"\x09\x00\x00",
    FileKind.DOCUMENT: b"\x05\x00\x00",
    FileKind.ANIMATION: b"\x0a\x00\x00",
    FileKind.THUMBNAIL: b"\x00\x00\x03",
}
_DIRS = {
    FileKind.PHOTO: "photos",
    FileKind.VIDEO: "videos",
    FileKind.AUDIO: "music",
    FileKind.DOCUMENT: "documents",
    FileKind.ANIMATION: "animations",
    FileKind.THUMBNAIL: "thumbnails",
}


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def compatible(stored: FileKind, wanted: FileKind) -> bool:
    """Whether a file stored as `stored` may be sent where `wanted` is expected."""
    return stored == wanted or (stored in DOCUMENT_FAMILY and wanted in DOCUMENT_FAMILY)


def guess_mime(filename: str | None, fallback: str = "application/octet-stream") -> str:
    """MIME type from the file name, as Telegram reports it."""
    if filename:
        guessed, _ = mimetypes.guess_type(filename)
        if guessed:
            return guessed
    return fallback


def probe_image(path: Path) -> tuple[int, int] | None:
    """(width, height) of a JPEG, PNG, GIF or WebP file from its header, or None if it is not one."""
    with path.open("rb") as fh:
        head = fh.read(512 * 1024)
    if head.startswith(b"\x89PNG\r\n\x1a\n") and len(head) >= 24:
        width, height = struct.unpack(">II", head[16:24])
        return int(width), int(height)
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        width, height = struct.unpack("<HH", head[6:10])
        return int(width), int(height)
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return _probe_webp(head)
    if head.startswith(b"\xff\xd8"):
        return _probe_jpeg(head)
    return None


def _probe_webp(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8 " and len(head) >= 30:
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(head) >= 25:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(head) >= 30:
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    return None


def _probe_jpeg(head: bytes) -> tuple[int, int] | None:
    pos = 2
    while pos + 4 <= len(head):
        if head[pos] != 0xFF:
            return None
        marker = head[pos + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        (length,) = struct.unpack(">H", head[pos + 2 : pos + 4])
        # SOF0..SOF15 carry the frame size, except DHT (C4), JPG (C8) and DAC (CC).
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 9 > len(head):
                return None
            height, width = struct.unpack(">HH", head[pos + 5 : pos + 9])
            return int(width), int(height)
        pos += 2 + length
    return None


class Spool:
    """An upload being written to a temporary file, hashed and counted as it arrives."""

    def __init__(
        self, directory: Path, field_name: str, filename: str | None, content_type: str | None
    ) -> None:
        self.field = field_name
        self.filename = filename
        self.content_type = content_type
        self._hash = hashlib.sha256()
        self.size = 0
        self._fh: IO[bytes] = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in finish()/discard()
            dir=directory, prefix="upload-", delete=False
        )
        self.path = Path(self._fh.name)

    def write(self, chunk: bytes) -> None:
        """Append a chunk."""
        self._fh.write(chunk)
        self._hash.update(chunk)
        self.size += len(chunk)

    def finish(self) -> Upload:
        """Close the file and describe it."""
        self._fh.close()
        return Upload(
            self.field, self.filename, self.content_type, self.path, self.size, self._hash.hexdigest()
        )

    def discard(self) -> None:
        """Close and delete the partial file."""
        self._fh.close()
        self.path.unlink(missing_ok=True)


@dataclass(frozen=True, slots=True)
class Upload:
    """A file part of a multipart request, spooled to disk."""

    field: str
    filename: str | None
    content_type: str | None
    path: Path
    size: int
    sha256: str


@dataclass(slots=True)
class StoredFile:
    """A file the server holds, addressed by its file_id."""

    file_id: str
    file_unique_id: str
    kind: FileKind
    path: Path
    size: int
    sha256: str
    file_path: str  # what getFile reports (relative on the cloud API)
    file_name: str | None = None
    mime_type: str | None = None
    width: int = 0
    height: int = 0
    duration: int = 0
    valid: bool = True
    refusal: str = ""  # what sending an invalid file_id answers, after "Bad Request: " (empty: WRONG_FILE)
    extra: dict[str, Any] = field(default_factory=dict)


class FileStore:
    """Every file uploaded to the emulator, by file_id; files live in one directory until `close()`."""

    def __init__(self, directory: Path | None = None) -> None:
        self._owned = directory is None
        self.directory = Path(tempfile.mkdtemp(prefix="tgemu-")) if directory is None else directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self._files: dict[str, StoredFile] = {}
        self._serial = 0

    def add(
        self,
        kind: FileKind,
        source: Upload,
        *,
        unique_suffix: str = "",
        file_name: str | None = None,
        mime_type: str | None = None,
        **attrs: Any,
    ) -> StoredFile:
        """Register an upload (or a size of one) as a new file with a fresh file_id."""
        self._serial += 1
        file_id = _b64(_ID_PREFIX[kind] + b"\x00" + secrets.token_bytes(44))
        # file_unique_id is stable for the same bytes, as Telegram's is for the same file.
        unique = _b64(hashlib.sha256((source.sha256 + unique_suffix).encode()).digest()[:12])
        suffix = Path(file_name or source.filename or "").suffix or {
            FileKind.PHOTO: ".jpg",
            FileKind.VIDEO: ".mp4",
            FileKind.AUDIO: ".mp3",
            FileKind.THUMBNAIL: ".jpg",
        }.get(kind, "")
        stored = StoredFile(
            file_id=file_id,
            file_unique_id="AgAD" + unique[:12],
            kind=kind,
            path=source.path,
            size=source.size,
            sha256=source.sha256,
            file_path=f"{_DIRS[kind]}/file_{self._serial}{suffix}",
            file_name=file_name,
            mime_type=mime_type,
            width=int(attrs.pop("width", 0)),
            height=int(attrs.pop("height", 0)),
            duration=int(attrs.pop("duration", 0)),
            extra=attrs,
        )
        self._files[file_id] = stored
        return stored

    def release(self, uploads: list[Upload]) -> None:
        """Delete the spooled uploads of a request that no stored file refers to."""
        kept = {stored.path for stored in self._files.values()}
        for upload in uploads:
            if upload.path not in kept:
                upload.path.unlink(missing_ok=True)

    def get(self, file_id: str) -> StoredFile | None:
        """The file with this id (valid or not), if the emulator ever issued it."""
        return self._files.get(file_id)

    def by_path(self, file_path: str) -> StoredFile | None:
        """The file getFile reported at `file_path`."""
        for stored in self._files.values():
            if stored.file_path == file_path or str(stored.path) == file_path:
                return stored
        return None

    def invalidate(self, file_id: str, refusal: str = "") -> None:
        """Make a file_id stale: Telegram will refuse it from now on (with `refusal`, if given)."""
        stored = self._files.get(file_id)
        if stored is None:
            raise KeyError(file_id)
        stored.valid = False
        stored.refusal = refusal

    def close(self) -> None:
        """Delete the directory if the store created it."""
        if self._owned:
            shutil.rmtree(self.directory, ignore_errors=True)
