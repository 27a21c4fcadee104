"""deploy/: the compose file's services and health checks, the balancer's config, the image and its probe.

No Docker engine or compose plugin runs here, so the compose file is checked as data: against the Compose
Specification's JSON schema (the one `docker compose config` validates with; check-jsonschema's vendored
copy, offline), and for what `docker compose config` would resolve (merge keys, defaults for every variable)
and what the services need of each other, which no schema says.
The health probe itself runs for real against a loopback /healthz.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from bot.config import Settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
PROBE = DEPLOY / "healthcheck.py"


def compose_text() -> str:
    return (DEPLOY / "compose.yaml").read_text(encoding="utf-8")


def interpolated(text: str) -> str:
    """The file as compose reads it with no variable set: every `${VAR:-default}` becomes its default."""
    return re.sub(r"\$\{[A-Z_][A-Z0-9_]*:-([^}]*)\}", r"\1", text)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(interpolated(compose_text()))
    return loaded


def schema_check(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    """check-jsonschema with its copy of the Compose Specification's schema, on `text` as a compose file."""
    path = tmp_path / "compose.yaml"
    path.write_text(text, encoding="utf-8")
    command = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)


@pytest.mark.parametrize("read", ["as written", "interpolated"])
def test_the_file_follows_the_compose_specification(tmp_path: Path, read: str) -> None:
    text = compose_text() if read == "as written" else interpolated(compose_text())
    result = schema_check(tmp_path, text)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_refuses_what_compose_would(tmp_path: Path) -> None:
    # A misspelt key and a dependency condition compose does not know: `docker compose config` refuses both.
    for broken in (
        interpolated(compose_text()).replace("healthcheck:", "health_check:", 1),
        interpolated(compose_text()).replace("condition: service_healthy", "condition: service_ready", 1),
    ):
        assert broken != interpolated(compose_text())
        result = schema_check(tmp_path, broken)
        assert result.returncode == 1, result.stdout


def test_every_variable_has_a_default() -> None:
    # `docker compose config` fails on a required (`:?`) or bare unset variable; defaults keep it passing.
    variables = re.findall(r"\$\{([^}]*)\}", compose_text())
    assert variables
    assert [v for v in variables if ":-" not in v] == []


def test_services_and_a_health_check_on_each(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"bot", "discord", "lb", "postgres", "redis", "telegram-bot-api"}
    for name, service in services.items():
        test = service.get("healthcheck", {}).get("test")
        assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, name


