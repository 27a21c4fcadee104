"""Formatted text as the Bot API builds it: parse_mode parsing, entity detection, trimming and lengths.

The HTML parser follows tdlib's `MessageEntity.cpp` (which the Bot API server runs), so a bot sees the same
`can't parse entities` errors, with the same byte offsets, that Telegram would give it. HTML is the only
parse_mode the bot sends, so it is the only one played (Markdown / MarkdownV2 answer 400).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

Entity = dict[str, Any]

# Types a client may pass in `entities`; the rest (url, mention, ...) the server detects by itself.
_EXPLICIT_TYPES = {
    "bold",
    "italic",
    "underline",
    "strikethrough",
    "spoiler",
    "code",
    "pre",
    "text_link",
    "text_mention",
    "custom_emoji",
    "blockquote",
    "expandable_blockquote",
    "date_time",
}
_DETECTED_TYPES = {
    "mention",
    "hashtag",
    "cashtag",
    "bot_command",
    "url",
    "email",
    "phone_number",
    "bank_card_number",
}
# Entities that detected ones must not overlap (a URL inside <code> stays code).
_OPAQUE_TYPES = {"code", "pre", "text_link", "text_mention", "custom_emoji"}
_PRIORITY = {name: index for index, name in enumerate(sorted(_EXPLICIT_TYPES | _DETECTED_TYPES))}

_HTML_TAGS = {
    "a",
    "b",
    "strong",
    "i",
    "em",
    "s",
    "strike",
    "del",
    "u",
    "ins",
    "tg-spoiler",
    "tg-emoji",
    "tg-time",
    "span",
    "pre",
    "code",
    "blockquote",
}
_LINK_SCHEMES = {"http", "https", "tg", "ton", "tonsite"}


class EntityParseError(Exception):
    """The text could not be parsed in its parse_mode; the message is tdlib's."""


@dataclass(frozen=True, slots=True)
class FormattedText:
    """Text after parsing and trimming, with its entities (UTF-16 offsets)."""

    text: str
    entities: list[Entity] = field(default_factory=list)

    @property
    def length(self) -> int:
        """Length as Telegram's limits count it: Unicode code points."""
        return len(self.text)


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of entity offsets."""
    return len(text.encode("utf-16-le")) // 2


def _entity(kind: str, offset: int, length: int, **extra: Any) -> Entity:
    entity: Entity = {"offset": offset, "length": length, "type": kind}
    entity.update({key: value for key, value in extra.items() if value not in (None, "")})
    return entity


def _sort(entities: list[Entity]) -> list[Entity]:
    return sorted(entities, key=lambda e: (e["offset"], -e["length"], _PRIORITY.get(e["type"], 99)))


def _is_space(c: int) -> bool:
    # tdlib's is_space also treats the terminating NUL as a space, which ends its scanning loops.
    return c in (0, 0x20, 0x09, 0x0A, 0x0D, 0x0B)


def _first_unit(c: int) -> int:
    """UTF-16 units contributed by the UTF-8 byte `c` (0 for continuation bytes)."""
    if c & 0xC0 == 0x80:
        return 0
    return 2 if c >= 0xF0 else 1


def checked_link(url: str) -> str | None:
    """A URL Telegram accepts for a text_link, normalised; None when it would drop the entity."""
    url = url.strip()
    if not url:
        return None
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):(//)?", url)
    if match:
        if match.group(1).lower() not in _LINK_SCHEMES:
            return None
    elif re.match(r"^[\w-]+(\.[\w-]+)+(:\d+)?(/|$)", url):
        url = "http://" + url
    else:
        return None
    if re.match(r"^https?://[^/?#]+$", url, re.IGNORECASE):
        url += "/"
    return url


def _link_entity(offset: int, length: int, url: str) -> Entity | None:
    mention = re.fullmatch(r"tg://user\?id=(\d+)", url.strip())
    if mention:
        user = {"id": int(mention.group(1)), "is_bot": False, "first_name": "User"}
        return _entity("text_mention", offset, length, user=user)
    checked = checked_link(url)
    return _entity("text_link", offset, length, url=checked) if checked else None


class _Bytes:
    """A UTF-8 view with tdlib's NUL-terminated indexing (0 past the end)."""

    def __init__(self, text: str) -> None:
        self.data = text.encode("utf-8", "surrogatepass")
        self.size = len(self.data)

    def __getitem__(self, index: int) -> int:
        return self.data[index] if 0 <= index < self.size else 0


