"""Recognise TikTok links in chat text and resolve short links safely."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class LinkKind(StrEnum):
    """What a TikTok link points to."""

    POST = "post"
    SHORT = "short"
    USER = "user"
    HASHTAG = "hashtag"
    MUSIC = "music"


@dataclass(frozen=True, slots=True)
class TikTokLink:
    """One TikTok link found in text; fields that do not apply to its kind are None."""

    kind: LinkKind
    url: str
    post_id: str | None = None
    username: str | None = None
    tag: str | None = None
    code: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The link as the CLI prints it: every key present, null where not applicable."""
        data = asdict(self)
        data["kind"] = self.kind.value
        return data


def canonical_post_url(post_id: str, username: str | None = None) -> str:
    """The canonical web URL of a post: `https://www.tiktok.com/@<user or _>/video/<id>`."""
    return f"https://www.tiktok.com/@{username or '_'}/video/{post_id}"


def find_links(text: str, limit: int = 5) -> list[TikTokLink]:
    """Every TikTok link in `text`, in order of appearance, de-duplicated, at most `limit`."""
    raise NotImplementedError  # filled in by the links work of issue 3
