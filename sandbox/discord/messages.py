"""Validation of message payloads and application commands, with Discord's error codes and shapes."""

from __future__ import annotations

import re
from typing import Any

from sandbox.discord.world import JSON

MAX_CONTENT = 2000
MAX_ATTACHMENTS = 10
MAX_EMBEDS = 10
EMBED_TOTAL = 6000
EMBED_LIMITS = {"title": 256, "description": 4096}
COMMAND_NAME = re.compile(r"^[-_'\w]{1,32}$")
MAX_COMMANDS = 100
MAX_OPTIONS = 25


class DiscordError(Exception):
    """An error the emulated API answers with: HTTP status, Discord code, message, optional field errors."""

    def __init__(self, status: int, code: int, message: str, errors: JSON | None = None) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors

    def body(self) -> JSON:
        """The JSON error body."""
        data: JSON = {"message": self.message, "code": self.code}
        if self.errors:
            data["errors"] = self.errors
        return data


def field_error(code: str, message: str) -> JSON:
    """One leaf of a 50035 `errors` tree."""
    return {"_errors": [{"code": code, "message": message}]}


def invalid_form(errors: JSON) -> DiscordError:
    """400 Invalid Form Body (50035) with per-field errors."""
    return DiscordError(400, 50035, "Invalid Form Body", errors)


def check_message(payload: JSON, *, n_files: int, n_kept: int = 0) -> None:
    """Enforce content, embed and attachment limits on a message create/edit payload."""
    errors: JSON = {}
    content = payload.get("content")
    if content is not None and not isinstance(content, str):
        errors["content"] = field_error("STRING_TYPE_CONVERT", "Could not interpret value as string.")
    elif isinstance(content, str) and len(content) > MAX_CONTENT:
        errors["content"] = field_error("BASE_TYPE_MAX_LENGTH", f"Must be {MAX_CONTENT} or fewer in length.")
    embeds = payload.get("embeds")
    if embeds is not None:
        embed_errors = _check_embeds(embeds)
        if embed_errors:
            errors["embeds"] = embed_errors
    if n_files + n_kept > MAX_ATTACHMENTS:
        errors["attachments"] = field_error(
            "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_ATTACHMENTS} or fewer in length."
        )
    if errors:
        raise invalid_form(errors)


def check_not_empty(payload: JSON, *, n_attachments: int) -> None:
    """50006 when nothing would be shown."""
    if (
        not payload.get("content")
        and not payload.get("embeds")
        and not n_attachments
        and not payload.get("components")
        and not payload.get("sticker_ids")
        and not payload.get("poll")
    ):
        raise DiscordError(400, 50006, "Cannot send an empty message")


