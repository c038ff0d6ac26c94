"""The one HTTP client for URLs that come from outside: resource downloads and the HXL proxy.

Whoever can upload to CKAN writes these URLs, so a URL must not lead inside. For each hop (the URL and
every redirect) the client:

* accepts ``http`` and ``https`` only, and refuses cloud-metadata host names;
* resolves the host **once** and checks every address it got (:func:`refusal`); the connection then goes
  to the first checked address that answers, keeping the original ``Host`` header and the TLS server
  name and certificate check (httpx's ``sni_hostname`` request extension). A DNS answer that changes
  between the check and the connection (rebinding) is therefore never used;
* follows redirects itself, at most ``max_redirects``, checking each new hop the same way;
* ignores proxy settings of the environment (through a proxy, the address check would mean nothing).

Refused addresses: anything not globally routable (private, loopback, link-local, carrier-grade NAT,
reserved, documentation, unspecified), multicast, the IPv6 forms that carry an IPv4 address (IPv4-mapped,
IPv4-compatible, 6to4, NAT64, Teredo), and the cloud metadata services, unless the allow-list
(``HDXRQ_DOWNLOAD_ALLOWLIST``) names the host, the address or a network that holds it.

Answers are read in chunks: ``max_bytes`` (declared or counted) and the overall deadline are enforced
while streaming, never after reading the whole body.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from .errors import HdxError

if TYPE_CHECKING:
    from .settings import CoreSettings

Resolver = Callable[[str, int], Sequence[str]]
"""``resolver(host, port)`` → the host's addresses as strings, in preference order."""
HeadersFor = Callable[[httpx.URL], Mapping[str, str]]
"""Extra request headers for one hop, chosen by its URL (a token only for the host it belongs to)."""

CHUNK_BYTES = 256 * 1024
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
METADATA_HOSTS = frozenset(
    {"metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal"}
)
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(address)
    for address in ("169.254.169.254", "169.254.170.2", "169.254.169.253", "100.100.100.200", "fd00:ec2::254")
)
"""AWS, GCP, Azure, OpenStack (169.254.169.254 and neighbours), Alibaba (100.100.100.200), AWS IPv6."""
NAT64_NETWORKS = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
SIXTOFOUR = ipaddress.ip_network("2002::/16")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


class OutboundError(HdxError):
    """A URL from outside could not be fetched."""

    error_type = "outbound-problem"
    http_status = 502
    user_message = "The address could not be fetched"


class DestinationRefused(OutboundError):
    """The URL, or an address its host resolves to, is not one the service may reach."""

    error_type = "destination-refused"
    http_status = 403
    user_message = "Requests to this address are not allowed"


class ResponseTooLarge(OutboundError):
    error_type = "response-too-large"
    user_message = "The answer is larger than allowed"


class OutboundTimeout(OutboundError):
    error_type = "outbound-timeout"
    http_status = 504
    user_message = "The address did not answer in time"


@dataclass(frozen=True)
class OutboundPolicy:
    """What one fetch may do."""

    max_bytes: int
    total_timeout_sec: float
    allowlist: tuple[str, ...] = ()
    max_redirects: int = 5
    connect_timeout_sec: float = 10.0
    read_timeout_sec: float = 30.0
    user_agent: str = "hdxrq"

    @classmethod
    def from_settings(cls, settings: CoreSettings, *, max_bytes: int, total_timeout_sec: float) -> OutboundPolicy:
        return cls(
            max_bytes=max_bytes,
            total_timeout_sec=total_timeout_sec,
            allowlist=tuple(settings.downloads.allowlist),
            max_redirects=settings.downloads.max_redirects,
            read_timeout_sec=min(settings.downloads.read_timeout_sec, total_timeout_sec),
            connect_timeout_sec=min(10.0, total_timeout_sec),
            user_agent=settings.ckan.user_agent,
        )


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses ``getaddrinfo`` gives for ``host``, IPv4 first, without repeats."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    addresses = [str(info[4][0]) for info in infos]
    return sorted(dict.fromkeys(addresses), key=lambda address: ":" in address)


