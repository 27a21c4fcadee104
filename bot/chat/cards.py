"""Card contents both frontends show: the same facts in the same order, rendered per platform."""

from __future__ import annotations

from dataclasses import dataclass

from bot.chat.i18n import t
from services.formatting import compact_number, duration
from services.metadata.models import HashtagPage, Post, Profile

DESCRIPTION_LIMIT = 300
# Posts per hashtag page (one metadata call, one card, one "More" button).
HASHTAG_PAGE_SIZE = 5


@dataclass(frozen=True, slots=True)
class Card:
    """Platform-neutral card: a title line, who, text, labelled figures, extra lines and the link."""

    title: str
    url: str
    author: str | None = None
    text: str = ""
    figures: tuple[tuple[str, str, str], ...] = ()  # (icon, value, label)
    lines: tuple[tuple[str, str], ...] = ()  # (text, url) rows, e.g. the posts of a hashtag page
    footer: str = ""


def trim(text: str, limit: int) -> str:
    """`text` cut at a word boundary to at most `limit` characters, with an ellipsis when cut."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: max(0, limit - 1)]
    if " " in cut[limit // 2 :]:
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip() + "…"


def _figure(icon: str, value: int | None, label: str) -> tuple[str, str, str] | None:
    return None if value is None else (icon, compact_number(value), label)


def post_card(post: Post, lang: str, *, description_limit: int = DESCRIPTION_LIMIT) -> Card:
    """The card for a post: author, trimmed description, views / likes / comments / shares, link."""
    figures = tuple(
        f
        for f in (
            _figure("👁", post.stats.views, t(lang, "card.views")),
            _figure("❤️", post.stats.likes, t(lang, "card.likes")),
            _figure("💬", post.stats.comments, t(lang, "card.comments")),
            _figure("↗️", post.stats.shares, t(lang, "card.shares")),
        )
        if f is not None
    )
    author = f"@{post.author}" if post.author else None
    if author and post.author_name and post.author_name != post.author:
        author = f"{post.author_name} ({author})"
    footer_bits = []
    if post.is_photo and post.image_count:
        footer_bits.append(f"🖼 {post.image_count} {t(lang, 'card.photos')}")
    if post.duration:
        footer_bits.append(f"⏱ {duration(post.duration)}")
    if post.music and post.music.title:
        footer_bits.append(f"🎵 {post.music.title}")
    return Card(
        title=author or "TikTok",
        url=post.url,
        author=author,
        text=trim(post.description, description_limit),
        figures=figures,
        footer=" · ".join(footer_bits),
    )


def profile_card(profile: Profile, lang: str) -> Card:
    """The card for a profile: name, bio, followers / following / likes / videos."""
    title = profile.nickname or profile.username
    marks = []
    if profile.verified:
        marks.append("✔️ " + t(lang, "profile.verified"))
    if profile.private:
        marks.append("🔒 " + t(lang, "profile.private"))
    figures = tuple(
        f
        for f in (
            _figure("👥", profile.followers, t(lang, "profile.followers")),
            _figure("➡️", profile.following, t(lang, "profile.following")),
            _figure("❤️", profile.likes, t(lang, "profile.likes")),
            _figure("🎬", profile.videos, t(lang, "profile.videos")),
        )
        if f is not None
    )
    return Card(
        title=f"{title} (@{profile.username})",
        url=profile.url,
        author=f"@{profile.username}",
        text=trim(profile.bio, DESCRIPTION_LIMIT),
        figures=figures,
        footer=" · ".join(marks),
    )


def hashtag_card(page: HashtagPage, lang: str, page_number: int | None = 1, offset: int = 0) -> Card:
    """The card for one page of a hashtag: numbered posts with author, views and likes (`page_number`
    None: a page reached by a cursor alone, numbered in the footer by nothing)."""
    rows = []
    for index, post in enumerate(page.posts, start=offset + 1):
        who = f"@{post.author}" if post.author else "TikTok"
        views = compact_number(post.stats.views) if post.stats.views is not None else "?"
        likes = compact_number(post.stats.likes) if post.stats.likes is not None else "?"
        rows.append((f"{index}. {who} · 👁 {views} · ❤️ {likes} — {trim(post.description, 60)}", post.url))
    footer = [] if page_number is None else [t(lang, "hashtag.page", page=page_number)]
    if page.total is not None:
        footer.insert(0, t(lang, "hashtag.total", total=compact_number(page.total)))
    if not page.posts:
        text = t(lang, "hashtag.empty" if page_number in (1, None) else "hashtag.end", tag=page.tag)
    else:
        text = ""
    return Card(
        title=t(lang, "hashtag.title", tag=page.tag),
        url=page.url,
        text=text,
        lines=tuple(rows),
        footer=" · ".join(footer),
    )
