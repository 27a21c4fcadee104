"""Settings: the environment-variable contract, list parsing, secrets and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.__main__ import main
from bot.config import Settings, SettingsError, load_settings, masked


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for key in list(os.environ):
        if "__" in key or key == "UPSTREAM_ROUTES":
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def test_defaults() -> None:
    s = load_settings(None)
    assert s.telegram.api_url == "https://api.telegram.org"
    assert s.discord.api_url == "https://discord.com/api/v10"
    assert s.discord.gateway_url == "wss://gateway.discord.gg"
    assert s.ttsave.url == "http://45.13.225.104:4347/api/v3"
    assert s.ensembledata.url == "https://ensembledata.com/apis"
    assert s.research.url == "https://open.tiktokapis.com"
    assert s.download.backends == ["ttsave", "web"]
    assert s.metadata.providers == ["ensembledata", "research"]
    assert s.database.path == Path("data/tiktok-bot.sqlite3")
    assert s.upstream_routes == {}
    assert s.limits.links_per_message == 5


def test_env_names_and_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM__TOKEN", "123:abc")
    monkeypatch.setenv("DISCORD__TOKEN", "xyz")
    monkeypatch.setenv("DOWNLOAD__BACKENDS", "web, ttsave")
    monkeypatch.setenv("METADATA__PROVIDERS", "research")
    monkeypatch.setenv("TELEGRAM__ADMINS", "1,2")
    monkeypatch.setenv("UPSTREAM_ROUTES", json.dumps({"*.tiktok.com": "http://127.0.0.1:9"}))
    monkeypatch.setenv("LOG__FORMAT", "json")
    s = load_settings(None)
    assert s.telegram.token is not None and s.telegram.token.get_secret_value() == "123:abc"
    assert s.download.backends == ["web", "ttsave"]
    assert s.metadata.providers == ["research"]
    assert s.telegram.admins == [1, 2]
    assert s.upstream_routes == {"*.tiktok.com": "http://127.0.0.1:9"}
    assert s.log.format == "json"


def test_dotenv_file(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("ENSEMBLEDATA__TOKEN=secret-ed\nDATABASE__PATH=/tmp/x.sqlite3\n")
    s = load_settings(env)
    assert s.ensembledata.token is not None
    assert s.ensembledata.token.get_secret_value() == "secret-ed"
    assert s.database.path == Path("/tmp/x.sqlite3")


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("DOWNLOAD__BACKENDS", "ttsave,bogus", "DOWNLOAD__BACKENDS"),
        ("LOG__FORMAT", "xml", "LOG__FORMAT"),
        ("LIMITS__LINKS_PER_MESSAGE", "zero", "LIMITS__LINKS_PER_MESSAGE"),
        ("UPSTREAM_ROUTES", '{"www.tiktok.com": "ftp://x"}', "UPSTREAM_ROUTES"),
        ("TELEGRAM__ADMINS", "1,x", "TELEGRAM__ADMINS"),
    ],
)
def test_invalid_value_is_one_line(monkeypatch: pytest.MonkeyPatch, key: str, value: str, named: str) -> None:
    monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as info:
        load_settings(None)
    text = str(info.value)
    assert named in text
    assert "\n" not in text


def test_cli_invalid_setting_exits_2_without_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOG__LEVEL", "LOUD")
    assert main(["config"]) == 2
    err = capsys.readouterr().err
    assert "LOG__LEVEL" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_secrets_masked(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TELEGRAM__TOKEN", "123:very-secret")
    monkeypatch.setenv("RESEARCH__CLIENT_SECRET", "hush")
    s = Settings()
    assert "very-secret" not in repr(s)
    assert "very-secret" not in json.dumps(masked(s))
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "very-secret" not in out and "hush" not in out
    assert json.loads(out)["telegram"]["token"] == "**********"


def test_empty_temp_dir_means_the_system_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOWNLOAD__TEMP_DIR", "")
    assert load_settings(None).download.temp_dir is None