def _decode_html_entity(text: _Bytes, pos: int) -> tuple[int, int]:
    """(code point, position after it) of `&...;` at `pos`, or (0, pos) when it is not one."""
    end = pos + 1
    code = 0
    if text[pos + 1] == ord("#"):
        end += 1
        if text[pos + 2] == ord("x"):
            end += 1
            while chr(text[end]) in "0123456789abcdefABCDEF" and text[end]:
                code = code * 16 + int(chr(text[end]), 16)
                end += 1
        else:
            while ord("0") <= text[end] <= ord("9"):
                code = code * 10 + text[end] - ord("0")
                end += 1
        if code == 0 or code >= 0x10FFFF or end - pos >= 10:
            return 0, pos
    else:
        while chr(text[end]).isascii() and chr(text[end]).isalpha():
            end += 1
        name = text.data[pos + 1 : end]
        named = {b"lt": "<", b"gt": ">", b"amp": "&", b"quot": '"'}.get(name)
        if named is None:
            return 0, pos
        code = ord(named)
    if text[end] == ord(";"):
        end += 1
    return code, end


def parse_html(source: str) -> tuple[str, list[Entity]]:
    """Parse Telegram HTML into plain text and entities, or raise EntityParseError."""
    text = _Bytes(source)
    out = bytearray()
    entities: list[Entity] = []
    utf16 = 0
    # (tag, argument, unix time, utf16 offset, byte position in `out`)
    nested: list[tuple[str, str, int, int, int]] = []
    i = 0
    while i < text.size:
        c = text[i]
        if c == ord("&"):
            code, end = _decode_html_entity(text, i)
            if code:
                utf16 += 2 if code > 0xFFFF else 1
                out += chr(code).encode("utf-8", "surrogatepass")
                i = end
                continue
        if c != ord("<"):
            utf16 += _first_unit(c)
            out.append(c)
            i += 1
            continue

        begin = i
        i += 1
        if text[i] != ord("/"):
            while not _is_space(text[i]) and text[i] != ord(">"):
                i += 1
            if text[i] == 0:
                raise EntityParseError(f"Unclosed start tag at byte offset {begin}")
            tag = text.data[begin + 1 : i].decode("utf-8", "replace").lower()
            if tag not in _HTML_TAGS:
                raise EntityParseError(f'Unsupported start tag "{tag}" at byte offset {begin}')
            argument = ""
            unix = 0
            while text[i] != ord(">"):
                while text[i] != 0 and _is_space(text[i]):
                    i += 1
                if text[i] == ord(">"):
                    break
                attr_begin = i
                while not _is_space(text[i]) and text[i] not in b"=>/\"'":
                    i += 1
                attr = text.data[attr_begin:i]
                if not attr:
                    raise EntityParseError(f'Empty attribute name in the tag "{tag}" at byte offset {begin}')
                while text[i] != 0 and _is_space(text[i]):
                    i += 1
                if text[i] != ord("="):
                    if text[i] == 0:
                        raise EntityParseError(f'Unclosed start tag "{tag}" at byte offset {begin}')
                    if tag == "blockquote" and attr == b"expandable":
                        argument = "1"
                    continue
                i += 1
                while text[i] != 0 and _is_space(text[i]):
                    i += 1
                if text[i] == 0:
                    raise EntityParseError(f'Unclosed start tag "{tag}" at byte offset {begin}')
                if text[i] not in (ord("'"), ord('"')):
                    token_begin = i
                    while (text[i] < 128 and chr(text[i]).isalnum()) or text[i] in b".-":
                        i += 1
                    value = text.data[token_begin:i].decode("ascii").lower()
                    if not _is_space(text[i]) and text[i] != ord(">"):
                        raise EntityParseError(f"Unexpected end of name token at byte offset {token_begin}")
                else:
                    quote = text[i]
                    i += 1
                    buf = bytearray()
                    while text[i] != quote and text[i] != 0:
                        if text[i] == ord("&"):
                            code, end = _decode_html_entity(text, i)
                            if code:
                                buf += chr(code).encode("utf-8", "surrogatepass")
                                i = end
                                continue
                        buf.append(text[i])
                        i += 1
                    if text[i] == quote:
                        i += 1
                    value = buf.decode("utf-8", "replace")
                if text[i] == 0:
                    raise EntityParseError(f"Unclosed start tag at byte offset {begin}")
                if tag == "a" and attr == b"href":
                    argument = value
                elif tag == "code" and attr == b"class" and value.startswith("language-"):
                    argument = value[9:]
                elif tag == "span" and attr == b"class" and value.startswith("tg-"):
                    argument = value[3:]
                elif (tag == "tg-emoji" and attr == b"emoji-id") or (tag == "tg-time" and attr == b"format"):
                    argument = value
                elif tag == "blockquote" and attr == b"expandable":
                    argument = "1"
                elif tag == "tg-time" and attr == b"unix":
                    unix = int(value) if value.isdigit() else 0
            if tag == "span" and argument != "spoiler":
                raise EntityParseError(f'Tag "span" must have class "tg-spoiler" at byte offset {begin}')
            nested.append((tag, argument, unix, utf16, len(out)))
            i += 1
            continue

        # an end tag
        if not nested:
            raise EntityParseError(f"Unexpected end tag at byte offset {begin}")
        while not _is_space(text[i]) and text[i] != ord(">"):
            i += 1
        end_tag = text.data[begin + 2 : i].decode("utf-8", "replace").lower()
        while _is_space(text[i]) and text[i] != 0:
            i += 1
        if text[i] != ord(">"):
            raise EntityParseError(f"Unclosed end tag at byte offset {begin}")
        tag, argument, unix, offset, out_pos = nested[-1]
        if end_tag and end_tag != tag:
            raise EntityParseError(
                f'Unmatched end tag at byte offset {begin}, expected "</{tag}>", found "</{end_tag}>"'
            )
        if utf16 > offset:
            length = utf16 - offset
            _close_html_tag(entities, tag, argument, unix, offset, length, bytes(out[out_pos:]))
        nested.pop()
        i += 1

    if nested:
        raise EntityParseError(f'Can\'t find end tag corresponding to start tag "{nested[-1][0]}"')
    for entity in entities:
        if entity["type"] == "code":
            entity.pop("language", None)
    try:
        result = out.decode("utf-8")
    except UnicodeDecodeError:
        raise EntityParseError(
            "Text contains invalid Unicode characters after decoding HTML entities, "
            "check for unmatched surrogate code units"
        ) from None
    return result, _sort(entities)


