"""Sent-media cache keys: a family prefix, then a variant (`media:video`, `media@best:photo:3`).

Each platform stores what it sent under these keys (file_ids on Telegram, attachment URLs on Discord).
"""

from __future__ import annotations

from collections.abc import Iterable

from services.download.models import Quality, Want

VIDEO = "video"
AUDIO = "audio"
_PHOTO = "photo:"


def variant_prefix(want: Want, quality: Quality = Quality.COMPATIBLE) -> str:
    """The cache-variant family of a request: `media:` for a video or a slideshow (`media@best:` for the
    sharpest copy), `audio:` for the sound."""
    if want is Want.AUDIO:
        return "audio:"
    return "media@best:" if quality is Quality.BEST else "media:"


def photo_variant(index: int) -> str:
    """The variant of a slideshow's photo number `index` (0-based)."""
    return f"{_PHOTO}{index}"


def is_photo(variant: str) -> bool:
    """Whether the variant is one photo of a slideshow."""
    return variant.startswith(_PHOTO)


def photo_index(variant: str) -> int:
    """The photo number of a photo variant."""
    return int(variant.removeprefix(_PHOTO))


def photo_variants(variants: Iterable[str]) -> list[str]:
    """The photo variants among `variants`, in slideshow order."""
    return sorted((v for v in variants if is_photo(v)), key=photo_index)
