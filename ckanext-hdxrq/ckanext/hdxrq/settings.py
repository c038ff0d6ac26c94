"""The extension's settings, read from CKAN's configuration (declared in ``config_declaration.yaml``).

They are read on every use rather than kept at start-up: reading a few keys is cheap, and a changed
configuration (CKAN's tests patch it per test) takes effect at once. Either plugin alone declares the
options (:func:`declare_options`), so each gets the declared defaults.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PREFIX = "ckanext.hdxrq."
DECLARATIONS = Path(__file__).with_name("config_declaration.yaml")


def declare_options(declaration: Any, key: Any) -> None:
    """Declare the options of ``config_declaration.yaml`` once, whichever of the two plugins asks first."""
    if PREFIX + "url" not in declaration:
        declaration.load_dict(yaml.safe_load(DECLARATIONS.read_text()))


def normalise_format(value: Any) -> str:
    """A resource format as compared with the configured list: lower case, letters and digits only."""
    return re.sub(r"[^a-z0-9]", "", str(value or "").lower())


def _as_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return value.split()
    return [str(item) for item in value or ()]


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"true", "yes", "on", "1"}
    return bool(value)


@dataclass(frozen=True)
class ExtensionSettings:
    """What the plugins need from ``ckan.ini``."""

    url: str
    public_url: str
    token: str | None
    formats: frozenset[str]
    connect_timeout: float
    timeout: float
    geopreview: bool
    change_events: bool

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ExtensionSettings:
        """Build the settings from CKAN's config object; the defaults are those declared in the YAML file."""

        def get(name: str) -> Any:
            value = config.get(PREFIX + name)
            return None if value == "" else value

        url = str(get("url")).rstrip("/")
        return cls(
            url=url,
            public_url=str(get("public_url") or url).rstrip("/"),
            token=get("token"),
            formats=frozenset(normalise_format(item) for item in _as_list(get("formats"))),
            connect_timeout=float(get("connect_timeout")),
            timeout=float(get("timeout")),
            geopreview=_as_bool(get("geopreview")),
            change_events=_as_bool(get("change_events")),
        )

    def is_geo(self, resource: Mapping[str, Any]) -> bool:
        """Whether hdxrq imports a resource of this format."""
        return normalise_format(resource.get("format")) in self.formats