def _close_html_tag(
    entities: list[Entity], tag: str, argument: str, unix: int, offset: int, length: int, inner: bytes
) -> None:
    simple = {
        "i": "italic",
        "em": "italic",
        "b": "bold",
        "strong": "bold",
        "s": "strikethrough",
        "strike": "strikethrough",
        "del": "strikethrough",
        "u": "underline",
        "ins": "underline",
        "tg-spoiler": "spoiler",
        "span": "spoiler",
    }
    last = entities[-1] if entities else None
    same_range = last is not None and last["offset"] == offset and last["length"] == length
    if tag in simple:
        entities.append(_entity(simple[tag], offset, length))
    elif tag == "tg-emoji":
        if not argument.isdigit() or int(argument) == 0:
            raise EntityParseError("Invalid custom emoji identifier specified")
        entities.append(_entity("custom_emoji", offset, length, custom_emoji_id=argument))
    elif tag == "tg-time":
        if unix > 0:
            entities.append(_entity("date_time", offset, length, unix_time=unix, date_time_format=argument))
    elif tag == "a":
        link = _link_entity(offset, length, argument or inner.decode("utf-8", "replace"))
        if link is not None:
            entities.append(link)
    elif tag == "pre":
        if last is not None and same_range and last["type"] == "code" and last.get("language"):
            last["type"] = "pre"
        else:
            entities.append(_entity("pre", offset, length))
    elif tag == "code":
        if last is not None and same_range and last["type"] == "pre" and argument:
            last["language"] = argument
        else:
            entities.append(_entity("code", offset, length, language=argument))
    elif tag == "blockquote":
        entities.append(_entity("expandable_blockquote" if argument else "blockquote", offset, length))


_TLDS = (
    "com|net|org|ru|io|me|tv|app|dev|co|uk|de|info|ly|gl|be|to|link|us|su|fr|it|es|jp|cn|in|br|xyz|site|online|"
    "ua|by|kz|eu|ai|gg|so|cc|biz|pro|club|top"
)
_URL = re.compile(
    r"(?<![\w@/.-])(?:(?:https?|tg|ton)://[^\s<>\"]+|(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+(?:" + _TLDS + r")"
    r"(?::\d{1,5})?(?:/[^\s<>\"]*)?)(?![\w-])",
    re.IGNORECASE,
)
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@(?:[\w-]+\.)+[a-z]{2,}(?![\w-])", re.IGNORECASE)
_MENTION = re.compile(r"(?<![\w@])@[a-z0-9_]{3,32}(?![\w@])", re.IGNORECASE)
_HASHTAG = re.compile(r"(?<![\w#])#\w*[^\W\d]\w*")
_CASHTAG = re.compile(r"(?<![\w$])\$[A-Z]{1,8}(?![\w$])")
_COMMAND = re.compile(r"(?<![\w/.])/[a-z0-9_]{1,64}(?:@[a-z0-9_]{3,32})?(?![\w/])", re.IGNORECASE)


def _strip_url_tail(url: str) -> str:
    """Drop trailing punctuation and unbalanced closing brackets, as Telegram's link finder does."""
    while url and url[-1] in ".,:;!?'\"":
        url = url[:-1]
    while url.endswith(")") and url.count(")") > url.count("("):
        url = url[:-1]
    return url


