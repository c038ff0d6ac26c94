"""The one typed settings object, read once at start-up.

Sources, later ones winning: defaults declared here, an optional TOML config file (``HDXRQ_CONFIG_FILE``,
keys are the environment variable names), the environment, and ``<NAME>_FILE`` variables for secrets
(Docker secrets style: the file's content is the value).

Nothing else in the code base reads ``os.environ`` for configuration: the settings are passed down.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)

from .queues import ALL_QUEUES, QueueName
from .redisurl import PLAIN_SCHEMES, is_sentinel_url, parse_sentinel_url, url_password

CONFIG_FILE_VARIABLE = "HDXRQ_CONFIG_FILE"
MASK = "********"


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.replace(" ", ",").split(",") if item.strip()]
    return value


def _parse_limits(value: Any) -> Any:
    """``"1000"`` → ``{"*": 1000}``; ``"500,geo_q=50"`` → ``{"*": 500, "geo_q": 50}``."""
    if not isinstance(value, str):
        return value
    limits: dict[str, str] = {}
    for item in _split_list(value):
        name, _, number = item.rpartition("=")
        limits[name or "*"] = number
    return limits


def _none_if_blank(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


StrList = Annotated[tuple[str, ...], BeforeValidator(_split_list)]
OptionalStr = Annotated[str | None, BeforeValidator(_none_if_blank)]
OptionalSecret = Annotated[SecretStr | None, BeforeValidator(_none_if_blank)]
QueueList = Annotated[tuple[QueueName, ...], BeforeValidator(_split_list)]


def env(name: str, *legacy: str) -> Any:
    """Field alias: the environment variable that sets a field (plus older names it still accepts)."""
    return AliasChoices(name, *legacy) if legacy else name


class SettingsError(Exception):
    """A setting has a bad value; the message names the variable."""


class Settings(BaseModel):
    """Effective configuration of one API or worker process."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    # --- RQ Redis (queues, job records, buffers) ---
    redis_host: str = Field("localhost", validation_alias=env("HDX_REDIS_ADDR"))
    redis_port: int = Field(6379, validation_alias=env("HDX_REDIS_PORT"), ge=1, le=65535)
    redis_db: int = Field(1, validation_alias=env("HDX_REDIS_GISDB"), ge=0)
    redis_password: OptionalSecret = Field(None, validation_alias=env("HDXRQ_REDIS_PASSWORD"))
    redis_url_override: OptionalSecret = Field(None, validation_alias=env("HDXRQ_REDIS_URL"))
    redis_failover_sec: float = Field(30.0, validation_alias=env("HDXRQ_REDIS_FAILOVER_SEC"), gt=0)

    # --- Event bus Redis (shared with other consumers: never flushed) ---
    stream_host: str = Field("localhost", validation_alias=env("REDIS_STREAM_HOST"))
    stream_port: int = Field(6379, validation_alias=env("REDIS_STREAM_PORT"), ge=1, le=65535)
    stream_db: int = Field(7, validation_alias=env("REDIS_STREAM_DB"), ge=0)
    stream_name: str = Field("hdx_event_stream", validation_alias=env("REDIS_STREAM_STREAM_NAME"))
    stream_password: OptionalSecret = Field(None, validation_alias=env("HDXRQ_STREAM_REDIS_PASSWORD"))
    stream_url_override: OptionalSecret = Field(None, validation_alias=env("HDXRQ_STREAM_REDIS_URL"))
    stream_maxlen: int = Field(50000, validation_alias=env("HDXRQ_STREAM_MAXLEN"), ge=1)

    # --- PostGIS ---
    gisdb_host: str = Field("localhost", validation_alias=env("HDX_GISDB_ADDR"))
    gisdb_port: int = Field(5432, validation_alias=env("HDX_GISDB_PORT"), ge=1, le=65535)
    gisdb_name: str = Field("gis", validation_alias=env("HDX_GISDB_DB"))
    gisdb_user: str = Field("gis", validation_alias=env("HDX_GISDB_USER"))
    gisdb_password: OptionalSecret = Field(None, validation_alias=env("HDX_GISDB_PASS"))
    gisdb_pool_size: int = Field(8, validation_alias=env("HDXRQ_GISDB_POOL_SIZE"), ge=1)

    # --- CKAN ---
    ckan_api_base_url: OptionalStr = Field(None, validation_alias=env("CKAN_API_BASE_URL"))
    gis_api_key: OptionalSecret = Field(None, validation_alias=env("HDX_GIS_API_KEY"))
    fscheck_api_key_value: OptionalSecret = Field(None, validation_alias=env("HDX_FSCHECK_API_KEY"))
    hdx_domain: OptionalStr = Field(None, validation_alias=env("HDX_DOMAIN"))
    user_agent: str = Field("HDXINTERNAL_GEOPREVIEW", validation_alias=env("HDX_USER_AGENT"))
    ckan_timeout_sec: float = Field(30.0, validation_alias=env("HDXRQ_CKAN_TIMEOUT_SEC"), gt=0)
    callback_retry_hours: float = Field(24.0, validation_alias=env("HDXRQ_CALLBACK_RETRY_HOURS"), gt=0)

    # --- Geopreview imports ---
    gis_tmp: OptionalStr = Field(None, validation_alias=env("HDX_GIS_TMP"))
    max_file_size_mb: int = Field(300, validation_alias=env("MAX_FILE_SIZE_MB"), ge=1)
    timeout_sec: int = Field(120, validation_alias=env("TIMEOUT_SEC"), ge=1)
    table_name_prefix: str = Field("pre", validation_alias=env("TABLE_NAME_PREFIX"), pattern=r"^[a-z_][a-z0-9_]*$")
    download_allowlist: StrList = Field((), validation_alias=env("HDXRQ_DOWNLOAD_ALLOWLIST"))
    # importapi: download, archive and load limits (docs/importapi.md)
    download_read_timeout_sec: float = Field(30.0, validation_alias=env("HDXRQ_DOWNLOAD_READ_TIMEOUT_SEC"), gt=0)
    download_max_redirects: int = Field(5, validation_alias=env("HDXRQ_DOWNLOAD_MAX_REDIRECTS"), ge=0)
    token_to_subdomains: bool = Field(False, validation_alias=env("HDXRQ_TOKEN_TO_SUBDOMAINS"))
    ogr_timeout_sec: int = Field(900, validation_alias=env("HDXRQ_OGR_TIMEOUT_SEC"), ge=1)
    archive_max_members: int = Field(10000, validation_alias=env("HDXRQ_ARCHIVE_MAX_MEMBERS"), ge=1)
    archive_max_unpacked_mb: int = Field(2048, validation_alias=env("HDXRQ_ARCHIVE_MAX_UNPACKED_MB"), ge=1)
    archive_max_ratio: int = Field(200, validation_alias=env("HDXRQ_ARCHIVE_MAX_RATIO"), ge=1)
    layer_tables_logged: bool = Field(True, validation_alias=env("HDXRQ_LAYER_TABLES_LOGGED"))
    import_geojson_fast_path: bool = Field(True, validation_alias=env("HDXRQ_IMPORT_GEOJSON_FAST_PATH"))

    # --- Analytics ---
    mixpanel_api_url: str = Field("https://api.mixpanel.com", validation_alias=env("MIXPANEL_API_URL"))
    ga4_endpoint: str = Field("https://www.google-analytics.com/mp/collect", validation_alias=env("GA4_ENDPOINT"))
    ga4_measurement_id: OptionalStr = Field(None, validation_alias=env("GA4_MEASUREMENT_ID"))
    ga4_api_secret: OptionalSecret = Field(None, validation_alias=env("GA4_API_SECRET"))
    # analyticsapi: buffering and delivery (docs/analyticsapi.md)
    analytics_mixpanel_batch_size: int = Field(
        2000, validation_alias=env("HDXRQ_ANALYTICS_MIXPANEL_BATCH_SIZE"), ge=1, le=2000
    )
    analytics_ga4_batch_size: int = Field(25, validation_alias=env("HDXRQ_ANALYTICS_GA4_BATCH_SIZE"), ge=1, le=25)
    analytics_http_timeout_sec: float = Field(10.0, validation_alias=env("HDXRQ_ANALYTICS_HTTP_TIMEOUT_SEC"), gt=0)
    analytics_retry_base_sec: float = Field(1.0, validation_alias=env("HDXRQ_ANALYTICS_RETRY_BASE_SEC"), gt=0)
    analytics_retry_max_sec: float = Field(300.0, validation_alias=env("HDXRQ_ANALYTICS_RETRY_MAX_SEC"), gt=0)
    analytics_max_attempts: int = Field(20, validation_alias=env("HDXRQ_ANALYTICS_MAX_ATTEMPTS"), ge=1)
    analytics_lease_sec: float = Field(60.0, validation_alias=env("HDXRQ_ANALYTICS_LEASE_SEC"), gt=0)
    analytics_tick_sec: float = Field(60.0, validation_alias=env("HDXRQ_ANALYTICS_TICK_SEC"), gt=0)
    analytics_drain_budget_sec: float = Field(120.0, validation_alias=env("HDXRQ_ANALYTICS_DRAIN_BUDGET_SEC"), gt=0)
    analytics_drain_idle_sec: float = Field(1.0, validation_alias=env("HDXRQ_ANALYTICS_DRAIN_IDLE_SEC"), ge=0)
    analytics_linger_ms: int = Field(500, validation_alias=env("HDXRQ_ANALYTICS_LINGER_MS"), ge=0, le=60000)

    # --- Change events ---
    events_api_enabled: bool = Field(True, validation_alias=env("EVENTS_API_ENABLED"))

    # --- Scheduler (scheduled CKAN calls) ---
    scheduler_allowed_actions: StrList = Field((), validation_alias=env("HDXRQ_SCHEDULER_ALLOWED_ACTIONS"))
    scheduler_retry_intervals: Annotated[tuple[int, ...], BeforeValidator(_split_list)] = Field(
        (30, 120, 600), validation_alias=env("HDXRQ_SCHEDULER_RETRY_INTERVALS")
    )
    scheduler_keep_done_days: float = Field(7.0, validation_alias=env("HDXRQ_SCHEDULER_KEEP_DONE_DAYS"), gt=0)

    # --- Tiles and map preview (tiles/) ---
    tiles_basemap_style_url: OptionalStr = Field(
        None, validation_alias=env("HDXRQ_TILES_BASEMAP_STYLE_URL"), pattern=r"^https?://"
    )
    tiles_cache_max_age: int = Field(300, validation_alias=env("HDXRQ_TILES_CACHE_MAX_AGE"), ge=0)
    tiles_max_zoom: int = Field(24, validation_alias=env("HDXRQ_TILES_MAX_ZOOM"), ge=0, le=30)
    tiles_statement_timeout_ms: int = Field(10000, validation_alias=env("HDXRQ_TILES_STATEMENT_TIMEOUT_MS"), ge=100)
    tiles_memory_cache_mb: int = Field(64, validation_alias=env("HDXRQ_TILES_MEMORY_CACHE_MB"), ge=0)
    tiles_memory_cache_min_build_ms: float = Field(
        20.0, validation_alias=env("HDXRQ_TILES_MEMORY_CACHE_MIN_BUILD_MS"), ge=0
    )
    tiles_prerender: bool = Field(True, validation_alias=env("HDXRQ_TILES_PRERENDER"))
    tiles_prerender_min_features: int = Field(300, validation_alias=env("HDXRQ_TILES_PRERENDER_MIN_FEATURES"), ge=1)
    tiles_prerender_max_tiles: int = Field(2000, validation_alias=env("HDXRQ_TILES_PRERENDER_MAX_TILES"), ge=0)
    tiles_prerender_max_sec: float = Field(10.0, validation_alias=env("HDXRQ_TILES_PRERENDER_MAX_SEC"), gt=0)

    # --- API process ---
    admin_tokens: Annotated[tuple[SecretStr, ...], BeforeValidator(_split_list)] = Field(
        (), validation_alias=env("HDXRQ_ADMIN_TOKENS")
    )
    allowed_networks: StrList = Field((), validation_alias=env("HDXRQ_ALLOWED_NETWORKS"))
    monitor_url: str = Field("/monitor", validation_alias=env("MONITOR_URL"), pattern=r"^/[A-Za-z0-9_\-/]*$")
    max_request_mb: int = Field(32, validation_alias=env("HDXRQ_MAX_REQUEST_MB"), ge=1)
    api_workers: int = Field(4, validation_alias=env("HDXRQ_API_WORKERS"), ge=1)
    api_max_workers: int = Field(16, validation_alias=env("HDXRQ_API_MAX_WORKERS"), ge=1)
    api_threads: int = Field(1, validation_alias=env("HDXRQ_API_THREADS"), ge=1)
    shutdown_grace_sec: float = Field(30.0, validation_alias=env("HDXRQ_SHUTDOWN_GRACE_SEC"), gt=0)

    # --- Workers ---
    worker_ttl: int = Field(600, validation_alias=env("HDX_REDIS_WORKER_TTL"), ge=1)
    queues: QueueList = Field(ALL_QUEUES, validation_alias=env("QUEUES"))
    run_workers: int = Field(3, validation_alias=env("HDXRQ_RUN_WORKERS"), ge=1)
    extra_job_modules: StrList = Field((), validation_alias=env("HDXRQ_EXTRA_JOB_MODULES"))
    max_queued_jobs: Annotated[dict[str, int], BeforeValidator(_parse_limits)] = Field(
        {}, validation_alias=env("HDXRQ_MAX_QUEUED_JOBS")
    )
    job_retention_hours: float = Field(168.0, validation_alias=env("HDXRQ_JOB_RETENTION_HOURS"), gt=0)
    process_timeouts: Annotated[dict[str, int], BeforeValidator(_parse_limits)] = Field(
        {}, validation_alias=env("HDXRQ_PROCESS_TIMEOUTS")
    )

    # --- Logging ---
    log_format: str = Field("text", validation_alias=env("HDXRQ_LOG_FORMAT"), pattern=r"^(text|json)$")
    log_level: str = Field("INFO", validation_alias=env("HDXRQ_LOG_LEVEL"))
    log_levels: str = Field("", validation_alias=env("HDXRQ_LOG_LEVELS"))

    @field_validator("queues", mode="before")
    @classmethod
    def _known_queues(cls, value: Any) -> Any:
        names = _split_list(value)
        if isinstance(names, (list, tuple)):
            unknown = sorted(set(map(str, names)) - set(ALL_QUEUES))
            if unknown:
                raise ValueError(f"unknown queue(s) {', '.join(unknown)}; known: {', '.join(ALL_QUEUES)}")
        return names or ALL_QUEUES

    @field_validator("download_allowlist")
    @classmethod
    def _networks_or_hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if "/" in item:
                ipaddress.ip_network(item, strict=False)  # raises ValueError naming the item
        return value

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                # A host name would fail every request it is checked against: refuse it at start-up instead.
                raise ValueError(f"{item!r} is not an IP address or network (CIDR); no host names") from None
        return value

    @field_validator("ckan_api_base_url", "mixpanel_api_url", "ga4_endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") if value else value

    @field_validator("scheduler_allowed_actions")
    @classmethod
    def _action_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [item for item in value if not re.fullmatch(r"[a-z0-9_]+", item)]
        if bad:
            raise ValueError(f"not CKAN action names: {', '.join(bad)}")
        return value

    @field_validator("scheduler_retry_intervals")
    @classmethod
    def _retry_intervals(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(seconds < 0 for seconds in value):
            raise ValueError("retry intervals are seconds >= 0")
        return value

    @field_validator("redis_url_override", "stream_url_override")
    @classmethod
    def _redis_url_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        url = value.get_secret_value() if value else ""
        if url and is_sentinel_url(url):
            parse_sentinel_url(url)  # raises ValueError saying what is wrong, never the password
        elif url and not url.lower().startswith(PLAIN_SCHEMES):
            raise ValueError(f"must be a {', '.join(PLAIN_SCHEMES)} or redis+sentinel:// URL")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    # --- derived values ---

    @property
    def fscheck_api_key(self) -> SecretStr | None:
        """CKAN token for the file-structure-check callback (falls back to the geopreview one)."""
        return self.fscheck_api_key_value or self.gis_api_key

    @property
    def redis_url(self) -> str:
        """URL of the RQ Redis, password included: never log it."""
        if self.redis_url_override:
            return self.redis_url_override.get_secret_value()
        return _redis_url(self.redis_host, self.redis_port, self.redis_db, self.redis_password)

    @property
    def stream_url(self) -> str:
        """URL of the event-bus Redis, password included: never log it."""
        if self.stream_url_override:
            return self.stream_url_override.get_secret_value()
        return _redis_url(self.stream_host, self.stream_port, self.stream_db, self.stream_password)

    @property
    def max_file_size_bytes(self) -> int:
        return self.max_file_size_mb * 1024 * 1024

    def postgres_conninfo(self, *, with_password: bool = True) -> str:
        """libpq keyword/value connection string for the PostGIS database."""
        parts = {
            "host": self.gisdb_host,
            "port": str(self.gisdb_port),
            "dbname": self.gisdb_name,
            "user": self.gisdb_user,
            "application_name": "hdxrq",
        }
        if with_password and self.gisdb_password:
            parts["password"] = self.gisdb_password.get_secret_value()
        return " ".join(f"{key}={_libpq_quote(value)}" for key, value in parts.items())

    def secret_values(self) -> list[str]:
        """Every configured secret, for tests and log scrubbing."""
        values = [
            field.get_secret_value()
            for field in (
                self.redis_password,
                self.stream_password,
                self.gisdb_password,
                self.gis_api_key,
                self.fscheck_api_key_value,
                self.ga4_api_secret,
            )
            if field
        ]
        values += [token.get_secret_value() for token in self.admin_tokens]
        for url in (self.redis_url_override, self.stream_url_override):
            values.append(url_password(url.get_secret_value()) or "" if url else "")
        return [value for value in values if value]

    def masked(self) -> dict[str, Any]:
        """Effective settings by environment variable name, secrets masked."""
        shown: dict[str, Any] = {}
        for name, field in type(self).model_fields.items():
            alias = field.validation_alias
            key = alias.choices[0] if isinstance(alias, AliasChoices) else alias
            shown[str(key)] = _masked_value(getattr(self, name))
        return shown

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from an environment mapping (``os.environ`` by default) and its config file."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        config_file = environ.get(CONFIG_FILE_VARIABLE)
        if config_file:
            values.update(_read_config_file(Path(config_file)))
        values.update(_known_variables(environ))
        values.update(_secret_files(environ))
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            raise SettingsError(_explain(error)) from None


def variable_names() -> set[str]:
    """Every environment variable the settings read."""
    names: set[str] = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        names.update(str(name) for name in (alias.choices if isinstance(alias, AliasChoices) else [alias]))
    return names


def _known_variables(environ: Mapping[str, str]) -> dict[str, str]:
    return {name: environ[name] for name in variable_names() if name in environ}


def _secret_files(environ: Mapping[str, str]) -> dict[str, str]:
    values = {}
    known = variable_names()
    for name, path in environ.items():
        variable = name.removesuffix("_FILE")
        if name.endswith("_FILE") and variable in known:
            try:
                values[variable] = Path(path).read_text(encoding="utf-8").strip()
            except OSError as error:
                raise SettingsError(f"{name}: cannot read {path}: {error.strerror}") from None
    return values


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as error:
        raise SettingsError(f"{CONFIG_FILE_VARIABLE}: cannot read {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"{CONFIG_FILE_VARIABLE}: {path} is not valid TOML: {error}") from None
    return {
        key.upper(): value if not isinstance(value, list) else ",".join(map(str, value)) for key, value in data.items()
    }


def _explain(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        variable = ".".join(str(part) for part in item["loc"]) or "settings"
        lines.append(f"{variable}: {item['msg']}")
    return "invalid settings: " + "; ".join(lines)


def _masked_value(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, tuple):
        return [_masked_value(item) for item in value]
    return value


def _redis_url(host: str, port: int, db: int, password: SecretStr | None) -> str:
    auth = f":{quote(password.get_secret_value(), safe='')}@" if password else ""
    return f"redis://{auth}{host}:{port}/{db}"


def _libpq_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
