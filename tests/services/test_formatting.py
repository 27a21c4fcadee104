"""services.formatting: the exact rounding of compact numbers, durations, dates and hashtag lists."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services import formatting
from services.formatting import plain_text
from services.metadata.models import Comment, HashtagPage, Music, Post, Profile


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0"),
        (7, "7"),
        (999, "999"),
        (1_000, "1K"),
        (1_049, "1K"),
        (1_099, "1K"),
        (1_100, "1.1K"),
        (1_234, "1.2K"),
        (1_299, "1.2K"),  # rounded down: never overstate a count
        (9_999, "9.9K"),
        (12_345, "12.3K"),
        (99_999, "99.9K"),
        (100_000, "100K"),
        (123_456, "123K"),
        (999_999, "999K"),  # not "1000K", not "1M"
        (1_000_000, "1M"),
        (1_534_000, "1.5M"),
        (3_400_000, "3.4M"),
        (3_499_999, "3.4M"),
        (99_950_000, "99.9M"),
        (100_000_000, "100M"),
        (999_999_999, "999M"),
        (1_000_000_000, "1B"),
        (1_100_000_000, "1.1B"),
        (1_304_183_341, "1.3B"),
        (123_456_789_012, "123B"),
        (-1_234, "-1.2K"),
    ],
)
def test_compact_number(n: int, text: str) -> None:
    assert formatting.compact_number(n) == text


def _value(text: str) -> float:
    scale = {"K": 1e3, "M": 1e6, "B": 1e9}
    return float(text[:-1]) * scale[text[-1]] if text[-1] in scale else float(text)


@given(st.integers(min_value=0, max_value=10**13))
def test_compact_number_never_overstates_and_stays_close(n: int) -> None:
    text = formatting.compact_number(n)
    shown = _value(text)
    assert shown <= n
    # Off by less than one step of the last shown digit (a tenth below 100 units, a unit above).
    assert n - shown < max(n * 0.1, 1)
    assert len(text) <= 5 or text.endswith("B")


def test_maybe_number() -> None:
    assert formatting.maybe_number(None) == "—"
    assert formatting.maybe_number(None, "?") == "?"
    assert formatting.maybe_number(1500) == "1.5K"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0:00"),
        (0.4, "0:00"),
        (0.5, "0:01"),  # halves round up
        (7, "0:07"),
        (7.6, "0:08"),
        (59.5, "1:00"),
        (95, "1:35"),
        (600, "10:00"),
        (3599, "59:59"),
        (3600, "1:00:00"),
        (3723, "1:02:03"),
        (36_000, "10:00:00"),
        (-3, "0:00"),
    ],
)
def test_duration(seconds: float, text: str) -> None:
    assert formatting.duration(seconds) == text


def test_dates_are_utc() -> None:
    moment = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert formatting.date(moment) == "2023-11-14"
    assert formatting.date_time(moment) == "2023-11-14 22:13 UTC"
    # The same instant seen from UTC+3 is already the next day there; the card still says the UTC date.
    east = moment.astimezone(timezone(timedelta(hours=3)))
    assert formatting.date(east) == "2023-11-14"
    assert formatting.date_time(east) == "2023-11-14 22:13 UTC"
    assert formatting.date(datetime(2024, 2, 29, 23, 59)) == "2024-02-29"  # naive: taken as UTC


# --- TikTok text made safe to show ---------------------------------------------------------------------

BIDI_CONTROLS = {
    "\u202a": "LRE",
    "\u202b": "RLE",
    "\u202c": "PDF",
    "\u202d": "LRO",
    "\u202e": "RLO",
    "\u2066": "LRI",
    "\u2067": "RLI",
    "\u2068": "FSI",
    "\u2069": "PDI",
    "\u200e": "LRM",
    "\u200f": "RLM",
    "\u061c": "ALM",
}
INVISIBLE = {
    "\u200b": "ZWSP",
    "\u2060": "WJ",
    "\ufeff": "BOM",
    "\u180e": "MVS",
    "\u00ad": "SHY",
    "\u034f": "CGJ",
    "\u2061": "function application",
    "\u2062": "invisible times",
    "\u2063": "invisible separator",
    "\u2064": "invisible plus",
    "\u115f": "Hangul choseong filler",
    "\u1160": "Hangul jungseong filler",
    "\u3164": "Hangul filler",
    "\uffa0": "halfwidth Hangul filler",
    "\ufff9": "annotation anchor",
    "\ufffa": "annotation separator",
    "\ufffb": "annotation terminator",
}


@pytest.mark.parametrize(
    "char", [*BIDI_CONTROLS, *INVISIBLE], ids=[*BIDI_CONTROLS.values(), *INVISIBLE.values()]
)
@pytest.mark.parametrize("where", ["start", "middle", "end", "alone"])
def test_every_bidi_and_invisible_character_is_removed(char: str, where: str) -> None:
    text = {"start": f"{char}gnp.exe", "middle": f"gnp{char}.exe", "end": f"gnp.exe{char}", "alone": char}[
        where
    ]
    assert plain_text(text) == ("" if where == "alone" else "gnp.exe")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Sandbox \u202eCook\u202c (@x)", "Sandbox Cook (@x)"),
        ("\u2067שלום\u2069 world", "שלום world"),  # right-to-left text itself stays, only its controls go
        ("مرحبا", "مرحبا"),
        ("👨\u200d👩\u200d👧 family", "👨\u200d👩\u200d👧 family"),  # ZWJ inside an emoji sequence stays
        ("🏳️\u200d🌈", "🏳️\u200d🌈"),  # ...after VS16 too
        ("👍🏽\u200d", "👍🏽"),  # ...but not dangling
        ("a\u200db", "ab"),  # ZWJ between letters hides nothing useful
        ("می\u200cخواهم", "می\u200cخواهم"),  # ZWNJ inside a Persian word stays
        ("\u200cstart", "start"),
        ("pay\u200cpal", "paypal"),  # ZWNJ between Latin letters only hides a word from filters
        ("#\u200bfyp", "#fyp"),
        ("\u3164\u3164\u3164", ""),  # a "blank" nickname
        ("plain ASCII, untouched", "plain ASCII, untouched"),
        ("Émilie — café ✨", "Émilie — café ✨"),
    ],
)
def test_plain_text_keeps_what_is_meant(text: str, expected: str) -> None:
    assert plain_text(text) == expected


def test_models_clean_every_tiktok_text() -> None:
    rlo = "\u202e"
    post = Post(
        id="1",
        url="https://www.tiktok.com/@_/video/1",
        author=f"a{rlo}b",
        author_name=f"Nick{rlo}gnp.exe",
        description=f"hi\u200b{rlo}there",
        hashtags=("fy\u2066p",),
        music=Music(title=f"song{rlo}", author="\u200fDJ"),
    )
    assert (post.author, post.author_name, post.description, post.hashtags) == (
        "ab",
        "Nickgnp.exe",
        "hithere",
        ("fyp",),
    )
    assert post.music == Music(title="song", author="DJ")
    profile = Profile(username="u", nickname=f"{rlo}Ann", bio="bio\u2068x\u2069")
    assert (profile.nickname, profile.bio) == ("Ann", "biox")
    assert HashtagPage(tag="fo\u200bod", posts=()).tag == "food"
    assert Comment(id="1", text=f"{rlo}lol").text == "lol"
