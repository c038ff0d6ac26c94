"""The tiles slice's settings section (docs/tiles.md). The layer tables' prefix is ``core``'s
(``postgis.table_name_prefix``): imports write the tables that tiles read."""

from __future__ import annotations

from pydantic import Field

from core.settings import OptionalStr, Section, env


class TilesSettings(Section):
    """Vector tiles, the map preview and the prerender of expensive tiles."""

    basemap_style_url: OptionalStr = Field(
        None, validation_alias=env("HDXRQ_TILES_BASEMAP_STYLE_URL"), pattern=r"^https?://"
    )
    cache_max_age: int = Field(300, validation_alias=env("HDXRQ_TILES_CACHE_MAX_AGE"), ge=0)
    max_zoom: int = Field(24, validation_alias=env("HDXRQ_TILES_MAX_ZOOM"), ge=0, le=30)
    statement_timeout_ms: int = Field(10000, validation_alias=env("HDXRQ_TILES_STATEMENT_TIMEOUT_MS"), ge=100)
    memory_cache_mb: int = Field(64, validation_alias=env("HDXRQ_TILES_MEMORY_CACHE_MB"), ge=0)
    memory_cache_min_build_ms: float = Field(20.0, validation_alias=env("HDXRQ_TILES_MEMORY_CACHE_MIN_BUILD_MS"), ge=0)
    prerender: bool = Field(True, validation_alias=env("HDXRQ_TILES_PRERENDER"))
    prerender_min_features: int = Field(300, validation_alias=env("HDXRQ_TILES_PRERENDER_MIN_FEATURES"), ge=1)
    prerender_max_tiles: int = Field(2000, validation_alias=env("HDXRQ_TILES_PRERENDER_MAX_TILES"), ge=0)
    prerender_max_sec: float = Field(10.0, validation_alias=env("HDXRQ_TILES_PRERENDER_MAX_SEC"), gt=0)
