"""Telegram HTML for cards: escaped, and within Telegram's caption and message limits."""

from __future__ import annotations

from html import escape

from bot.chat.cards import Card, trim
from bot.chat.i18n import t

CAPTION_LIMIT = 1024
MESSAGE_LIMIT = 4096


def html_text(text: str) -> str:
    """Text escaped for Telegram HTML (quotes may stay as they are)."""
    return escape(text, quote=False)


def html_attr(value: str) -> str:
    """A value escaped for an HTML attribute."""
    return escape(value, quote=True)


def visible_length(text: str) -> int:
    """Length as Telegram counts it after entity parsing: UTF-16 code units of the plain text."""
    return len(text.encode("utf-16-le")) // 2


def render_card(card: Card, lang: str, *, limit: int = CAPTION_LIMIT, with_link: bool = True) -> str:
    """The card as Telegram HTML whose visible text fits in `limit`."""
    head = f"<b>{html_text(card.title)}</b>"
    figures = "  ".join(f"{icon} {value}" for icon, value, _ in card.figures)
    tail_parts = [p for p in (html_text(figures), html_text(card.footer)) if p]
    if with_link:
        tail_parts.append(f'<a href="{html_attr(card.url)}">{html_text(t(lang, "card.open"))}</a>')
    rows = [f'<a href="{html_attr(url)}">{html_text(text)}</a>' for text, url in card.lines]

    def assemble(text: str, rows: list[str]) -> str:
        return "\n".join(p for p in (head, html_text(text) if text else "", *rows, *tail_parts) if p)

    def plain_len(text: str, rows: list[str]) -> int:
        plain = [card.title, text, *(r for r, _ in card.lines[: len(rows)]), figures, card.footer]
        if with_link:
            plain.append(t(lang, "card.open"))
        return visible_length("\n".join(p for p in plain if p))

    while rows and plain_len("", rows) > limit:
        rows.pop()
    budget = limit - plain_len("", rows) - 1
    text = trim(card.text, budget) if budget > 0 else ""
    while text and plain_len(text, rows) > limit:
        budget -= max(1, plain_len(text, rows) - limit)
        text = trim(card.text, budget) if budget > 0 else ""
    return assemble(text, rows)
