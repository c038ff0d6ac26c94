from __future__ import annotations

from pathlib import Path

import pytest

from core.queues import ALL_QUEUES, QueueName
from core.settings import MASK, Settings, SettingsError


def test_defaults_follow_the_contract() -> None:
    settings = Settings.from_env({})
    assert (settings.redis_host, settings.redis_port, settings.redis_db) == ("localhost", 6379, 1)
    assert (settings.stream_db, settings.stream_name, settings.stream_maxlen) == (7, "hdx_event_stream", 50000)
    assert (settings.gisdb_name, settings.gisdb_user, settings.gisdb_password) == ("gis", "gis", None)
    assert (settings.max_file_size_mb, settings.timeout_sec, settings.table_name_prefix) == (300, 120, "pre")
    assert settings.user_agent == "HDXINTERNAL_GEOPREVIEW"
    assert settings.monitor_url == "/monitor"
    assert settings.queues == ALL_QUEUES
    assert settings.queues[:5] == ("geo_q", "analytics_q", "fs_check_q", "event_q", "default_scheduler_q")
    assert settings.queues[5:] == ("tiles_q",)  # hdxrq's own, last
    assert Settings.from_env({"QUEUES": "tiles_q event_q"}).queues == (QueueName.TILES, QueueName.EVENT)
    assert settings.events_api_enabled is True


def test_legacy_variables_are_read() -> None:
    settings = Settings.from_env(
        {
            "HDX_REDIS_ADDR": "redis.internal",
            "HDX_REDIS_PORT": "6380",
            "HDX_REDIS_GISDB": "3",
            "REDIS_STREAM_DB": "9",
            "EVENTS_API_ENABLED": "false",
            "QUEUES": "geo_q,analytics_q",
            "CKAN_API_BASE_URL": "http://ckan:5000/api/action/",
        }
    )
    assert settings.redis_url == "redis://redis.internal:6380/3"
    assert settings.stream_url == "redis://localhost:6379/9"
    assert settings.events_api_enabled is False
    assert settings.queues == ("geo_q", "analytics_q")
    assert settings.ckan_api_base_url == "http://ckan:5000/api/action"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HDX_REDIS_PORT", "not-a-port"),
        ("MAX_FILE_SIZE_MB", "0"),
        ("QUEUES", "geo_q,nope_q"),
        ("HDXRQ_ALLOWED_NETWORKS", "10.0.0.0/33"),
        ("CKAN_API_BASE_URL", "ckan:5000"),
        ("TABLE_NAME_PREFIX", "drop table;"),
    ],
)
def test_a_bad_value_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: value})


def test_fscheck_key_falls_back_to_gis_key() -> None:
    settings = Settings.from_env({"HDX_GIS_API_KEY": "gis-key"})
    assert settings.fscheck_api_key is not None
    assert settings.fscheck_api_key.get_secret_value() == "gis-key"
    own = Settings.from_env({"HDX_GIS_API_KEY": "gis-key", "HDX_FSCHECK_API_KEY": "fs-key"})
    assert own.fscheck_api_key is not None and own.fscheck_api_key.get_secret_value() == "fs-key"


def test_secrets_are_masked_and_never_in_repr() -> None:
    settings = Settings.from_env(
        {"HDX_GISDB_PASS": "pg-secret", "HDX_GIS_API_KEY": "ckan-secret", "HDXRQ_ADMIN_TOKENS": "a-token,b-token"}
    )
    shown = settings.masked()
    assert shown["HDX_GISDB_PASS"] == MASK
    assert shown["HDX_GIS_API_KEY"] == MASK
    assert shown["HDXRQ_ADMIN_TOKENS"] == [MASK, MASK]
    for text in (repr(settings), str(shown)):
        for secret in ("pg-secret", "ckan-secret", "a-token", "b-token"):
            assert secret not in text


def test_secret_files_and_config_file(tmp_path: Path) -> None:
    secret = tmp_path / "gis_key"
    secret.write_text("from-a-file\n")
    config = tmp_path / "hdxrq.toml"
    config.write_text('HDX_REDIS_ADDR = "from-config"\nHDX_REDIS_PORT = 7000\nQUEUES = ["geo_q"]\n')
    settings = Settings.from_env(
        {"HDX_GIS_API_KEY_FILE": str(secret), "HDXRQ_CONFIG_FILE": str(config), "HDX_REDIS_PORT": "7001"}
    )
    assert settings.gis_api_key is not None and settings.gis_api_key.get_secret_value() == "from-a-file"
    assert settings.redis_host == "from-config"
    assert settings.redis_port == 7001  # the environment wins over the file
    assert settings.queues == ("geo_q",)


def test_unreadable_config_file_is_explained(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="HDXRQ_CONFIG_FILE"):
        Settings.from_env({"HDXRQ_CONFIG_FILE": str(tmp_path / "missing.toml")})


def test_redis_password_is_quoted_into_the_url() -> None:
    settings = Settings.from_env({"HDXRQ_REDIS_PASSWORD": "p@ss/word"})
    assert settings.redis_url == "redis://:p%40ss%2Fword@localhost:6379/1"


def test_settings_are_frozen() -> None:
    settings = Settings.from_env({})
    with pytest.raises(Exception, match="frozen"):
        settings.redis_port = 1  # type: ignore[misc]
