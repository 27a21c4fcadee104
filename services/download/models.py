"""What a download asks for and what it yields: Want, MediaKind, MediaFile, and the Backend protocol."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from services.links import TikTokLink
from services.metadata.models import Post


class Want(StrEnum):
    """What the caller wants from a post."""

    VIDEO = "video"  # the video; a photo post gives its images and sound
    AUDIO = "audio"  # only the sound
    ORIGINAL = "original"  # every original file: the video or the images, and the sound as its own file


class Quality(StrEnum):
    """Which video rendition to prefer when a post offers several."""

    COMPATIBLE = "compatible"  # the best H.264 that fits: plays everywhere
    BEST = "best"  # the highest resolution that fits, H.265 allowed (never bytevc2)


class MediaKind(StrEnum):
    """What a download turned out to be."""

    VIDEO = "video"
    PHOTOS = "photos"
    AUDIO = "audio"


class FileRole(StrEnum):
    """What one downloaded file is."""

    VIDEO = "video"
    PHOTO = "photo"
    AUDIO = "audio"


@dataclass(frozen=True, slots=True)
class MediaFile:
    """One spooled file; dimensions and duration when the upstream said."""

    path: Path
    mime: str
    size: int
    role: FileRole
    width: int | None = None
    height: int | None = None
    duration: float | None = None

    @property
    def extension(self) -> str:
        """The file name extension for its type, with the dot (`.mp4`, `.jpg`, `.mp3`)."""
        return extension_for(self.mime, self.path.suffix)


@dataclass(frozen=True, slots=True)
class Download:
    """What one backend produced: files in its temporary directory, and the post when it read one."""

    kind: MediaKind
    files: tuple[MediaFile, ...]
    post: Post | None = None


Progress = Callable[[int, int | None], None]
"""Called with bytes received so far and the expected total, when known."""


class Backend(Protocol):
    """A way to download a post's media; raises ServiceError subclasses only. A backend may also have
    `async def probe(self) -> bool`, a cheap health check its circuit breaker uses (TTSave's /ping)."""

    name: str

    async def fetch(
        self,
        link: TikTokLink,
        want: Want,
        size_limit: int | None,
        temp_dir: Path,
        progress: Progress | None = None,
        *,
        quality: Quality = Quality.COMPATIBLE,
    ) -> Download:
        """Download into `temp_dir`, no file over `size_limit` bytes (TooLarge otherwise)."""

    async def aclose(self) -> None:
        """Release what the backend holds (not the shared HTTP clients)."""


_EXTENSIONS = {
    "video/mp4": ".mp4",
    "video/quicktime": ".mov",
    "video/webm": ".webm",
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "image/heic": ".heic",
    "image/gif": ".gif",
    "audio/mpeg": ".mp3",
    "audio/mp4": ".m4a",
    "audio/x-m4a": ".m4a",
    "audio/aac": ".aac",
    "audio/ogg": ".ogg",
}
_MIMES = {ext: mime for mime, ext in reversed(_EXTENSIONS.items())} | {".jpeg": "image/jpeg"}


def extension_for(mime: str, fallback: str = "") -> str:
    """The usual extension for a MIME type (`fallback` for an unknown one)."""
    return _EXTENSIONS.get(mime.split(";")[0].strip().lower(), fallback or ".bin")


def mime_for(name: str) -> str | None:
    """The MIME type a file name's extension implies, if it is a media type we know."""
    return _MIMES.get(Path(name).suffix.lower())


def role_for(mime: str) -> FileRole | None:
    """The role a MIME type implies (None for anything that is not video, image or audio)."""
    major = mime.split("/", 1)[0].strip().lower()
    return {"video": FileRole.VIDEO, "image": FileRole.PHOTO, "audio": FileRole.AUDIO}.get(major)
