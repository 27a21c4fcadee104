"""Settings: the only place the environment (and `.env`) is read."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from services.http import mask_proxy, parse_proxy, parse_routes
from services.wire import OFF, resolve_target

MIB = 1024 * 1024
# Telegram's "50 MB" and "2000 MB" are binary megabytes. The Bot API server writes its own documented
# "20 MB" download limit as `MAX_DOWNLOAD_FILE_SIZE = 20 << 20` (tdlib/telegram-bot-api,
# telegram-bot-api/Client.h), and the "2000 MB" a local server uploads is TDLib's 4000 parts of `512 << 10`
# bytes (tdlib/td, td/telegram/files/PartsManager.h: MAX_PART_COUNT, MAX_PART_SIZE) = 2000 << 20. The cloud
# server's 50 MB is enforced in front of that code, in the same unit: 50 << 20 = 52,428,800 bytes.
CLOUD_UPLOAD_LIMIT = 50 * MIB
LOCAL_UPLOAD_LIMIT = 2000 * MIB


def _split_commas(value: Any) -> Any:
    """Accept `a,b,c` for list settings, as well as JSON lists and real lists."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


CommaList = Annotated[list[str], NoDecode]
CommaInts = Annotated[list[int], NoDecode]


class _Section(BaseModel):
    """A settings section; list fields accept comma-separated values."""

    model_config = {"extra": "ignore"}


class TelegramSettings(_Section):
    """Telegram frontend."""

    token: SecretStr | None = None
    api_url: str = "https://api.telegram.org"
    local_api: bool = False
    admins: CommaInts = Field(default_factory=list)
    storage_chat_id: int | None = None
    webhook_url: str | None = None
    webhook_listen: str = "0.0.0.0:8080"
    webhook_secret: SecretStr | None = None

    _split = field_validator("admins", mode="before")(_split_commas)

    @property
    def upload_limit(self) -> int:
        """Bytes one upload may carry: 50 MiB on the cloud Bot API, 2000 MiB on a local server."""
        return LOCAL_UPLOAD_LIMIT if self.local_api else CLOUD_UPLOAD_LIMIT


class DiscordSettings(_Section):
    """Discord frontend."""

    token: SecretStr | None = None
    api_url: str = "https://discord.com/api/v10"
    gateway_url: str = "wss://gateway.discord.gg"
    guild_ids: CommaInts = Field(default_factory=list)
    admins: CommaInts = Field(default_factory=list)
    message_content: bool = True

    _split = field_validator("guild_ids", "admins", mode="before")(_split_commas)


def _proxy(value: SecretStr | None) -> SecretStr | None:
    """Validate an optional proxy URL (a secret: it may carry credentials)."""
    if value is not None and value.get_secret_value().strip():
        parse_proxy(value.get_secret_value())
        return value
    return None


class TTSaveSettings(_Section):
    """TTSave download API."""

    url: str = "http://45.13.225.104:4347/api/v3"
    timeout: float = Field(default=60.0, gt=0)
    proxy: SecretStr | None = None

    _check_proxy = field_validator("proxy")(_proxy)


class EnsembleDataSettings(_Section):
    """EnsembleData metadata API."""

    token: SecretStr | None = None
    url: str = "https://ensembledata.com/apis"
    timeout: float = Field(default=30.0, gt=0)


class ResearchSettings(_Section):
    """TikTok Research API."""

    client_key: str | None = None
    client_secret: SecretStr | None = None
    url: str = "https://open.tiktokapis.com"
    qps: float = Field(default=5.0, gt=0)
    daily_quota: int = Field(default=1000, ge=1)


class DownloadSettings(_Section):
    """The download service."""

    backends: CommaList = Field(default_factory=lambda: ["ttsave", "web"])
    max_concurrent: int = Field(default=4, ge=1)
    temp_dir: Path | None = None
    timeout: float = Field(default=120.0, gt=0)
    first_byte_timeout: float = Field(default=10.0, gt=0)
    breaker_failures: int = Field(default=3, ge=1)
    breaker_cooldown: float = Field(default=30.0, ge=0)
    quality: Literal["compatible", "best"] = "compatible"
    door_attempts: int = Field(default=3, ge=1, le=10)
    impersonate: str = "chrome"
    proxies: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    sessions: int = Field(default=4, ge=1, le=64)
    session_max_age: float = Field(default=1800.0, gt=0)
    proxy_bench: float = Field(default=600.0, ge=0)

    _split = field_validator("backends", mode="before")(_split_commas)
    _split_proxies = field_validator("proxies", mode="before")(_split_commas)

    @field_validator("impersonate")
    @classmethod
    def _known_target(cls, value: str) -> str:
        value = value.strip().lower()
        if value != OFF:
            resolve_target(value)
        return value

    @field_validator("proxies")
    @classmethod
    def _proxy_urls(cls, value: list[SecretStr]) -> list[SecretStr]:
        for proxy in value:
            parse_proxy(proxy.get_secret_value())
        return value

    @field_validator("backends")
    @classmethod
    def _known_backends(cls, value: list[str]) -> list[str]:
        unknown = [b for b in value if b not in ("ttsave", "web", "ytdlp")]
        if unknown:
            raise ValueError(f"unknown backend {unknown[0]!r}; choose from ttsave, web, ytdlp")
        if not value:
            raise ValueError("at least one backend is needed")
        return value


class HealthSettings(_Section):
    """The health endpoint in polling mode."""

    listen: str | None = None