def refusal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why ``address`` must not be reached (None when it may): the test the allow-list can override."""
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return "an IPv4-mapped IPv6 address"
        if address in SIXTOFOUR:
            return "a 6to4 address"
        if any(address in network for network in NAT64_NETWORKS):
            return "a NAT64 address"
        if address.teredo is not None:
            return "a Teredo address"
        if address in IPV4_COMPATIBLE:
            return "an IPv4-compatible IPv6 address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if not address.is_global:
        return "a private or reserved address"
    return None


def allowlisted(host_or_address: str, allowlist: Sequence[str]) -> bool:
    """Whether the allow-list names this host, this address, or a network holding it."""
    candidate = host_or_address.lower().rstrip(".")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(candidate)
    except ValueError:
        address = None
    for item in allowlist:
        item = item.lower().rstrip(".")
        if item == candidate:
            return True
        if address is not None:
            try:
                if address in ipaddress.ip_network(item, strict=False):
                    return True
            except ValueError:
                continue
    return False


@dataclass
class Fetched:
    """An answer being read: its status and headers now, its body in capped chunks."""

    url: httpx.URL
    """The URL that answered (after redirects), as the client asked for it: host name, not address."""
    response: httpx.Response
    max_bytes: int
    deadline: float

    @property
    def status_code(self) -> int:
        return self.response.status_code

    @property
    def headers(self) -> httpx.Headers:
        return self.response.headers

    def declared_length(self) -> int | None:
        try:
            return int(self.response.headers["content-length"])
        except (KeyError, ValueError):
            return None

    def iter_bytes(self) -> Iterator[bytes]:
        """The body in chunks; raises :class:`ResponseTooLarge` or :class:`OutboundTimeout` on the way."""
        declared = self.declared_length()
        if declared is not None and declared > self.max_bytes:
            raise ResponseTooLarge(f"The answer is larger than {self.max_bytes} bytes")
        received = 0
        try:
            for chunk in self.response.iter_bytes(CHUNK_BYTES):
                received += len(chunk)
                if received > self.max_bytes:
                    raise ResponseTooLarge(f"The answer is larger than {self.max_bytes} bytes")
                if time.monotonic() > self.deadline:
                    raise OutboundTimeout("The transfer took longer than allowed")
                yield chunk
        except httpx.TimeoutException:
            raise OutboundTimeout("The address stopped sending") from None
        except httpx.HTTPError as error:
            raise OutboundError(f"The transfer failed ({type(error).__name__})") from None

    def read(self) -> bytes:
        """The whole body, within the same limits."""
        return b"".join(self.iter_bytes())


class GuardedClient:
    """Fetch outside URLs under an :class:`OutboundPolicy` (see the module docstring)."""

    def __init__(
        self,
        policy: OutboundPolicy,
        *,
        resolver: Resolver = system_resolver,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.policy = policy
        self.resolver = resolver
        self._transport = transport

    @contextmanager
    def get(self, url: str, *, headers_for: HeadersFor | None = None) -> Iterator[Fetched]:
        """GET ``url`` following checked redirects; the final answer, open for reading (any status)."""
        policy = self.policy
        deadline = time.monotonic() + policy.total_timeout_sec
        timeout = httpx.Timeout(policy.read_timeout_sec, connect=policy.connect_timeout_sec)
        hop = _parse(url)
        with httpx.Client(
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,
            transport=self._transport,
            headers={"User-Agent": policy.user_agent},
        ) as http:
            for _ in range(policy.max_redirects + 1):
                addresses = self.checked_addresses(hop)
                extra = dict(headers_for(hop)) if headers_for is not None else {}
                with self._send(http, hop, addresses, extra) as response:
                    location = response.headers.get("location")
                    if response.status_code in REDIRECT_STATUSES and location:
                        hop = _parse(str(hop.join(location)))
                        continue
                    yield Fetched(hop, response, policy.max_bytes, deadline)
                    return
        raise OutboundError(f"More than {policy.max_redirects} redirects")

    def checked_addresses(self, url: httpx.URL) -> list[str]:
        """The addresses ``url``'s host resolves to, all of them allowed; raises :class:`DestinationRefused`."""
        host = _ascii_host(url)
        allowed_host = allowlisted(host, self.policy.allowlist)
        if host in METADATA_HOSTS and not allowed_host:
            raise _refused(host, "a cloud metadata service")
        port = url.port or (443 if url.scheme == "https" else 80)
        addresses = list(self.resolver(host, port))
        if not addresses:
            raise OutboundError(f"Cannot resolve the host {host}")
        for text in addresses:
            address = ipaddress.ip_address(text.split("%")[0])
            reason = refusal(address)
            if reason and not allowed_host and not allowlisted(str(address), self.policy.allowlist):
                raise _refused(host, reason)
        return addresses

    @contextmanager
    def _send(
        self, http: httpx.Client, hop: httpx.URL, addresses: list[str], headers: dict[str, str]
    ) -> Iterator[httpx.Response]:
        """Connect to the first checked address that accepts, asking for ``hop`` by its own name."""
        host_header = hop.netloc.decode("ascii")
        extensions = {"sni_hostname": _ascii_host(hop)} if hop.scheme == "https" else {}
        last_error: httpx.HTTPError | None = None
        for address in addresses:
            pinned = hop.copy_with(host=address.split("%")[0])
            request = http.build_request("GET", pinned, headers={**headers, "Host": host_header}, extensions=extensions)
            try:
                response = http.send(request, stream=True)
            except httpx.ConnectError as error:
                last_error = error
                continue
            except httpx.TimeoutException:
                raise OutboundTimeout(f"{hop.host} did not answer in time") from None
            except httpx.HTTPError as error:
                raise OutboundError(f"The request to {hop.host} failed ({type(error).__name__})") from None
            try:
                yield response
            finally:
                response.close()
            return
        name = type(last_error).__name__ if last_error else "no address"
        raise OutboundError(f"Cannot connect to {hop.host} ({name})")


def _refused(host: str, reason: str) -> DestinationRefused:
    return DestinationRefused(f"Requests to {host} are not allowed ({reason})", host=host, reason=reason)


def _parse(url: str) -> httpx.URL:
    """An absolute http(s) URL with a host; raises :class:`DestinationRefused`."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise DestinationRefused("The URL cannot be parsed") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise DestinationRefused("Only http and https URLs are allowed")
    return parsed


def _ascii_host(url: httpx.URL) -> str:
    """The host as DNS and TLS see it (IDNA-encoded, lower case, without a trailing dot)."""
    return url.raw_host.decode("ascii").lower().rstrip(".")
