"""The settings: sections of typed, frozen values, read once at start-up.

Sources, later ones winning: defaults declared here, an optional TOML config file (``HDXRQ_CONFIG_FILE``,
keys are the environment variable names), the environment, and ``<NAME>_FILE`` variables for secrets
(Docker secrets style: the file's content is the value).

The settings object has one **section** per part of the service. Each section is a :class:`Section`: a
frozen pydantic model whose fields name their environment variable (plus older names still accepted).
``core`` declares the sections of what it owns (the two Redis servers, PostGIS, the CKAN client, outbound
downloads, access, the API and worker processes, jobs, logging) and :class:`CoreSettings`, which holds
them and knows how to read any set of sections from the environment. Each slice declares its own section
in its package (``importapi/settings.py``...), and the composition package declares the full type,
``app.settings.Settings``, a :class:`CoreSettings` with one more field per slice. A new variable is a
field of one section; no other code changes for it to be read, validated, masked and shown by
``./hdxrq.py config``.

How code reads them: everyone reads the core sections as attributes (``settings.redis.url``,
``settings.ckan.gis_api_key``). ``core`` and the slices hold a :class:`CoreSettings` (``core`` knows no
slice, so it cannot name the full type), and a slice reads its own section with
``ImportSettings.of(settings)``, typed, so mypy checks every use. The composition package, the tests and
the benchmarks hold the full ``Settings`` and may write ``settings.importapi.max_file_size_mb``. Why
not one class in ``core`` naming every section: it would put every slice's options (and every change to
them) in ``core``; the price of keeping them in the slices is the ``of`` call.

Nothing else in the code base reads ``os.environ`` for configuration: the settings are passed down.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Self
from urllib.parse import quote

from pydantic import (
    AfterValidator,
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


# --- value types the sections share ---


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


def _http_url(value: str | None) -> str | None:
    if value is not None and not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value.rstrip("/") if value else value


StrList = Annotated[tuple[str, ...], BeforeValidator(_split_list)]
"""A comma- (or space-) separated list."""
IntList = Annotated[tuple[int, ...], BeforeValidator(_split_list)]
OptionalStr = Annotated[str | None, BeforeValidator(_none_if_blank)]
"""Unset when empty."""
OptionalSecret = Annotated[SecretStr | None, BeforeValidator(_none_if_blank)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
"""An http(s) URL, without its trailing slash."""
OptionalHttpUrl = Annotated[str | None, BeforeValidator(_none_if_blank), AfterValidator(_http_url)]
Limits = Annotated[dict[str, int], BeforeValidator(_parse_limits)]
"""``1000`` for every name, ``geo_q=50`` for one, both combinable: ``{"*": 1000, "geo_q": 50}``."""
QueueList = Annotated[tuple[QueueName, ...], BeforeValidator(_split_list)]


def _check_redis_url(value: SecretStr | None) -> SecretStr | None:
    url = value.get_secret_value() if value else ""
    if url and is_sentinel_url(url):
        parse_sentinel_url(url)  # raises ValueError saying what is wrong, never the password
    elif url and not url.lower().startswith(PLAIN_SCHEMES):
        raise ValueError(f"must be a {', '.join(PLAIN_SCHEMES)} or redis+sentinel:// URL")
    return value


RedisUrl = Annotated[SecretStr | None, BeforeValidator(_none_if_blank), AfterValidator(_check_redis_url)]
"""A ``redis://``, ``rediss://``, ``unix://`` or ``redis+sentinel://`` URL: a secret, it may hold a password."""


def env(name: str, *legacy: str) -> Any:
    """Field alias: the environment variable that sets a field (plus older names it still accepts)."""
    return AliasChoices(name, *legacy) if legacy else name


class SettingsError(Exception):
    """A setting has a bad value; the message names the variable."""


# --- sections ---