class MetadataSettings(_Section):
    """The metadata service."""

    providers: CommaList = Field(default_factory=lambda: ["ensembledata", "research"])
    cache_ttl: float = Field(default=600.0, ge=0)
    proxy: SecretStr | None = None

    _split = field_validator("providers", mode="before")(_split_commas)
    _check_proxy = field_validator("proxy")(_proxy)

    @field_validator("providers")
    @classmethod
    def _known_providers(cls, value: list[str]) -> list[str]:
        unknown = [p for p in value if p not in ("ensembledata", "research")]
        if unknown:
            raise ValueError(f"unknown provider {unknown[0]!r}; choose from ensembledata, research")
        return value


class DatabaseSettings(_Section):
    """The SQLite store."""

    path: Path = Path("data/tiktok-bot.sqlite3")
    hash_user_ids: bool = False
    user_id_salt: SecretStr | None = None
    retention_days: int = Field(default=0, ge=0)
    flush_rows: int = Field(default=200, ge=1)
    flush_ms: int = Field(default=500, ge=1)

    @model_validator(mode="after")
    def _salt_for_hashing(self) -> DatabaseSettings:
        # An unsalted hash of a numeric user id is undone by hashing every id; the salt is the secret.
        if self.hash_user_ids and not (self.user_id_salt and self.user_id_salt.get_secret_value()):
            raise ValueError("DATABASE__HASH_USER_IDS needs DATABASE__USER_ID_SALT, a long random secret")
        return self


class LogSettings(_Section):
    """Logging."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["console", "json"] = "console"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class LimitsSettings(_Section):
    """What one user, one chat and the whole bot may ask for."""

    links_per_message: int = Field(default=5, ge=1, le=50)
    user_per_minute: int = Field(default=10, ge=1)
    chat_per_minute: int = Field(default=30, ge=1)
    concurrency: int = Field(default=8, ge=1)
    queue_notice_after: float = Field(default=3.0, ge=0)
    short_link_ttl: float = Field(default=3600.0, ge=0)
    reply_budget: float = Field(default=60.0, gt=0)


class Settings(BaseSettings):
    """Everything the bot can be told, read from the environment and `.env`."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        env_nested_delimiter="__",
        # `KEY=` in .env (as .env.example has it) means "not set", not an empty value.
        env_ignore_empty=True,
        extra="ignore",
    )

    telegram: TelegramSettings = Field(default_factory=TelegramSettings)
    discord: DiscordSettings = Field(default_factory=DiscordSettings)
    ttsave: TTSaveSettings = Field(default_factory=TTSaveSettings)
    ensembledata: EnsembleDataSettings = Field(default_factory=EnsembleDataSettings)
    research: ResearchSettings = Field(default_factory=ResearchSettings)
    download: DownloadSettings = Field(default_factory=DownloadSettings)
    metadata: MetadataSettings = Field(default_factory=MetadataSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    upstream_routes: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    upstream_ca_file: Path | None = None

    @field_validator("upstream_ca_file")
    @classmethod
    def _ca_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no CA bundle at {value}")
        return value

    @field_validator("upstream_routes", mode="before")
    @classmethod
    def _routes(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = json.loads(value) if value.strip() else {}
        parse_routes(value)  # validates patterns and base URLs
        return value


class SettingsError(Exception):
    """Settings could not be loaded; the message is one line naming the variable."""


def load_settings(env_file: str | Path | None = ".env") -> Settings:
    """Load settings, turning validation errors into one readable line."""
    try:
        return Settings(_env_file=env_file)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = "__".join(str(part) for part in err["loc"]).upper() or "settings"
        raise SettingsError(f"invalid setting {name}: {err['msg']}") from None
    except ValueError as exc:  # a malformed .env or JSON value outside pydantic's own checks
        raise SettingsError(f"invalid settings: {exc}") from None


class _ExactSettings(Settings):
    """Settings from the values given only: no environment variables, no `.env`."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the constructor's arguments."""
        return (init_settings,)


def settings_from(values: Mapping[str, str]) -> Settings:
    """Settings from exactly these `KEY=VALUE` pairs (`TELEGRAM__TOKEN`, ...), ignoring the environment and
    `.env` — what the demo and the benchmarks run on, so a developer's settings cannot leak in."""
    nested: dict[str, Any] = {}
    for key, value in values.items():
        *sections, name = key.lower().split("__")
        node = nested
        for section in sections:
            node = node.setdefault(section, {})
        node[name] = value
    try:
        return _ExactSettings(**nested)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = "__".join(str(part) for part in err["loc"]).upper() or "settings"
        raise SettingsError(f"invalid setting {name}: {err['msg']}") from None


def masked(settings: Settings) -> dict[str, Any]:
    """The effective settings as plain data, with every secret masked."""
    data: dict[str, Any] = settings.model_dump(mode="json")

    def walk(node: Any, model: Any) -> Any:
        if isinstance(model, BaseModel):
            out: dict[str, Any] = {}
            for key in type(model).model_fields:
                val = getattr(model, key)
                if isinstance(val, SecretStr):
                    out[key] = _mask(key, val)
                elif isinstance(val, list) and val and all(isinstance(v, SecretStr) for v in val):
                    out[key] = [_mask(key, v) for v in val]
                else:
                    out[key] = walk(node[key], val)
            return out
        return node

    result: dict[str, Any] = walk(data, settings)
    return result


def _mask(key: str, secret: SecretStr) -> str:
    # A proxy keeps its scheme, host and port visible (the operator needs them); credentials never show.
    text = secret.get_secret_value()
    if not text:
        return ""
    return mask_proxy(text) if key in ("proxy", "proxies") else "**********"
