"""DATABASE__* settings: hashing user ids needs a salt, and the store reads the rest as given."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot.config import SettingsError, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if "__" in key or key == "UPSTREAM_ROUTES":
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def test_hashing_without_a_salt_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE__HASH_USER_IDS", "true")
    with pytest.raises(SettingsError) as info:
        load_settings(None)
    assert "DATABASE__USER_ID_SALT" in str(info.value) and "\n" not in str(info.value)


def test_hashing_with_a_salt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE__HASH_USER_IDS", "true")
    monkeypatch.setenv("DATABASE__USER_ID_SALT", "a-long-random-secret")
    monkeypatch.setenv("DATABASE__FLUSH_ROWS", "50")
    monkeypatch.setenv("DATABASE__FLUSH_MS", "250")
    monkeypatch.setenv("DATABASE__RETENTION_DAYS", "90")
    db = load_settings(None).database
    assert db.hash_user_ids and db.user_id_salt is not None
    assert db.user_id_salt.get_secret_value() == "a-long-random-secret"
    assert (db.flush_rows, db.flush_ms, db.retention_days) == (50, 250, 90)