def _check_embeds(embeds: Any) -> JSON:
    if not isinstance(embeds, list):
        return field_error("LIST_TYPE_CONVERT", "Must be an array.")
    if len(embeds) > MAX_EMBEDS:
        return field_error("BASE_TYPE_MAX_LENGTH", f"Must be {MAX_EMBEDS} or fewer in length.")
    errors: JSON = {}
    total = 0
    for index, embed in enumerate(embeds):
        if not isinstance(embed, dict):
            errors[str(index)] = field_error(
                "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType"
            )
            continue
        item: JSON = {}
        for key, limit in EMBED_LIMITS.items():
            text = embed.get(key)
            if isinstance(text, str):
                total += len(text)
                if len(text) > limit:
                    item[key] = field_error("BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")
        fields = embed.get("fields") or []
        if len(fields) > 25:
            item["fields"] = field_error("BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        for f_index, fld in enumerate(fields):
            name, value = str(fld.get("name", "")), str(fld.get("value", ""))
            total += len(name) + len(value)
            bad: JSON = {}
            if not name or len(name) > 256:
                bad["name"] = field_error("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 256 in length.")
            if not value or len(value) > 1024:
                bad["value"] = field_error("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 1024 in length.")
            if bad:
                item.setdefault("fields", {})[str(f_index)] = bad
        footer = (embed.get("footer") or {}).get("text")
        if isinstance(footer, str):
            total += len(footer)
            if len(footer) > 2048:
                item["footer"] = {
                    "text": field_error("BASE_TYPE_MAX_LENGTH", "Must be 2048 or fewer in length.")
                }
        author = (embed.get("author") or {}).get("name")
        if isinstance(author, str):
            total += len(author)
            if len(author) > 256:
                item["author"] = {
                    "name": field_error("BASE_TYPE_MAX_LENGTH", "Must be 256 or fewer in length.")
                }
        if item:
            errors[str(index)] = item
    if not errors and total > EMBED_TOTAL:
        return field_error("MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000")
    return errors


def check_commands(commands: Any) -> None:
    """Validate a bulk overwrite of application commands as Discord does (names, descriptions, options)."""
    if not isinstance(commands, list):
        raise invalid_form({"_errors": [{"code": "LIST_TYPE_CONVERT", "message": "Must be an array."}]})
    errors: JSON = {}
    if sum(1 for c in commands if isinstance(c, dict) and c.get("type", 1) == 1) > MAX_COMMANDS:
        raise invalid_form(field_error("BASE_TYPE_MAX_LENGTH", f"Must be {MAX_COMMANDS} or fewer in length."))
    seen: set[tuple[str, int]] = set()
    for index, command in enumerate(commands):
        item = check_command(command)
        key = (
            (str(command.get("name")), int(command.get("type", 1))) if isinstance(command, dict) else ("", 0)
        )
        if key in seen:
            item.setdefault(
                "name", field_error("APPLICATION_COMMANDS_DUPLICATE_NAME", "Command name is duplicated")
            )
        seen.add(key)
        if item:
            errors[str(index)] = item
    if errors:
        raise invalid_form(errors)


def check_command(command: Any) -> JSON:
    """Field errors of one command (empty when valid)."""
    if not isinstance(command, dict):
        return field_error("DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
    errors: JSON = {}
    kind = command.get("type", 1)
    _check_name(command.get("name"), errors, slash=kind == 1)
    description = command.get("description", "")
    if kind == 1:
        _check_description(description, errors)
    elif description:
        errors["description"] = field_error("BASE_TYPE_MAX_LENGTH", "Must be 0 or fewer in length.")
    _check_localizations(command, errors, slash=kind == 1)
    options = command.get("options") or []
    if options:
        option_errors = _check_options(options)
        if option_errors:
            errors["options"] = option_errors
    return errors


def _check_name(name: Any, errors: JSON, *, slash: bool) -> None:
    if not isinstance(name, str) or not 1 <= len(name) <= 32:
        errors["name"] = field_error("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 32 in length.")
    elif slash and (not COMMAND_NAME.match(name) or name != name.lower()):
        errors["name"] = field_error("APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")


def _check_description(description: Any, errors: JSON, key: str = "description") -> None:
    if not isinstance(description, str) or not 1 <= len(description) <= 100:
        errors[key] = field_error("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")


def _check_localizations(item: JSON, errors: JSON, *, slash: bool) -> None:
    for locale, name in (item.get("name_localizations") or {}).items():
        bad: JSON = {}
        _check_name(name, bad, slash=slash)
        if bad:
            errors.setdefault("name_localizations", {})[locale] = bad["name"]
    if slash:
        for locale, text in (item.get("description_localizations") or {}).items():
            bad = {}
            _check_description(text, bad)
            if bad:
                errors.setdefault("description_localizations", {})[locale] = bad["description"]


def _check_options(options: Any) -> JSON:
    if not isinstance(options, list):
        return field_error("LIST_TYPE_CONVERT", "Must be an array.")
    if len(options) > MAX_OPTIONS:
        return field_error("BASE_TYPE_MAX_LENGTH", f"Must be {MAX_OPTIONS} or fewer in length.")
    errors: JSON = {}
    optional_seen = False
    for index, option in enumerate(options):
        item: JSON = {}
        if not isinstance(option, dict):
            errors[str(index)] = field_error(
                "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType"
            )
            continue
        _check_name(option.get("name"), item, slash=True)
        _check_description(option.get("description"), item)
        _check_localizations(option, item, slash=True)
        kind = option.get("type")
        if not isinstance(kind, int) or not 1 <= kind <= 11:
            item["type"] = field_error("BASE_TYPE_CHOICES", "Value must be one of (1, ..., 11).")
        if kind in (1, 2) and option.get("options"):
            sub = _check_options(option["options"])
            if sub:
                item["options"] = sub
        if option.get("required"):
            if optional_seen:
                item["required"] = field_error(
                    "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                    "Required options must be placed before non-required options",
                )
        elif kind not in (1, 2):
            optional_seen = True
        if len(option.get("choices") or []) > 25:
            item["choices"] = field_error("BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
        if item:
            errors[str(index)] = item
    return errors
