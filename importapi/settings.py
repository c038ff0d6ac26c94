"""The import slice's settings section (docs/importapi.md): temporary files, size, time and archive limits."""

from __future__ import annotations

from pydantic import Field

from core.settings import OptionalStr, Section, env


class ImportSettings(Section):
    """Geopreview imports: download limits beyond :class:`core.settings.DownloadSettings`, archives, loading."""

    gis_tmp: OptionalStr = Field(None, validation_alias=env("HDX_GIS_TMP"))
    max_file_size_mb: int = Field(300, validation_alias=env("MAX_FILE_SIZE_MB"), ge=1)
    token_to_subdomains: bool = Field(False, validation_alias=env("HDXRQ_TOKEN_TO_SUBDOMAINS"))
    ogr_timeout_sec: int = Field(900, validation_alias=env("HDXRQ_OGR_TIMEOUT_SEC"), ge=1)
    archive_max_members: int = Field(10000, validation_alias=env("HDXRQ_ARCHIVE_MAX_MEMBERS"), ge=1)
    archive_max_unpacked_mb: int = Field(2048, validation_alias=env("HDXRQ_ARCHIVE_MAX_UNPACKED_MB"), ge=1)
    archive_max_ratio: int = Field(200, validation_alias=env("HDXRQ_ARCHIVE_MAX_RATIO"), ge=1)
    layer_tables_logged: bool = Field(True, validation_alias=env("HDXRQ_LAYER_TABLES_LOGGED"))
    geojson_fast_path: bool = Field(True, validation_alias=env("HDXRQ_IMPORT_GEOJSON_FAST_PATH"))

    @property
    def max_file_size_bytes(self) -> int:
        return self.max_file_size_mb * 1024 * 1024
