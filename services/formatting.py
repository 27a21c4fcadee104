"""Platform-neutral text pieces for cards: compact numbers, durations, dates, TikTok text made safe to show.
No markup (the cards themselves are bot/chat/cards.py's)."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime

# Invisible characters that change how the text around them is shown (Unicode TR9 "explicit directional
# formatting characters", the marks, and the invisible/zero-width format characters of category Cf and Hangul
# fillers people use for "blank" names). U+202E in a nickname turns "exe.png" into "gnp.exe" for the rest of
# the line. Removed outright; ZWJ and ZWNJ get a contextual rule below.
_DROPPED = frozenset(
    {
        "\u061c",  # ARABIC LETTER MARK
        "\u200e",  # LEFT-TO-RIGHT MARK
        "\u200f",  # RIGHT-TO-LEFT MARK
        "\u202a",  # LEFT-TO-RIGHT EMBEDDING
        "\u202b",  # RIGHT-TO-LEFT EMBEDDING
        "\u202c",  # POP DIRECTIONAL FORMATTING
        "\u202d",  # LEFT-TO-RIGHT OVERRIDE
        "\u202e",  # RIGHT-TO-LEFT OVERRIDE
        "\u2066",  # LEFT-TO-RIGHT ISOLATE
        "\u2067",  # RIGHT-TO-LEFT ISOLATE
        "\u2068",  # FIRST STRONG ISOLATE
        "\u2069",  # POP DIRECTIONAL ISOLATE
        "\u200b",  # ZERO WIDTH SPACE
        "\u2060",  # WORD JOINER
        "\u2061",  # FUNCTION APPLICATION
        "\u2062",  # INVISIBLE TIMES
        "\u2063",  # INVISIBLE SEPARATOR
        "\u2064",  # INVISIBLE PLUS
        "\ufeff",  # ZERO WIDTH NO-BREAK SPACE (BOM)
        "\u180e",  # MONGOLIAN VOWEL SEPARATOR
        "\u00ad",  # SOFT HYPHEN
        "\u034f",  # COMBINING GRAPHEME JOINER
        "\u115f",  # HANGUL CHOSEONG FILLER
        "\u1160",  # HANGUL JUNGSEONG FILLER
        "\u3164",  # HANGUL FILLER
        "\uffa0",  # HALFWIDTH HANGUL FILLER
        "\ufff9",  # INTERLINEAR ANNOTATION ANCHOR
        "\ufffa",  # INTERLINEAR ANNOTATION SEPARATOR
        "\ufffb",  # INTERLINEAR ANNOTATION TERMINATOR
    }
)
_ZWJ = "\u200d"  # joins emoji into one (👨‍👩‍👧): kept between two symbols, dropped elsewhere
_ZWNJ = "\u200c"  # needed inside Persian and Indic words: kept between two such letters, dropped elsewhere
_EMOJI_PARTS = frozenset({"\ufe0f", "\u20e3"})  # VS16 and the keycap mark end emoji before a ZWJ


def _is_symbol(char: str) -> bool:
    return (
        char in _EMOJI_PARTS or unicodedata.category(char) in ("So", "Sk") or 0x1F3FB <= ord(char) <= 0x1F3FF
    )


def _is_script_letter(char: str) -> bool:
    return char.isalpha() and not char.isascii()


def plain_text(text: str) -> str:
    """TikTok text with its bidi controls and invisible characters removed (emoji and script joiners kept)."""
    if text.isascii():
        return text
    out: list[str] = []
    last = len(text) - 1
    for index, char in enumerate(text):
        if char in _DROPPED:
            continue
        if char in (_ZWJ, _ZWNJ):
            before = out[-1] if out else ""
            after = text[index + 1] if index < last else ""
            keep = _is_symbol if char == _ZWJ else _is_script_letter
            if not (before and after and keep(before) and keep(after)):
                continue
        out.append(char)
    return "".join(out)


def maybe_plain(text: str | None) -> str | None:
    """`plain_text` for an optional text."""
    return None if text is None else plain_text(text)


_UNITS = ((1_000_000_000, "B"), (1_000_000, "M"), (1_000, "K"))


def compact_number(n: int) -> str:
    """`999`, `1.2K`, `12.3K`, `123K`, `3.4M`, `1.1B`: rounded down, so a count is never overstated."""
    # One decimal below 100 of a unit (a trailing `.0` is dropped), none from 100 up; billions stay billions.
    if n < 0:
        return "-" + compact_number(-n)
    for size, suffix in _UNITS:
        if n >= size:
            tenths = n * 10 // size  # integer arithmetic: no float rounding surprises at the edges
            if tenths >= 1000:
                return f"{tenths // 10}{suffix}"
            whole, tenth = divmod(tenths, 10)
            return f"{whole}.{tenth}{suffix}" if tenth else f"{whole}{suffix}"
    return str(n)


def maybe_number(n: int | None, missing: str = "—") -> str:
    """`compact_number(n)`, or `missing` when the upstream did not say."""
    return missing if n is None else compact_number(n)


def duration(seconds: float) -> str:
    """`0:07`, `1:35`, `1:02:03`: rounded to the nearest second (halves up)."""
    total = int(max(seconds, 0.0) + 0.5)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


def date(moment: datetime) -> str:
    """The UTC calendar date, `2023-11-14`."""
    return _utc(moment).strftime("%Y-%m-%d")


def date_time(moment: datetime) -> str:
    """The UTC date and minute, `2023-11-14 22:13 UTC`."""
    return _utc(moment).strftime("%Y-%m-%d %H:%M UTC")


def _utc(moment: datetime) -> datetime:
    # A naive datetime is taken to be UTC already: that is what every parser here produces.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