def find_entities(text: str, *, bot_commands: bool = True) -> list[Entity]:
    """Entities Telegram detects by itself: urls, emails, mentions, hashtags, cashtags and bot commands."""
    spans: list[tuple[int, int, str]] = []

    def free(start: int, end: int) -> bool:
        return all(end <= s or start >= e for s, e, _ in spans)

    for match in _EMAIL.finditer(text):
        spans.append((match.start(), match.end(), "email"))
    for match in _URL.finditer(text):
        url = _strip_url_tail(match.group(0))
        if url and free(match.start(), match.start() + len(url)):
            spans.append((match.start(), match.start() + len(url), "url"))
    patterns = [(_MENTION, "mention"), (_HASHTAG, "hashtag"), (_CASHTAG, "cashtag")]
    if bot_commands:
        patterns.append((_COMMAND, "bot_command"))
    for pattern, kind in patterns:
        for match in pattern.finditer(text):
            if free(match.start(), match.end()):
                spans.append((match.start(), match.end(), kind))
    return _sort([_entity(kind, utf16_len(text[:s]), utf16_len(text[s:e])) for s, e, kind in spans])


def _explicit_entities(raw: Any) -> list[Entity]:
    """Validate client-supplied entities (a list of objects), keeping only the types a client may set."""
    if raw is None or raw == "":
        return []
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise EntityParseError("can't parse entities JSON object") from None
    if not isinstance(raw, list):
        return []
    entities: list[Entity] = []
    for item in raw:
        if not isinstance(item, dict):
            raise EntityParseError("Can't parse MessageEntity: expected an Object")
        for name in ("offset", "length"):
            if not isinstance(item.get(name), int):
                raise EntityParseError(f'Can\'t parse MessageEntity: Field "{name}" must be a valid Number')
        kind = item.get("type")
        if not isinstance(kind, str):
            raise EntityParseError('Can\'t parse MessageEntity: Field "type" must be of type String')
        if kind in _DETECTED_TYPES:
            continue
        if kind not in _EXPLICIT_TYPES:
            raise EntityParseError("Can't parse MessageEntity: Unsupported type specified")
        if item["length"] > 0:
            entities.append(dict(item))
    return entities


def drop_carriage_returns(text: str, entities: list[Entity]) -> tuple[str, list[Entity]]:
    """Remove `\r` characters, as Telegram does, moving entity offsets to match."""
    if "\r" not in text:
        return text, entities
    new_offset = [0]  # new UTF-16 offset for each old UTF-16 offset
    position = 0
    for char in text:
        units = utf16_len(char)
        if char != "\r":
            position += units
        new_offset.extend([position] * units)
    kept = []
    for entity in entities:
        start = new_offset[entity["offset"]]
        end = new_offset[entity["offset"] + entity["length"]]
        if end > start:
            kept.append({**entity, "offset": start, "length": end - start})
    return text.replace("\r", ""), kept


def _trim(text: str, entities: list[Entity]) -> tuple[str, list[Entity]]:
    """Strip trailing whitespace, and leading spaces/newlines before the first entity, fixing offsets."""
    stripped = text.rstrip()
    end = utf16_len(stripped)
    kept: list[Entity] = []
    for entity in entities:
        if entity["offset"] >= end:
            continue
        if entity["offset"] + entity["length"] > end:
            entity = {**entity, "length": end - entity["offset"]}
        kept.append(entity)
    first = min((e["offset"] for e in kept), default=end)
    lead = 0
    while lead < min(first, len(stripped)) and stripped[lead] in " \n":
        lead += 1
    if lead:
        stripped = stripped[lead:]
        kept = [{**e, "offset": e["offset"] - lead} for e in kept]
    return stripped, kept


def format_text(
    text: str, parse_mode: str | None, entities: Any = None, *, detect: bool = True
) -> FormattedText:
    """Apply parse_mode (or explicit entities), trim, and add detected entities; raise EntityParseError."""
    mode = (parse_mode or "").lower()
    if text and mode and mode != "none":
        if mode != "html":
            # Markdown and MarkdownV2 are real modes, but no bot path sends them: the sandbox plays HTML only.
            raise ValueError(f"unsupported parse_mode {parse_mode!r}: the sandbox plays HTML, the bot's mode")
        plain, found = parse_html(text)
    else:
        plain, found = text, _explicit_entities(entities)
        total = utf16_len(plain)
        found = [e for e in found if e["offset"] >= 0 and e["offset"] + e["length"] <= total]
    plain, found = _trim(*drop_carriage_returns(plain, found))
    if detect:
        opaque = [(e["offset"], e["offset"] + e["length"]) for e in found if e["type"] in _OPAQUE_TYPES]
        for entity in find_entities(plain):
            start, end = entity["offset"], entity["offset"] + entity["length"]
            if all(end <= s or start >= e for s, e in opaque):
                found.append(entity)
    return FormattedText(plain, _sort(found))
