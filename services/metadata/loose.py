"""Forgiving readers of upstream JSON: numbers arrive as strings, fields go missing, types drift."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

Raw = Mapping[str, Any]


def json_or_none(response: httpx.Response) -> Any:
    """The response body as JSON, or None when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None


def as_int(value: Any) -> int | None:
    """An int from an int, a float or a digit string; None otherwise."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def as_float(value: Any) -> float | None:
    """A float from a number or a numeric string; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def as_str(value: Any) -> str | None:
    """A non-empty string (ints as their digits); None otherwise."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def as_map(value: Any) -> Raw:
    """The value if it is a mapping, else an empty one."""
    return value if isinstance(value, Mapping) else {}


def as_seq(value: Any) -> Sequence[Any]:
    """The value if it is a list or tuple, else an empty tuple."""
    return value if isinstance(value, list | tuple) else ()


def as_time(value: Any) -> datetime | None:
    """A UTC datetime from Unix seconds; None for missing or impossible values."""
    seconds = as_int(value)
    if seconds is None or seconds <= 0:
        return None
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def first_url(value: Any) -> str | None:
    """The first URL of a `{url_list: [...]}` / `{urlList: [...]}` object, or a plain string."""
    if isinstance(value, str):
        return value or None
    obj = as_map(value)
    for key in ("url_list", "urlList", "UrlList"):
        urls = as_seq(obj.get(key))
        if urls and isinstance(urls[0], str):
            return str(urls[0])
    return None


def as_list(value: Any) -> list[Any]:
    """The value if it is a list, else an empty one."""
    return value if isinstance(value, list) else []