class Section(BaseModel):
    """One group of settings; each field's ``validation_alias`` is its environment variable (:func:`env`)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    @classmethod
    def of(cls, settings: CoreSettings) -> Self:
        """This section of ``settings`` (how a slice reads its own: ``TilesSettings.of(settings).max_zoom``)."""
        section = getattr(settings, _field_holding(type(settings), cls))
        assert isinstance(section, cls)
        return section

    @classmethod
    def variables(cls) -> dict[str, tuple[str, ...]]:
        """Field name → the environment variables that set it, the current name first."""
        names = {}
        for name, field in cls.model_fields.items():
            alias = field.validation_alias
            names[name] = tuple(map(str, alias.choices)) if isinstance(alias, AliasChoices) else (str(alias),)
        return names

    def masked(self) -> dict[str, Any]:
        """Values by environment variable name, secrets masked."""
        return {variables[0]: _masked_value(getattr(self, name)) for name, variables in self.variables().items()}

    def secret_values(self) -> list[str]:
        """The secrets this section holds (for log scrubbing and refusing them in job arguments)."""
        values: list[str] = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            for item in value if isinstance(value, tuple) else (value,):
                if isinstance(item, SecretStr):
                    values.append(item.get_secret_value())
        return [value for value in values if value]


@functools.cache
def _field_holding(settings_type: type[CoreSettings], section_type: type[Section]) -> str:
    for name, section in settings_type.sections().items():
        if section is section_type:
            return name
    raise LookupError(
        f"{settings_type.__name__} has no {section_type.__name__} section: "
        "build the settings with app.settings.Settings, which holds every slice's"
    )


class RedisServer(Section):
    """What both Redis sections hold: where the server is (or its whole URL), and the URL made of it.
    The subclasses name the variables."""

    host: str
    port: int
    db: int
    password: OptionalSecret
    url_override: RedisUrl

    @property
    def url(self) -> str:
        """The URL to connect with, password included: never log it."""
        if self.url_override:
            return self.url_override.get_secret_value()
        auth = f":{quote(self.password.get_secret_value(), safe='')}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/{self.db}"

    def secret_values(self) -> list[str]:
        """The password, and the one inside the URL (its other parts are no secret to scrub)."""
        values = [self.password.get_secret_value() if self.password else ""]
        values.append(url_password(self.url_override.get_secret_value()) or "" if self.url_override else "")
        return [value for value in values if value]


class RedisSettings(RedisServer):
    """The RQ Redis: queues, job records, buffers."""

    host: str = Field("localhost", validation_alias=env("HDX_REDIS_ADDR"))
    port: int = Field(6379, validation_alias=env("HDX_REDIS_PORT"), ge=1, le=65535)
    db: int = Field(1, validation_alias=env("HDX_REDIS_GISDB"), ge=0)
    password: OptionalSecret = Field(None, validation_alias=env("HDXRQ_REDIS_PASSWORD"))
    url_override: RedisUrl = Field(None, validation_alias=env("HDXRQ_REDIS_URL"))
    failover_sec: float = Field(30.0, validation_alias=env("HDXRQ_REDIS_FAILOVER_SEC"), gt=0)


class EventBusSettings(RedisServer):
    """The event-bus Redis, shared with other consumers: never flushed."""

    host: str = Field("localhost", validation_alias=env("REDIS_STREAM_HOST"))
    port: int = Field(6379, validation_alias=env("REDIS_STREAM_PORT"), ge=1, le=65535)
    db: int = Field(7, validation_alias=env("REDIS_STREAM_DB"), ge=0)
    stream_name: str = Field("hdx_event_stream", validation_alias=env("REDIS_STREAM_STREAM_NAME"))
    password: OptionalSecret = Field(None, validation_alias=env("HDXRQ_STREAM_REDIS_PASSWORD"))
    url_override: RedisUrl = Field(None, validation_alias=env("HDXRQ_STREAM_REDIS_URL"))
    maxlen: int = Field(50000, validation_alias=env("HDXRQ_STREAM_MAXLEN"), ge=1)


class PostgisSettings(Section):
    """The PostGIS database of the layers."""

    host: str = Field("localhost", validation_alias=env("HDX_GISDB_ADDR"))
    port: int = Field(5432, validation_alias=env("HDX_GISDB_PORT"), ge=1, le=65535)
    name: str = Field("gis", validation_alias=env("HDX_GISDB_DB"))
    user: str = Field("gis", validation_alias=env("HDX_GISDB_USER"))
    password: OptionalSecret = Field(None, validation_alias=env("HDX_GISDB_PASS"))
    pool_size: int = Field(8, validation_alias=env("HDXRQ_GISDB_POOL_SIZE"), ge=1)
    table_name_prefix: str = Field("pre", validation_alias=env("TABLE_NAME_PREFIX"), pattern=r"^[a-z_][a-z0-9_]*$")
    """Layer tables are ``<prefix>_<resource id>``: imports write them, tiles read them."""

    def conninfo(self, *, with_password: bool = True) -> str:
        """libpq keyword/value connection string."""
        parts = {
            "host": self.host,
            "port": str(self.port),
            "dbname": self.name,
            "user": self.user,
            "application_name": "hdxrq",
        }
        if with_password and self.password:
            parts["password"] = self.password.get_secret_value()
        return " ".join(f"{key}={_libpq_quote(value)}" for key, value in parts.items())


class CkanSettings(Section):
    """The CKAN client: where CKAN is, its tokens, and how calls and callbacks to it behave."""

    api_base_url: OptionalHttpUrl = Field(None, validation_alias=env("CKAN_API_BASE_URL"))
    gis_api_key: OptionalSecret = Field(None, validation_alias=env("HDX_GIS_API_KEY"))
    fscheck_api_key_value: OptionalSecret = Field(None, validation_alias=env("HDX_FSCHECK_API_KEY"))
    domain: OptionalStr = Field(None, validation_alias=env("HDX_DOMAIN"))
    """CKAN's host: only downloads from it get the CKAN token."""
    user_agent: str = Field("HDXINTERNAL_GEOPREVIEW", validation_alias=env("HDX_USER_AGENT"))
    timeout_sec: float = Field(30.0, validation_alias=env("HDXRQ_CKAN_TIMEOUT_SEC"), gt=0)
    callback_retry_hours: float = Field(24.0, validation_alias=env("HDXRQ_CALLBACK_RETRY_HOURS"), gt=0)

    @property
    def fscheck_api_key(self) -> SecretStr | None:
        """CKAN token for the file-structure-check callback (falls back to the geopreview one)."""
        return self.fscheck_api_key_value or self.gis_api_key


