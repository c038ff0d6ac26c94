from __future__ import annotations

from pathlib import Path

import pytest

from app.settings import Settings
from core.queues import ALL_QUEUES, QueueName
from core.settings import MASK, CoreSettings, SettingsError
from tiles.settings import TilesSettings

ROOT = Path(__file__).resolve().parents[2]
OLD_SERVICE_VARIABLES = (
    *("HDX_REDIS_ADDR", "HDX_REDIS_PORT", "HDX_REDIS_GISDB", "HDX_REDIS_WORKER_TTL", "QUEUES"),
    *("HDX_GISDB_ADDR", "HDX_GISDB_PORT", "HDX_GISDB_DB", "HDX_GISDB_USER", "HDX_GISDB_PASS"),
    *("HDX_GIS_API_KEY", "HDX_FSCHECK_API_KEY", "CKAN_API_BASE_URL", "HDX_DOMAIN", "HDX_GIS_TMP", "HDX_USER_AGENT"),
    *("EVENTS_API_ENABLED", "REDIS_STREAM_HOST", "REDIS_STREAM_PORT", "REDIS_STREAM_DB", "REDIS_STREAM_STREAM_NAME"),
    *("MONITOR_URL", "MAX_FILE_SIZE_MB", "TIMEOUT_SEC", "TABLE_NAME_PREFIX"),
)
"""The variables deployments of the old service set (CONTRACTS.md §1): their names are fixed."""


def test_defaults_follow_the_contract() -> None:
    settings = Settings.from_env({})
    assert (settings.redis.host, settings.redis.port, settings.redis.db) == ("localhost", 6379, 1)
    bus = settings.event_bus
    assert (bus.db, bus.stream_name, bus.maxlen) == (7, "hdx_event_stream", 50000)
    assert (settings.postgis.name, settings.postgis.user, settings.postgis.password) == ("gis", "gis", None)
    assert settings.postgis.table_name_prefix == "pre"
    assert (settings.importapi.max_file_size_mb, settings.downloads.timeout_sec) == (300, 120)
    assert settings.ckan.user_agent == "HDXINTERNAL_GEOPREVIEW"
    assert settings.api.monitor_url == "/monitor"
    queues = settings.workers.queues
    assert queues == ALL_QUEUES
    assert queues[:5] == ("geo_q", "analytics_q", "fs_check_q", "event_q", "default_scheduler_q")
    assert queues[5:] == ("tiles_q",)  # hdxrq's own, last
    assert Settings.from_env({"QUEUES": "tiles_q event_q"}).workers.queues == (QueueName.TILES, QueueName.EVENT)
    assert settings.eventsapi.enabled is True


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
    assert settings.redis.url == "redis://redis.internal:6380/3"
    assert settings.event_bus.url == "redis://localhost:6379/9"
    assert settings.eventsapi.enabled is False
    assert settings.workers.queues == ("geo_q", "analytics_q")
    assert settings.ckan.api_base_url == "http://ckan:5000/api/action"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HDX_REDIS_PORT", "not-a-port"),
        ("MAX_FILE_SIZE_MB", "0"),
        ("QUEUES", "geo_q,nope_q"),
        ("HDXRQ_ALLOWED_NETWORKS", "10.0.0.0/33"),
        ("CKAN_API_BASE_URL", "ckan:5000"),
        ("TABLE_NAME_PREFIX", "drop table;"),
        ("HDXRQ_TILES_MAX_ZOOM", "31"),
        ("HDXRQ_SCHEDULER_ALLOWED_ACTIONS", "package_patch,Drop-All"),
        ("MIXPANEL_API_URL", "ftp://mixpanel"),
    ],
)
def test_a_bad_value_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"^invalid settings: {variable}: "):
        Settings.from_env({variable: value})


def test_fscheck_key_falls_back_to_gis_key() -> None:
    ckan = Settings.from_env({"HDX_GIS_API_KEY": "gis-key"}).ckan
    assert ckan.fscheck_api_key is not None
    assert ckan.fscheck_api_key.get_secret_value() == "gis-key"
    own = Settings.from_env({"HDX_GIS_API_KEY": "gis-key", "HDX_FSCHECK_API_KEY": "fs-key"}).ckan
    assert own.fscheck_api_key is not None and own.fscheck_api_key.get_secret_value() == "fs-key"


