"""Settings, loaded once from the environment (prefix ``TRENDFLOW_``) and an optional ``trendflow.toml``.

settings = load_settings()
settings.spool_path  # <data dir>/spool/ingest-fallback.jsonl unless set
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from trendflow.errors import ConfigError

ENV_PREFIX = "TRENDFLOW_"
TOML_FILE = "trendflow.toml"
SECRET_SETTINGS = frozenset({"TRENDFLOW_API_KEYS", "TRENDFLOW_ALERT_WEBHOOK_URL"})  # never echoed in errors


class ApiKey:
    """One entry of TRENDFLOW_API_KEYS: ``KEY`` or ``KEY:source1|source2``."""

    __slots__ = ("key", "sources")

    def __init__(self, key: str, sources: frozenset[str] | None) -> None:
        self.key = key
        self.sources = sources  # None: may post as any source

    def __repr__(self) -> str:  # never print the key itself
        return f"ApiKey(sources={sorted(self.sources) if self.sources else None})"


class Settings(BaseSettings):
    """Every setting of DESIGN §6, typed and validated."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, toml_file=TOML_FILE, extra="ignore")

    data_dir: Path = Path(".trendflow")
    database_url: str | None = None
    redis_url: str | None = None
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    spool_path_setting: Path | None = Field(None, validation_alias="TRENDFLOW_SPOOL_PATH")
    alert_webhook_url: str | None = None
    alert_interval_s: float = Field(60.0, gt=0)
    max_deliveries: int = Field(5, ge=1)
    claim_idle_ms: int = Field(60_000, ge=100)
    max_lag: int = Field(100_000, ge=1)
    ingest_timeout_ms: int = Field(2_000, ge=0)
    max_text_chars: int = Field(10_000, ge=1)
    embed_device: Literal["auto", "cpu", "cuda"] = "auto"
    embed_batch_size: int = Field(64, ge=1, le=4096)
    etl_batch_size: int = Field(500, ge=1, le=10_000)
    hnsw_ef_search: int = Field(200, ge=1, le=1000)  # recall@10 ≥ 0.95 at 100k vectors (BENCHMARKS.md)
    api_keys_setting: str = Field("", validation_alias="TRENDFLOW_API_KEYS")
    api_key_cache_s: float = Field(5.0, ge=0)
    read_requires_key: bool = False
    metrics_requires_key: bool = False
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1)
    max_batch_events: int = Field(5_000, ge=1)
    rate_limit_per_minute: int = Field(0, ge=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls)

    @field_validator("database_url", "redis_url", "alert_webhook_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_level", "embed_device", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("postgres", "postgresql"):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("api_keys_setting")
    @classmethod
    def _api_keys_parse(cls, value: str) -> str:
        parse_api_keys(value)
        return value

    @property
    def spool_path(self) -> Path:
        return self.spool_path_setting or self.data_dir / "spool" / "ingest-fallback.jsonl"

    @cached_property
    def api_keys(self) -> tuple[ApiKey, ...]:
        return parse_api_keys(self.api_keys_setting)


def parse_api_keys(value: str) -> tuple[ApiKey, ...]:
    """``"k1,k2:web|batch"`` → two keys, the second bound to the sources ``web`` and ``batch``."""
    keys = []
    for entry in (part.strip() for part in value.split(",")):
        if not entry:
            continue
        key, _, sources = entry.partition(":")
        if not key.strip():
            raise ValueError("an entry has an empty key; entries are KEY or KEY:source1|source2")
        bound = frozenset(s.strip().lower() for s in sources.split("|") if s.strip()) if sources else None
        keys.append(ApiKey(key.strip(), bound))
    return tuple(keys)


def load_settings(**overrides: Any) -> Settings:
    """Read the settings once; a bad value raises ConfigError naming the variable and what it accepts."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else "?"
            env_name = (
                name if name.startswith(ENV_PREFIX) else ENV_PREFIX + name.removesuffix("_setting").upper()
            )
            given = error.get("input")
            secret = env_name in SECRET_SETTINGS
            shown = "" if isinstance(given, dict) or secret else f" (got {redact_url(str(given))!r})"
            problems.append(f"{env_name}: {error['msg']}{shown}")
        raise ConfigError("invalid settings:\n  " + "\n  ".join(problems)) from None


def redact_url(url: str | None) -> str:
    """Hide the password of a URL before it is printed or logged."""
    if not url:
        return ""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username or ''}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