class DownloadSettings(Section):
    """Files and URLs fetched from outside (imports, the HXL proxy): :mod:`core.guarded_http`."""

    allowlist: StrList = Field((), validation_alias=env("HDXRQ_DOWNLOAD_ALLOWLIST"))
    timeout_sec: int = Field(120, validation_alias=env("TIMEOUT_SEC"), ge=1)
    read_timeout_sec: float = Field(30.0, validation_alias=env("HDXRQ_DOWNLOAD_READ_TIMEOUT_SEC"), gt=0)
    max_redirects: int = Field(5, validation_alias=env("HDXRQ_DOWNLOAD_MAX_REDIRECTS"), ge=0)

    @field_validator("allowlist")
    @classmethod
    def _networks_or_hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if "/" in item:
                ipaddress.ip_network(item, strict=False)  # raises ValueError naming the item
        return value


class AccessSettings(Section):
    """Who may call what (docs/access.md)."""

    admin_tokens: Annotated[tuple[SecretStr, ...], BeforeValidator(_split_list)] = Field(
        (), validation_alias=env("HDXRQ_ADMIN_TOKENS")
    )
    notifier_tokens: Annotated[tuple[SecretStr, ...], BeforeValidator(_split_list)] = Field(
        (), validation_alias=env("HDXRQ_NOTIFIER_TOKENS")
    )
    """Tokens that admit CKAN's notifications from any address and open nothing else."""
    allowed_networks: StrList = Field((), validation_alias=env("HDXRQ_ALLOWED_NETWORKS"))

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


class ApiSettings(Section):
    """The API processes (``./hdxrq.py serve``)."""

    monitor_url: str = Field("/monitor", validation_alias=env("MONITOR_URL"), pattern=r"^/[A-Za-z0-9_\-/]*$")
    max_request_mb: int = Field(32, validation_alias=env("HDXRQ_MAX_REQUEST_MB"), ge=1)
    workers: int = Field(4, validation_alias=env("HDXRQ_API_WORKERS"), ge=1)
    max_workers: int = Field(16, validation_alias=env("HDXRQ_API_MAX_WORKERS"), ge=1)
    threads: int = Field(1, validation_alias=env("HDXRQ_API_THREADS"), ge=1)


class WorkerSettings(Section):
    """The worker processes (``./hdxrq.py worker``, ``run``)."""

    queues: QueueList = Field(ALL_QUEUES, validation_alias=env("QUEUES"))
    ttl: int = Field(600, validation_alias=env("HDX_REDIS_WORKER_TTL"), ge=1)
    run_count: int = Field(3, validation_alias=env("HDXRQ_RUN_WORKERS"), ge=1)
    shutdown_grace_sec: float = Field(30.0, validation_alias=env("HDXRQ_SHUTDOWN_GRACE_SEC"), gt=0)
    """How long a stopping worker lets its job finish; ``run`` and ``serve`` wait as long for their processes."""

    @field_validator("queues", mode="before")
    @classmethod
    def _known_queues(cls, value: Any) -> Any:
        names = _split_list(value)
        if isinstance(names, (list, tuple)):
            unknown = sorted(set(map(str, names)) - set(ALL_QUEUES))
            if unknown:
                raise ValueError(f"unknown queue(s) {', '.join(unknown)}; known: {', '.join(ALL_QUEUES)}")
        return names or ALL_QUEUES