def test_secrets_are_masked_and_never_in_repr() -> None:
    settings = Settings.from_env(
        {"HDX_GISDB_PASS": "pg-secret", "HDX_GIS_API_KEY": "ckan-secret", "HDXRQ_ADMIN_TOKENS": "a-token,b-token"}
    )
    shown = settings.masked()
    assert shown["postgis"]["HDX_GISDB_PASS"] == MASK
    assert shown["ckan"]["HDX_GIS_API_KEY"] == MASK
    assert shown["access"]["HDXRQ_ADMIN_TOKENS"] == [MASK, MASK]
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
    assert settings.ckan.gis_api_key is not None and settings.ckan.gis_api_key.get_secret_value() == "from-a-file"
    assert settings.redis.host == "from-config"
    assert settings.redis.port == 7001  # the environment wins over the file
    assert settings.workers.queues == ("geo_q",)


def test_unreadable_config_file_is_explained(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="HDXRQ_CONFIG_FILE"):
        Settings.from_env({"HDXRQ_CONFIG_FILE": str(tmp_path / "missing.toml")})


def test_redis_password_is_quoted_into_the_url() -> None:
    settings = Settings.from_env({"HDXRQ_REDIS_PASSWORD": "p@ss/word"})
    assert settings.redis.url == "redis://:p%40ss%2Fword@localhost:6379/1"


def test_settings_are_frozen() -> None:
    settings = Settings.from_env({})
    with pytest.raises(Exception, match="frozen"):
        settings.redis.port = 1  # type: ignore[misc]
    with pytest.raises(Exception, match="frozen"):
        settings.redis = settings.redis  # type: ignore[misc]


def test_every_variable_sets_exactly_one_field() -> None:
    owners: dict[str, list[str]] = {}
    for section_name, section in Settings.sections().items():
        for field, variables in section.variables().items():
            assert variables and all(variables), f"{section_name}.{field} names no variable"
            for variable in variables:
                owners.setdefault(variable, []).append(f"{section_name}.{field}")
    assert {variable: fields for variable, fields in owners.items() if len(fields) > 1} == {}
    assert set(owners) == Settings.variable_names()
    assert set(OLD_SERVICE_VARIABLES) <= set(owners)


def test_every_variable_is_documented() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    text = "\n".join(page.read_text(encoding="utf-8") for page in pages)
    assert sorted(name for name in Settings.variable_names() if f"`{name}`" not in text) == []


def test_masked_settings_are_grouped_by_section() -> None:
    settings = Settings.from_env({"HDXRQ_TILES_MAX_ZOOM": "12", "HDX_REDIS_ADDR": "redis.internal"})
    shown = settings.masked()
    assert list(shown) == list(Settings.sections())
    assert shown["tiles"]["HDXRQ_TILES_MAX_ZOOM"] == 12
    assert shown["redis"]["HDX_REDIS_ADDR"] == "redis.internal"
    for name, section in Settings.sections().items():
        assert list(shown[name]) == [variables[0] for variables in section.variables().values()]


def test_a_slice_reads_its_own_section() -> None:
    settings = Settings.from_env({"HDXRQ_TILES_MAX_ZOOM": "12"})
    assert TilesSettings.of(settings) is settings.tiles
    assert TilesSettings.of(settings).max_zoom == 12
    core_only = CoreSettings.from_env({"HDXRQ_TILES_MAX_ZOOM": "12"})  # core alone knows no slice
    with pytest.raises(LookupError, match="no TilesSettings section"):
        TilesSettings.of(core_only)


def test_updated_changes_fields_of_sections_and_nothing_else() -> None:
    settings = Settings.from_env({"HDX_REDIS_ADDR": "redis.internal"})
    changed = settings.updated(tiles={"max_zoom": 3}, redis={"port": 6390})
    assert (changed.tiles.max_zoom, changed.redis.port, changed.redis.host) == (3, 6390, "redis.internal")
    assert (settings.tiles.max_zoom, settings.redis.port) == (24, 6379)
    assert changed.importapi == settings.importapi
