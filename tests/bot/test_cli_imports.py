"""Everyday CLI commands start without loading the frontends or the sandbox (issue 19: start-up ≤ 0.5 s)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("aiogram", "discord", "sandbox")
# What the bot's wiring pulls in (aiohttp, metrics, the chat flow) and drivers of engines not chosen.
SLOW = ("aiohttp", "asyncpg", "bot.wiring", "prometheus_client", "redis")
FAST = {
    "links": ["links", "https://www.tiktok.com/@scout2015/video/6718335390845095173"],
    "resolve": ["resolve", "--help"],
    "download": ["download", "--help"],
    "info": ["info", "post", "--help"],
    "stats": ["stats", "--days", "1"],
}

PROBE = """
import contextlib, io, json, sys
from bot.cli import run_cli
out = io.StringIO()
with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
    code = run_cli(sys.argv[1:])
print(json.dumps({"modules": sorted(sys.modules), "out": out.getvalue()}))
"""


def _run(argv: list[str], tmp_path: Path) -> dict[str, object]:
    env_file = tmp_path / ".env"
    env_file.write_text(f"DATABASE__PATH={tmp_path / 'absent.sqlite3'}\n")
    done = subprocess.run(
        [sys.executable, "-c", PROBE, "--env-file", str(env_file), *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    modules = result.pop("modules")
    assert isinstance(modules, list)
    tops = {name.split(".")[0] for name in modules}
    result["heavy"] = sorted(tops & set(HEAVY))
    result["slow"] = sorted((tops | set(modules)) & set(SLOW))
    return result


@pytest.mark.parametrize("name", sorted(FAST))
def test_fast_commands_load_no_frontend_nor_sandbox(name: str, tmp_path: Path) -> None:
    result = _run(FAST[name], tmp_path)
    assert result["heavy"] == [], f"`tiktok-bot {name}` imported {result['heavy']}"
    assert result["slow"] == [], f"`tiktok-bot {name}` imported {result['slow']}"
    assert result["out"], "the command printed nothing: the probe did not run it"


def test_demo_still_loads_what_it_needs(tmp_path: Path) -> None:
    # The probe sees heavy imports when there are some: `demo --help` loads the emulators and both frontends.
    result = _run(["demo", "--help"], tmp_path)
    assert result["heavy"] == list(HEAVY)


def test_the_command_table_names_every_sub_command() -> None:
    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if a.dest == "command"]
    assert isinstance(subparsers.choices, dict)
    assert set(subparsers.choices) == set(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_parses_with_only_its_module(command: str) -> None:
    parser = build_parser([command])
    (subparsers,) = [a for a in parser._actions if a.dest == "command"]
    assert isinstance(subparsers.choices, dict)
    assert command in subparsers.choices
    assert len(subparsers.choices) < len(COMMANDS)
