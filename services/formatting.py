"""Platform-neutral text pieces for cards: compact numbers, durations, dates, hashtag lists. No markup."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from services.metadata.models import Profile, Stats

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


def hashtag_list(tags: Iterable[str], limit: int = 5) -> str:
    """`#pasta #cooking +3`: the first `limit` distinct tags (case-insensitively), then how many more."""
    seen: dict[str, str] = {}
    for tag in tags:
        name = tag.strip().lstrip("#")
        if name:
            seen.setdefault(name.lower(), name)
    names = list(seen.values())
    shown = " ".join(f"#{name}" for name in names[: max(limit, 0)])
    rest = len(names) - max(limit, 0)
    if rest > 0:
        return f"{shown} +{rest}" if shown else f"+{rest}"
    return shown


def stats_line(stats: Stats) -> str:
    """`1.5M views · 240K likes · 1.3K comments · 905 shares · 5K saves`, leaving out what is unknown."""
    parts = [
        f"{compact_number(value)} {label}"
        for value, label in (
            (stats.views, "views"),
            (stats.likes, "likes"),
            (stats.comments, "comments"),
            (stats.shares, "shares"),
            (stats.saves, "saves"),
        )
        if value is not None
    ]
    return " · ".join(parts)


def profile_line(profile: Profile) -> str:
    """`1.2M followers · 321 following · 98.7M likes · 42 videos`, leaving out what is unknown."""
    parts = [
        f"{compact_number(value)} {label}"
        for value, label in (
            (profile.followers, "followers"),
            (profile.following, "following"),
            (profile.likes, "likes"),
            (profile.videos, "videos"),
        )
        if value is not None
    ]
    return " · ".join(parts)
