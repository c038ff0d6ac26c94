"""Failures of a geopreview import, each with its wire code (CONTRACTS.md §2.2).

    core.errors.HdxError
    └── ImportProblem                  unknown
        ├── MissingUrl                 missing-url
        ├── DownloadProblem            download-problem
        │   └── DownloadRefused        download-refused      (private address, bad scheme)
        ├── FileTooLarge               file-too-large
        ├── ImportTimeout              timeout
        ├── FolderCreationProblem      folder-creation-problem
        ├── UnsupportedFormat          unsupported-format
        ├── NoLayerFound               no-layer-found
        ├── ArchiveTooLarge            archive-too-large
        ├── PushingToPostgisProblem    pushing-to-postgis-problem
        │   └── PostgisUnavailable     pushing-to-postgis-problem (retried while the job has retries)
        └── FetchBoundingBoxProblem    fetch-bounding-box-problem
    ImportSuperseded                   not an error: a newer request for the resource exists

Messages are safe to show to CKAN users: they never hold tokens, passwords or full URLs.
"""

from __future__ import annotations

from core.errors import HdxError


class ImportProblem(HdxError):
    """Base of every import failure."""

    error_type = "unknown"
    user_message = "Unexpected problem during the import"


class MissingUrl(ImportProblem):
    error_type = "missing-url"
    http_status = 400
    user_message = "The resource_download_url parameter is missing"


class DownloadProblem(ImportProblem):
    error_type = "download-problem"
    user_message = "The file could not be downloaded"


class DownloadRefused(DownloadProblem):
    error_type = "download-refused"
    user_message = "Downloads from this address are not allowed"


class FileTooLarge(ImportProblem):
    error_type = "file-too-large"
    user_message = "The file is larger than the allowed size"


class ImportTimeout(ImportProblem):
    error_type = "timeout"
    user_message = "The import took too long"


class FolderCreationProblem(ImportProblem):
    error_type = "folder-creation-problem"
    user_message = "Could not create a temporary folder for the import"


class UnsupportedFormat(ImportProblem):
    error_type = "unsupported-format"
    user_message = "The file is not in a supported geographic format"


class NoLayerFound(ImportProblem):
    error_type = "no-layer-found"
    user_message = "No layer with geographic features was found in the file"


class ArchiveTooLarge(ImportProblem):
    error_type = "archive-too-large"
    user_message = "The archive unpacks to too many files or bytes"


class PushingToPostgisProblem(ImportProblem):
    error_type = "pushing-to-postgis-problem"
    user_message = "Problem during ogr2ogr import to postgis"


class PostgisUnavailable(PushingToPostgisProblem):
    """PostGIS went away during the import (restart, failover): the job runs again later."""

    user_message = "PostGIS was unavailable during the import"


class FetchBoundingBoxProblem(ImportProblem):
    error_type = "fetch-bounding-box-problem"
    user_message = "Could not read the bounding box and fields of the imported layer"


class ImportSuperseded(Exception):
    """A newer add-layer request for the same resource arrived: this import must not replace the table."""
