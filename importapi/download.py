"""Fetch the resource file: streaming, size-capped, time-limited, refusing private addresses.

* Every hop (the URL and each redirect) is checked: http(s) only, and its host must resolve to public
  addresses unless ``HDXRQ_DOWNLOAD_ALLOWLIST`` names it (host name, IP or CIDR). After connecting, the
  peer address is checked again, so a DNS answer that changes between check and connect is caught too.
* The CKAN token (``HDX_GIS_API_KEY``) goes only to the exact ``HDX_DOMAIN`` host (or its subdomains when
  ``HDXRQ_TOKEN_TO_SUBDOMAINS``), compared after parsing, and never across a redirect to another host.
* ``MAX_FILE_SIZE_MB`` is enforced while streaming; ``TIMEOUT_SEC`` bounds the whole transfer.
* The file name comes from ``Content-Disposition`` (``filename*`` or ``filename``) or the URL path,
  sanitised: it is only ever the last component of a path inside the job's own directory.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urljoin, urlsplit

import httpx

from core.settings import Settings

from .errors import DownloadProblem, DownloadRefused, FileTooLarge, ImportTimeout

log = logging.getLogger(__name__)

CHUNK_BYTES = 256 * 1024
CONNECT_TIMEOUT_SEC = 10.0
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata"})
_REDIRECTS = {301, 302, 303, 307, 308}


@dataclass(frozen=True)
class Downloaded:
    """A file saved in the job directory."""

    path: Path
    size: int
    content_type: str


def redact_url(url: str) -> str:
    """The URL without credentials, query or fragment: safe for logs and messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def download(
    url: str, directory: Path, settings: Settings, on_progress: Callable[[float | None], None] | None = None
) -> Downloaded:
    """Download ``url`` into ``directory``; raise a coded :class:`~importapi.errors.ImportProblem`."""
    deadline = time.monotonic() + settings.timeout_sec
    timeout = httpx.Timeout(settings.download_read_timeout_sec, connect=CONNECT_TIMEOUT_SEC)
    with httpx.Client(timeout=timeout, follow_redirects=False, headers={"User-Agent": settings.user_agent}) as http:
        for _hop in range(settings.download_max_redirects + 1):
            _check_destination(url, settings)
            headers = _auth_headers(url, settings)
            try:
                with http.stream("GET", url, headers=headers) as response:
                    _check_peer(response, url, settings)
                    if response.status_code in _REDIRECTS and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        continue
                    return _save(response, url, directory, settings, deadline, on_progress)
            except httpx.TimeoutException:
                raise ImportTimeout(f"Download from {redact_url(url)} timed out") from None
            except httpx.HTTPError as error:
                raise DownloadProblem(f"Download from {redact_url(url)} failed: {type(error).__name__}") from None
    raise DownloadProblem(f"Too many redirects from {redact_url(url)}")


def _auth_headers(url: str, settings: Settings) -> dict[str, str]:
    if settings.gis_api_key is None or not settings.hdx_domain:
        return {}
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    domain = settings.hdx_domain.lower().strip().rstrip(".")
    if "://" in domain:
        domain = (urlsplit(domain).hostname or "").lower()
    matches = host == domain or (settings.token_to_subdomains and host.endswith("." + domain))
    return {"Authorization": settings.gis_api_key.get_secret_value()} if matches else {}


def _check_destination(url: str, settings: Settings) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DownloadRefused("Only http and https URLs can be imported")
    host = parts.hostname.lower().rstrip(".")
    if _host_allowed(host, settings):
        return
    if host in METADATA_HOSTS:
        raise DownloadRefused(f"Downloads from {host} are not allowed")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise DownloadProblem(f"Cannot resolve the host {host}") from None
    for info in infos:
        _check_address(str(info[4][0]), host, settings)


def _check_peer(response: httpx.Response, url: str, settings: Settings) -> None:
    stream = response.extensions.get("network_stream")
    peer = stream.get_extra_info("server_addr") if stream is not None else None
    if peer:
        _check_address(str(peer[0]), (urlsplit(url).hostname or "").lower(), settings)


def _check_address(address: str, host: str, settings: Settings) -> None:
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.is_global and not ip.is_multicast:
        return
    if _host_allowed(str(ip), settings) or _host_allowed(host, settings):
        return
    raise DownloadRefused(f"Downloads from {host} are not allowed (private or reserved address)")


def _host_allowed(host: str, settings: Settings) -> bool:
    for item in settings.download_allowlist:
        item = item.lower()
        if item == host:
            return True
        try:
            if ipaddress.ip_address(host) in ipaddress.ip_network(item, strict=False):
                return True
        except ValueError:
            continue
    return False


def _save(
    response: httpx.Response,
    url: str,
    directory: Path,
    settings: Settings,
    deadline: float,
    on_progress: Callable[[float | None], None] | None,
) -> Downloaded:
    if response.status_code != 200:
        raise DownloadProblem(f"Download from {redact_url(url)} answered HTTP {response.status_code}")
    limit = settings.max_file_size_bytes
    expected = _content_length(response)
    if expected is not None and expected > limit:
        raise FileTooLarge(f"The file is larger than {settings.max_file_size_mb} MB")
    path = directory / file_name(response.headers.get("content-disposition"), url)
    received = 0
    with path.open("wb") as out:
        for chunk in response.iter_bytes(CHUNK_BYTES):
            received += len(chunk)
            if received > limit:
                raise FileTooLarge(f"The file is larger than {settings.max_file_size_mb} MB")
            if time.monotonic() > deadline:
                raise ImportTimeout(f"Download took more than {settings.timeout_sec} seconds")
            out.write(chunk)
            if on_progress is not None:
                on_progress(100.0 * received / expected if expected else None)
    return Downloaded(path=path, size=received, content_type=response.headers.get("content-type", ""))


def _content_length(response: httpx.Response) -> int | None:
    try:
        return int(response.headers["content-length"])
    except (KeyError, ValueError):
        return None


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
