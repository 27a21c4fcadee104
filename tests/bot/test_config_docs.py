"""The documentation of settings stays true: every setting in the README's table and in .env.example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from bot.config import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]


def setting_names() -> list[str]:
    names = []
    for section, field in Settings.model_fields.items():
        model = field.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            names += [f"{section.upper()}__{key.upper()}" for key in model.model_fields]
        else:
            names.append(section.upper())
    return names


def test_every_setting_is_in_the_readme_table() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`([A-Z_]+)`", table))
    assert [n for n in setting_names() if n not in documented] == []


def test_every_setting_is_in_env_example() -> None:
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    present = set(re.findall(r"^#?\s*([A-Z_]+)=", text, flags=re.M))
    assert [n for n in setting_names() if n not in present] == []


def test_env_example_loads_as_is(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for key in list(os.environ):
        if "__" in key or key == "UPSTREAM_ROUTES":
            monkeypatch.delenv(key)
    settings = load_settings(ROOT / ".env.example")
    assert settings.telegram.token is None or not settings.telegram.token.get_secret_value()
    assert settings.download.backends == ["ttsave", "web"]