def test_optional_services_sit_behind_profiles(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["telegram-bot-api"]["profiles"] == ["local-bot-api"]
    assert services["discord"]["profiles"] == ["discord"]
    assert all("profiles" not in services[name] for name in ("bot", "lb", "postgres", "redis"))


def test_bot_replicas_share_postgres_and_redis(compose: dict[str, Any]) -> None:
    services = compose["services"]
    bot = services["bot"]
    assert bot["command"] == ["tiktok-bot", "telegram"]  # webhook replicas; Discord runs once, apart
    assert int(bot["deploy"]["replicas"]) >= 2
    env = bot["environment"]
    assert env["DATABASE__URL"].startswith("postgresql://tiktok:")
    assert env["DATABASE__URL"].endswith("@postgres:5432/tiktok")
    assert env["REDIS__URL"] == "redis://redis:6379/0"
    assert env["TELEGRAM__WEBHOOK_LISTEN"] == "0.0.0.0:8080"
    postgres = services["postgres"]["environment"]
    assert (postgres["POSTGRES_USER"], postgres["POSTGRES_DB"]) == ("tiktok", "tiktok")
    # The password the bot connects with is the one PostgreSQL was given.
    assert f"tiktok:{postgres['POSTGRES_PASSWORD']}@" in env["DATABASE__URL"]
    assert services["postgres"]["healthcheck"]["test"] == ["CMD-SHELL", "pg_isready -U tiktok -d tiktok"]
    assert bot["env_file"] == [{"path": "../.env", "required": False}]


def test_the_bot_settings_named_exist(compose: dict[str, Any]) -> None:
    fields = Settings.model_fields
    for key in compose["services"]["bot"]["environment"]:
        section, _, name = key.lower().partition("__")
        if section == "redis":
            continue  # REDIS__* comes with the shared-state settings
        model = fields[section].annotation
        assert model is not None and name in model.model_fields, key  # type: ignore[union-attr]


def test_depends_on_waits_for_healthy_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for needed, condition in service.get("depends_on", {}).items():
            assert needed in services and condition == {"condition": "service_healthy"}, name
            assert "profiles" not in services[needed]
    assert set(services["bot"]["depends_on"]) == {"postgres", "redis"}
    assert set(services["lb"]["depends_on"]) == {"bot"}


def test_volumes_are_declared(compose: dict[str, Any]) -> None:
    named = {
        volume.split(":", 1)[0]
        for service in compose["services"].values()
        for volume in service.get("volumes", [])
        if not volume.startswith(".")
    }
    assert named == set(compose["volumes"])


def test_balancer_sends_to_every_replica(compose: dict[str, Any]) -> None:
    conf = (DEPLOY / "nginx.conf").read_text(encoding="utf-8")
    lb = compose["services"]["lb"]
    assert "./nginx.conf:/etc/nginx/nginx.conf:ro" in lb["volumes"]
    # The upstream is the bot service on its webhook port, re-resolved as replicas come and go.
    port = compose["services"]["bot"]["environment"]["TELEGRAM__WEBHOOK_LISTEN"].rsplit(":", 1)[1]
    assert re.search(rf"server bot:{port} resolve\b", conf)
    assert "resolver 127.0.0.11" in conf
    assert re.search(r"listen 8080;", conf) and lb["ports"] == ["8080:8080"]
    assert (
        "location = /lb-healthz" in conf and "http://127.0.0.1:8080/lb-healthz" in lb["healthcheck"]["test"]
    )
    # A replica that is down hands the update to another instead of losing it.
    assert re.search(r"proxy_next_upstream error [^;]*non_idempotent;", conf)
    assert conf.count("{") == conf.count("}")


def test_image_health_check_and_what_it_ships() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    final = dockerfile.rsplit("\nFROM ", 1)[1]
    assert "HEALTHCHECK" in final and "/usr/local/bin/tiktok-bot-healthcheck" in final
    assert "COPY deploy/healthcheck.py /usr/local/bin/tiktok-bot-healthcheck" in final
    # The runtime stage gets the built virtualenv only: no sources, tests, dev extra or build tools.
    assert re.findall(r"^COPY .*", final, re.M) == [
        "COPY --from=build /opt/venv /opt/venv",
        "COPY deploy/healthcheck.py /usr/local/bin/tiktok-bot-healthcheck",
    ]
    assert "tests" not in dockerfile.replace("no tests", "") and "[dev]" not in dockerfile
    assert "USER bot" in final
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".venv", ".git", "tests", ".env"} <= set(ignored)


@pytest.fixture
async def healthz() -> AsyncIterator[tuple[int, list[int]]]:
    """A loopback /healthz answering each status queued in the list (200 once it is empty)."""
    statuses: list[int] = []

    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"ready": True}, status=statuses.pop(0) if statuses else 200)

    app = web.Application()
    app.router.add_get("/healthz", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield port, statuses
    await runner.cleanup()


async def probe(env: dict[str, str]) -> tuple[int, str]:
    """Run the image's probe as the HEALTHCHECK does, with only `env`."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(PROBE),
        env={"PATH": os.environ.get("PATH", ""), **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_probe_follows_health_listen(healthz: tuple[int, list[int]]) -> None:
    port, statuses = healthz
    assert await probe({"HEALTH__LISTEN": f"127.0.0.1:{port}"}) == (0, "")
    statuses.append(503)
    code, out = await probe({"HEALTH__LISTEN": f"0.0.0.0:{port}"})
    assert code == 1 and "HTTP 503" in out


async def test_probe_uses_the_webhook_listener_in_webhook_mode(healthz: tuple[int, list[int]]) -> None:
    port, _ = healthz
    env = {"TELEGRAM__WEBHOOK_URL": "https://bot.example/tg", "TELEGRAM__WEBHOOK_LISTEN": f"0.0.0.0:{port}"}
    assert await probe(env) == (0, "")


async def test_probe_fails_when_nothing_answers_or_nothing_is_served() -> None:
    code, out = await probe({"HEALTH__LISTEN": "127.0.0.1:9"})  # discard port: nothing listens
    assert code == 1 and "127.0.0.1:9/healthz" in out
    code, out = await probe({})
    assert code == 1 and "set HEALTH__LISTEN" in out
