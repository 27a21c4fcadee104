"""The emulator's text formatting: tdlib's HTML rules, checked with aiogram's encoder."""

from __future__ import annotations

import pytest
from aiogram.types import MessageEntity
from aiogram.utils.text_decorations import html_decoration
from hypothesis import given
from hypothesis import strategies as st

from sandbox.telegram.entities import (
    EntityParseError,
    checked_link,
    find_entities,
    format_text,
    parse_html,
    utf16_len,
)

# Any text: emoji (surrogate pairs in UTF-16), Cyrillic, markup characters, newlines. Telegram drops "\r"
# and NUL, so those stay out.
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r"), max_size=40)
SIMPLE_TYPES = ["bold", "italic", "underline", "strikethrough", "spoiler", "code"]


@st.composite
def text_with_entity(draw: st.DrawFn) -> tuple[str, MessageEntity]:
    text = draw(TEXT.filter(bool))
    start = draw(st.integers(0, len(text) - 1))
    end = draw(st.integers(start + 1, len(text)))
    kind = draw(st.sampled_from(SIMPLE_TYPES))
    entity = MessageEntity(type=kind, offset=utf16_len(text[:start]), length=utf16_len(text[start:end]))
    return text, entity


@given(TEXT)
def test_escaped_html_is_plain_text(text: str) -> None:
    assert parse_html(html_decoration.quote(text)) == (text, [])


@given(text_with_entity())
def test_html_from_aiogram_parses_back_to_its_entity(case: tuple[str, MessageEntity]) -> None:
    text, entity = case
    parsed_text, entities = parse_html(html_decoration.unparse(text, [entity]))
    assert parsed_text == text
    assert entities == [{"offset": entity.offset, "length": entity.length, "type": entity.type}]


def test_html_nesting_links_and_pre_blocks() -> None:
    text, entities = parse_html(
        '<b>a <i>b</i></b> <a href="tiktok.com">t</a> <pre><code class="language-py">x</code></pre>'
        " <blockquote expandable>q</blockquote> <tg-spoiler>s</tg-spoiler> <a href='tg://user?id=7'>u</a>"
    )
    assert text == "a b t x q s u"
    assert entities == [
        {"offset": 0, "length": 3, "type": "bold"},
        {"offset": 2, "length": 1, "type": "italic"},
        {"offset": 4, "length": 1, "type": "text_link", "url": "http://tiktok.com/"},
        {"offset": 6, "length": 1, "type": "pre", "language": "py"},
        {"offset": 8, "length": 1, "type": "expandable_blockquote"},
        {"offset": 10, "length": 1, "type": "spoiler"},
        {
            "offset": 12,
            "length": 1,
            "type": "text_mention",
            "user": {"id": 7, "is_bot": False, "first_name": "User"},
        },
    ]


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("<b>x", 'Can\'t find end tag corresponding to start tag "b"'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ("<b x", 'Unclosed start tag "b" at byte offset 0'),
        ("<b>x</i>", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
        ("<span>x</span>", 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
        ("я <u>", 'Can\'t find end tag corresponding to start tag "u"'),
        ("ё<br>", 'Unsupported start tag "br" at byte offset 2'),  # offsets count UTF-8 bytes
        ("<a href=x.y!>l</a>", "Unexpected end of name token at byte offset 8"),
    ],
)
def test_html_errors_match_tdlib(source: str, error: str) -> None:
    with pytest.raises(EntityParseError) as caught:
        parse_html(source)
    assert str(caught.value) == error


def test_detected_entities_are_like_telegrams() -> None:
    text = "/post@tiktok_sandbox_bot see https://www.tiktok.com/@u/video/1. and vm.tiktok.com/ZM1 #fyp @some"
    found = [(e["type"], text[e["offset"] : e["offset"] + e["length"]]) for e in find_entities(text)]
    assert found == [
        ("bot_command", "/post@tiktok_sandbox_bot"),
        ("url", "https://www.tiktok.com/@u/video/1"),
        ("url", "vm.tiktok.com/ZM1"),
        ("hashtag", "#fyp"),
        ("mention", "@some"),
    ]
    assert checked_link("javascript:alert(1)") is None


def test_format_text_trims_and_counts_code_points() -> None:
    formatted = format_text("  <b>hi</b> 😀 https://x.com \n\n", "HTML")
    assert formatted.text == "hi 😀 https://x.com"
    assert formatted.length == 18  # limits count code points, offsets UTF-16 units
    assert formatted.entities == [
        {"offset": 0, "length": 2, "type": "bold"},
        {"offset": 6, "length": 13, "type": "url"},
    ]
    # Explicit entities are used only without parse_mode; detectable types are re-detected, not trusted.
    plain = format_text(
        "hi there",
        None,
        [{"type": "italic", "offset": 3, "length": 5}, {"type": "url", "offset": 0, "length": 2}],
    )
    assert plain.entities == [{"type": "italic", "offset": 3, "length": 5}]
    for mode in ("BBCode", "MarkdownV2", "Markdown"):  # the last two are real, but no bot path sends them
        with pytest.raises(ValueError, match="unsupported parse_mode"):
            format_text("x", mode)
