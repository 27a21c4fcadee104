"""Message catalogues: one JSON file per language in bot/locales; add a file to add a language."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"
DEFAULT_LANGUAGE = "en"


@cache
def catalogues() -> dict[str, dict[str, str]]:
    """Every catalogue by language code, read once."""
    return {
        path.stem: json.loads(path.read_text(encoding="utf-8")) for path in sorted(LOCALES_DIR.glob("*.json"))
    }


def languages() -> list[str]:
    """The language codes with a catalogue."""
    return list(catalogues())


def pick_language(code: str | None, preferred: str | None = None) -> str:
    """The catalogue for a chat: its setting unless `auto`, else the user's language, else English."""
    available = catalogues()
    for candidate in (preferred, code):
        if not candidate or candidate == "auto":
            continue
        base = candidate.replace("_", "-").split("-")[0].lower()
        if base in available:
            return base
    return DEFAULT_LANGUAGE


def t(lang: str, key: str, **values: Any) -> str:
    """The text for `key` in `lang` (falling back to English, then to the key), formatted with `values`."""
    cats = catalogues()
    text = cats.get(lang, {}).get(key) or cats[DEFAULT_LANGUAGE].get(key) or key
    return text.format(**values) if values else text
