"""Fetch the resource file: streaming, size-capped, time-limited, refusing private addresses.

* The URL and every redirect go through :class:`core.guarded_http.GuardedClient`: http(s) only, each
  host resolved once and checked, the connection made to the checked address (no DNS rebinding),
  private, loopback, link-local, metadata, 6to4, NAT64 and IPv4-mapped addresses refused unless
  ``HDXRQ_DOWNLOAD_ALLOWLIST`` names them.
* The CKAN token (``HDX_GIS_API_KEY``) goes only to the exact ``HDX_DOMAIN`` host (or its subdomains when
  ``HDXRQ_TOKEN_TO_SUBDOMAINS``), compared after parsing, and never across a redirect to another host.
* ``MAX_FILE_SIZE_MB`` is enforced while streaming; ``TIMEOUT_SEC`` bounds the whole transfer.
* The file name comes from ``Content-Disposition`` (``filename*`` or ``filename``) or the URL path,
  sanitised: it is only ever the last component of a path inside the job's own directory.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

import httpx

from core.guarded_http import (
    DestinationRefused,
    Fetched,
    GuardedClient,
    OutboundError,
    OutboundPolicy,
    OutboundTimeout,
    Resolver,
    ResponseTooLarge,
    system_resolver,
)
from core.settings import CoreSettings

from .errors import DownloadProblem, DownloadRefused, FileTooLarge, ImportProblem, ImportTimeout
from .settings import ImportSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Downloaded:
    """A file saved in the job directory."""

    path: Path
    size: int
    content_type: str


def redact_url(url: str) -> str:
    """The URL without credentials, query or fragment: safe for logs and messages."""
    parts = urlsplit(url)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"


def download(
    url: str,
    directory: Path,
    settings: CoreSettings,
    on_progress: Callable[[float | None], None] | None = None,
    *,
    resolver: Resolver = system_resolver,
) -> Downloaded:
    """Download ``url`` into ``directory``; raise a coded :class:`~importapi.errors.ImportProblem`."""
    policy = OutboundPolicy.from_settings(
        settings,
        max_bytes=ImportSettings.of(settings).max_file_size_bytes,
        total_timeout_sec=float(settings.downloads.timeout_sec),
    )
    client = GuardedClient(policy, resolver=resolver)
    try:
        with client.get(url, headers_for=lambda hop: _auth_headers(hop, settings)) as fetched:
            return _save(fetched, directory, settings, on_progress)
    except OutboundError as error:
        raise _import_problem(error, url, settings) from None


def _import_problem(error: OutboundError, url: str, settings: CoreSettings) -> ImportProblem:
    """The import's code for a failed fetch (the message names the user's own URL, nothing internal)."""
    where = redact_url(url)
    if isinstance(error, DestinationRefused):
        details = error.details
        if "host" in details:
            return DownloadRefused(f"Downloads from {details['host']} are not allowed ({details['reason']})")
        return DownloadRefused("Only http and https URLs can be imported")
    if isinstance(error, ResponseTooLarge):
        return FileTooLarge(f"The file is larger than {ImportSettings.of(settings).max_file_size_mb} MB")
    if isinstance(error, OutboundTimeout):
        return ImportTimeout(f"Download from {where} timed out")
    return DownloadProblem(f"Download from {where} failed: {error.message}")


def _auth_headers(hop: httpx.URL, settings: CoreSettings) -> dict[str, str]:
    token, domain = settings.ckan.gis_api_key, settings.ckan.domain
    if token is None or not domain:
        return {}
    host = hop.raw_host.decode("ascii").lower().rstrip(".")
    domain = domain.lower().strip().rstrip(".")
    if "://" in domain:
        domain = (urlsplit(domain).hostname or "").lower()
    matches = host == domain or (ImportSettings.of(settings).token_to_subdomains and host.endswith("." + domain))
    return {"Authorization": token.get_secret_value()} if matches else {}


def _save(
    fetched: Fetched, directory: Path, settings: CoreSettings, on_progress: Callable[[float | None], None] | None
) -> Downloaded:
    url = str(fetched.url)
    if fetched.status_code != 200:
        raise DownloadProblem(f"Download from {redact_url(url)} answered HTTP {fetched.status_code}")
    expected = fetched.declared_length()
    path = directory / file_name(fetched.headers.get("content-disposition"), url)
    received = 0
    with path.open("wb") as out:
        for chunk in fetched.iter_bytes():
            received += len(chunk)
            out.write(chunk)
            if on_progress is not None:
                on_progress(100.0 * received / expected if expected else None)
    return Downloaded(path=path, size=received, content_type=fetched.headers.get("content-type", ""))


def file_name(content_disposition: str | None, url: str) -> str:
    """A safe local file name from ``Content-Disposition`` or the URL (``download`` when neither helps)."""
    name = None
    if content_disposition:
        message = Message()
        message["content-disposition"] = content_disposition
        name = message.get_filename()
    if not name:
        name = unquote(PurePosixPath(urlsplit(url).path).name)
    return sanitize_file_name(name)


def sanitize_file_name(name: str) -> str:
    """Keep the last path component, only harmless characters, a bounded length; never empty or a dot name."""
    name = re.split(r"[\\/]", name)[-1]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).lstrip(".")
    stem, dot, ext = name.rpartition(".")
    if dot and len(ext) <= 10:
        name = f"{stem[:100]}.{ext}" if stem else f"download.{ext}"
    else:
        name = name[:100]
    return name or "download"
