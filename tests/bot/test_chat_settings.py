"""What a settings button changes (bot/chat/settings.py): the same table for both frontends."""

from __future__ import annotations

import pytest

from bot.chat.i18n import languages
from bot.chat.settings import TOGGLES, change_for, next_language, next_quality
from services.store.chats import ChatPrefs


@pytest.mark.parametrize("name", TOGGLES)
def test_a_toggle_flips(name: str) -> None:
    prefs = ChatPrefs()
    assert change_for(prefs, name) == {name: not getattr(prefs, name)}


def test_language_and_quality_cycle_back_to_auto() -> None:
    assert change_for(ChatPrefs(), "language") == {"language": languages()[0]}
    assert next_language(languages()[-1]) == "auto"
    assert [next_quality(q) for q in ("auto", "compatible", "best")] == ["compatible", "best", "auto"]
    assert change_for(ChatPrefs(quality="best"), "quality") == {"quality": "auto"}
    assert next_language("xx") == "auto" and next_quality("xx") == "auto"  # unknown values restart the cycle


@pytest.mark.parametrize("name", ["old_setting", "", "prefs", "__class__"])
def test_an_unknown_button_changes_nothing(name: str) -> None:
    assert change_for(ChatPrefs(), name) is None
