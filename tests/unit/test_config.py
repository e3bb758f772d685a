"""Settings: defaults, environment and trendflow.toml, and errors that name the variable at fault."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trendflow.config import load_settings, parse_api_keys, redact_url
from trendflow.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No TRENDFLOW_ variable of the caller's shell, and a working directory without a trendflow.toml."""
    for name in list(os.environ):
        if name.startswith("TRENDFLOW_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_defaults_follow_the_design() -> None:
    settings = load_settings()

    assert settings.data_dir == Path(".trendflow")
    assert settings.api_port == 8000
    assert settings.spool_path == Path(".trendflow") / "spool" / "ingest-fallback.jsonl"
    assert settings.database_url is None and settings.redis_url is None
    assert settings.api_keys == ()


def test_spool_path_follows_the_data_dir_unless_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRENDFLOW_DATA_DIR", str(tmp_path / "elsewhere"))
    assert load_settings().spool_path == tmp_path / "elsewhere" / "spool" / "ingest-fallback.jsonl"

    monkeypatch.setenv("TRENDFLOW_SPOOL_PATH", str(tmp_path / "my.jsonl"))
    assert load_settings().spool_path == tmp_path / "my.jsonl"


def test_environment_overrides_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRENDFLOW_API_PORT", "9123")
    monkeypatch.setenv("TRENDFLOW_EMBED_DEVICE", "CPU")

    settings = load_settings()

    assert settings.api_port == 9123
    assert settings.embed_device == "cpu"


def test_trendflow_toml_in_the_working_directory_is_read(
    monkeypatch: pytest.MonkeyPatch, clean_environment: Path
) -> None:
    (clean_environment / "trendflow.toml").write_text(
        'api_port = 8111\nredis_url = "redis://localhost:6390/0"\nmax_deliveries = 7\n'
    )

    settings = load_settings()
    assert settings.api_port == 8111
    assert settings.redis_url == "redis://localhost:6390/0"
    assert settings.max_deliveries == 7

    monkeypatch.setenv("TRENDFLOW_API_PORT", "8222")
    assert load_settings().api_port == 8222, "the environment wins over the file"


def test_blank_urls_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRENDFLOW_DATABASE_URL", "  ")
    assert load_settings().database_url is None


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TRENDFLOW_API_PORT", "abc"),
        ("TRENDFLOW_API_PORT", "70000"),
        ("TRENDFLOW_EMBED_DEVICE", "gpu"),
        ("TRENDFLOW_DATABASE_URL", "mysql://x"),
        ("TRENDFLOW_REDIS_URL", "http://localhost"),
        ("TRENDFLOW_API_KEYS", "k1,:web"),
    ],
)
def test_a_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(ConfigError) as raised:
        load_settings()

    assert variable in str(raised.value)


def test_a_bad_database_url_does_not_leak_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRENDFLOW_DATABASE_URL", "mysql://user:hunter2@db:3306/x")

    with pytest.raises(ConfigError) as raised:
        load_settings()

    assert "TRENDFLOW_DATABASE_URL" in str(raised.value)
    assert "hunter2" not in str(raised.value)


def test_redact_url_hides_the_password() -> None:
    redacted = redact_url("postgresql://u:secret@h:5432/db")

    assert "secret" not in redacted
    assert redacted == "postgresql://u:***@h:5432/db"
    assert redact_url("redis://localhost:6379/0") == "redis://localhost:6379/0"
    assert redact_url(None) == ""


def test_api_keys_are_parsed_with_their_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRENDFLOW_API_KEYS", "k1, k2:Web|batch ,")

    first, second = load_settings().api_keys

    assert (first.key, first.sources) == ("k1", None)
    assert (second.key, second.sources) == ("k2", frozenset({"web", "batch"}))


def test_the_repr_of_a_key_never_shows_it() -> None:
    keys = parse_api_keys("topsecret-1,topsecret-2:web|batch")

    shown = repr(keys) + str(keys) + "".join(f"{key!r}{key}" for key in keys)

    assert "topsecret" not in shown
    assert "web" in shown