class JobSettings(Section):
    """Jobs: which functions exist, how many may wait, how long their records stay."""

    max_queued: Limits = Field({}, validation_alias=env("HDXRQ_MAX_QUEUED_JOBS"))
    retention_hours: float = Field(168.0, validation_alias=env("HDXRQ_JOB_RETENTION_HOURS"), gt=0)
    extra_modules: StrList = Field((), validation_alias=env("HDXRQ_EXTRA_JOB_MODULES"))


class LoggingSettings(Section):
    """Logging (``logging.yml``)."""

    format: str = Field("text", validation_alias=env("HDXRQ_LOG_FORMAT"), pattern=r"^(text|json)$")
    level: str = Field("INFO", validation_alias=env("HDXRQ_LOG_LEVEL"))
    levels: str = Field("", validation_alias=env("HDXRQ_LOG_LEVELS"))

    @field_validator("level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level


# --- the settings object ---


class CoreSettings(BaseModel):
    """The sections ``core`` owns, and reading any set of sections (a subclass adds fields) at once."""

    model_config = ConfigDict(frozen=True)

    redis: RedisSettings
    event_bus: EventBusSettings
    postgis: PostgisSettings
    ckan: CkanSettings
    downloads: DownloadSettings
    access: AccessSettings
    api: ApiSettings
    workers: WorkerSettings
    jobs: JobSettings
    logging: LoggingSettings

    @classmethod
    def sections(cls) -> dict[str, type[Section]]:
        """Field name → section type, in the order they are declared (and shown)."""
        found = {}
        for name, field in cls.model_fields.items():
            if not (isinstance(field.annotation, type) and issubclass(field.annotation, Section)):
                raise TypeError(f"{cls.__name__}.{name} is not a Section")
            found[name] = field.annotation
        return found

    @classmethod
    def variable_names(cls) -> set[str]:
        """Every environment variable these settings read."""
        return {name for section in cls.sections().values() for names in section.variables().values() for name in names}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        """Read the settings from an environment mapping (``os.environ`` by default) and its config file."""
        environ = os.environ if environ is None else environ
        known = cls.variable_names()
        values: dict[str, Any] = {}
        config_file = environ.get(CONFIG_FILE_VARIABLE)
        if config_file:
            values.update(_read_config_file(Path(config_file)))
        values.update({name: environ[name] for name in known if name in environ})
        values.update(_secret_files(environ, known))
        try:  # each section takes the variables its fields name and ignores the others
            return cls.model_validate(dict.fromkeys(cls.sections(), values))
        except ValidationError as error:
            raise SettingsError(_explain(error)) from None

    def masked(self) -> dict[str, dict[str, Any]]:
        """Effective settings by section, then by environment variable name, secrets masked."""
        return {name: getattr(self, name).masked() for name in self.sections()}

    def secret_values(self) -> list[str]:
        """Every configured secret, for tests and log scrubbing."""
        return [value for name in self.sections() for value in getattr(self, name).secret_values()]

    def updated(self, **changes: Mapping[str, Any]) -> Self:
        """A copy with some fields of some sections changed, by field name: ``updated(tiles={"max_zoom": 3})``.
        The values are not validated (tests use it)."""
        return self.model_copy(
            update={name: getattr(self, name).model_copy(update=dict(fields)) for name, fields in changes.items()}
        )


# --- helpers ---


def _secret_files(environ: Mapping[str, str], known: set[str]) -> dict[str, str]:
    values = {}
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
    """One ``VARIABLE: what is wrong`` per error (a field's location is its section, then its variable)."""
    lines = []
    for item in error.errors():
        location = [str(part) for part in item["loc"]]
        lines.append(f"{location[-1] if location else 'settings'}: {item['msg']}")
    return "invalid settings: " + "; ".join(lines)


def _masked_value(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, tuple):
        return [_masked_value(item) for item in value]
    return value


def _libpq_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
