"""The guarded HTTP client from the attacker's side: refused address forms, DNS rebinding, redirects into
private space, size caps while streaming, and the pinned connection keeping Host and TLS SNI.

Every connection a test lets through goes to a local server that records its calls; connections anywhere
else are refused inside this process (``no_outside_connections``) and listed, so nothing leaves the
machine and a test sees where the client tried to go.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterator

import httpx
import pytest
import trustme

from core.guarded_http import (
    DestinationRefused,
    GuardedClient,
    OutboundError,
    OutboundPolicy,
    ResponseTooLarge,
    refusal,
    system_resolver,
)
from tests.fakes import FakeService, Reply

PUBLIC = "93.184.216.34"
REFUSED_ADDRESSES = {
    "loopback": "127.0.0.1",
    "IPv6 loopback": "::1",
    "private 10/8": "10.1.2.3",
    "private 192.168/16": "192.168.0.10",
    "carrier-grade NAT": "100.64.0.1",
    "link-local": "169.254.1.1",
    "metadata": "169.254.169.254",
    "ECS metadata": "169.254.170.2",
    "Alibaba metadata": "100.100.100.200",
    "AWS IPv6 metadata": "fd00:ec2::254",
    "IPv6 link-local": "fe80::1",
    "IPv6 unique local": "fc00::1",
    "unspecified": "0.0.0.0",
    "multicast": "224.0.0.1",
    "documentation": "192.0.2.10",
    "IPv4-mapped loopback": "::ffff:127.0.0.1",
    "IPv4-mapped public": "::ffff:93.184.216.34",
    "6to4 of a private address": "2002:0a00:0001::1",
    "6to4 of a public address": "2002:5db8:d822::1",
    "NAT64 of loopback": "64:ff9b::7f00:1",
    "NAT64 of a private address": "64:ff9b::a00:1",
    "local-use NAT64": "64:ff9b:1::a00:1",
    "Teredo": "2001:0:4136:e378:8000:63bf:3fff:fdd2",
    "IPv4-compatible": "::7f00:1",
}


def test_refused_address_forms() -> None:
    reasons = {name: refusal(ipaddress.ip_address(text)) for name, text in REFUSED_ADDRESSES.items()}
    assert [name for name, reason in reasons.items() if reason is None] == []
    assert refusal(ipaddress.ip_address(PUBLIC)) is None
    assert refusal(ipaddress.ip_address("2606:4700:4700::1111")) is None


@pytest.fixture
def outside_attempts(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Refuse (and list) every connection this process tries to a non-loopback address."""
    attempts: list[object] = []
    original = socket.socket.connect

    def connect(self: socket.socket, address: object) -> None:
        host = address[0] if isinstance(address, tuple) else None
        if host is not None and not ipaddress.ip_address(str(host).split("%")[0]).is_loopback:
            attempts.append(address)
            raise ConnectionRefusedError(f"test: no connections to {address!r}")
        original(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return attempts


@pytest.fixture
def file_host() -> Iterator[FakeService]:
    with FakeService("file-host") as host:
        host.route("GET", "/layer.geojson", Reply(body=b'{"type": "FeatureCollection", "features": []}'))
        yield host


def policy(**overrides: object) -> OutboundPolicy:
    values: dict[str, object] = {"max_bytes": 1024 * 1024, "total_timeout_sec": 10.0, **overrides}
    return OutboundPolicy(**values)  # type: ignore[arg-type]


def port_of(service: FakeService) -> int:
    return int(service.url.rsplit(":", 1)[1])


def test_rebinding_answer_is_never_used(
    file_host: FakeService, outside_attempts: list[object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host answers a public address to the check and 127.0.0.1 afterwards: the request goes to the
    checked address (here refused by the test's guard), never to the loopback server."""
    answers = [PUBLIC, "127.0.0.1"]
    asked: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        asked.append(host)
        return [answers.pop(0) if answers else "127.0.0.1"]

    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: object, port: object, *args: object, **kwargs: object) -> list:  # type: ignore[type-arg]
        if host == "rebind.example.test":  # any resolution behind the client's back gets the rebound answer
            return real_getaddrinfo(rebinding(str(host), 0)[0], port, *args, **kwargs)  # type: ignore[arg-type]
        return real_getaddrinfo(host, port, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    client = GuardedClient(policy(), resolver=rebinding)
    with pytest.raises(OutboundError, match="Cannot connect"):
        with client.get(f"http://rebind.example.test:{port_of(file_host)}/layer.geojson"):
            pass
    assert file_host.calls == []
    assert outside_attempts == [(PUBLIC, port_of(file_host))]
    assert asked == ["rebind.example.test"]  # resolved once


def test_the_check_sees_every_address_of_the_host(file_host: FakeService, outside_attempts: list[object]) -> None:
    client = GuardedClient(policy(), resolver=lambda host, port: [PUBLIC, "127.0.0.1"])
    with pytest.raises(DestinationRefused, match="private or reserved"):
        with client.get(f"http://mixed.example.test:{port_of(file_host)}/layer.geojson"):
            pass
    assert file_host.calls == [] and outside_attempts == []


@pytest.mark.parametrize(
    "url",
    [
        "http://[2002:7f00:1::1]/x",
        "http://[64:ff9b::7f00:1]/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://[fe80::1]/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://2130706433/x",
        "http://0x7f000001/x",
        "http://0177.0.0.1/x",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_FLUSHALL",
    ],
)
def test_refused_before_any_connection(url: str, outside_attempts: list[object]) -> None:
    with pytest.raises(DestinationRefused):
        with GuardedClient(policy()).get(url):
            pass
    assert outside_attempts == []


def test_each_redirect_hop_is_checked(file_host: FakeService, outside_attempts: list[object]) -> None:
    inner_port = port_of(file_host)
    with FakeService("redirector") as redirector:
        hops = {
            "/1": "/2",  # relative, same host: allowed
            "/2": f"http://[64:ff9b::a9fe:a9fe]:{inner_port}/x",  # NAT64 form of 169.254.169.254
        }
        for path, target in hops.items():
            redirector.route("GET", path, Reply(status=302, headers={"Location": target}))
        client = GuardedClient(policy(allowlist=("127.0.0.1",)))
        with pytest.raises(DestinationRefused, match="NAT64"):
            with client.get(f"{redirector.url}/1"):
                pass
        assert [call.path for call in redirector.calls] == ["/1", "/2"]
    assert file_host.calls == [] and outside_attempts == []


def test_redirect_chain_is_bounded(outside_attempts: list[object]) -> None:
    with FakeService("loop") as loop:
        loop.route("GET", "/again", Reply(status=307, headers={"Location": "/again"}))
        client = GuardedClient(policy(allowlist=("127.0.0.1",), max_redirects=3))
        with pytest.raises(OutboundError, match="More than 3 redirects"):
            with client.get(f"{loop.url}/again"):
                pass
        assert len(loop.calls) == 4


def test_size_is_capped_while_streaming(outside_attempts: list[object]) -> None:
    chunks_sent: list[int] = []

    def endless() -> Iterator[bytes]:
        for number in range(10_000):
            chunks_sent.append(number)
            yield b"x" * 65536

    with FakeService("big") as big:
        big.route("GET", "/big", lambda call: Reply(body=endless()))  # chunked: no length to refuse up front
        big.route("GET", "/declared", Reply(body=b"x" * 4096, headers={"Content-Length": "999999999"}))
        client = GuardedClient(policy(allowlist=("127.0.0.1",), max_bytes=1024 * 1024))
        with pytest.raises(ResponseTooLarge):
            with client.get(f"{big.url}/big") as fetched:
                fetched.read()
        assert len(chunks_sent) < 10_000 // 4  # stopped early, not after reading everything
        with pytest.raises(ResponseTooLarge):
            with client.get(f"{big.url}/declared") as fetched:
                next(fetched.iter_bytes())


@pytest.fixture(scope="module")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


def tls_server(ca: trustme.CA, name: str, seen: list[str | None]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)

    def record(sock: ssl.SSLSocket, server_name: str | None, ctx: ssl.SSLContext) -> None:
        seen.append(server_name)

    context.sni_callback = record  # type: ignore[assignment]
    return context


def test_pinned_https_keeps_host_header_and_sni(
    certificate_authority: trustme.CA, outside_attempts: list[object]
) -> None:
    seen: list[str | None] = []
    with FakeService("tls-host", tls=tls_server(certificate_authority, "files.example.test", seen)) as host:
        host.route("GET", "/layer.geojson", Reply(body=b"{}"))
        trust = ssl.create_default_context()
        certificate_authority.configure_trust(trust)
        client = GuardedClient(
            policy(allowlist=("127.0.0.1",)),
            resolver=lambda name, port: ["127.0.0.1"] if name == "files.example.test" else [],
            transport=httpx.HTTPTransport(verify=trust),
        )
        url = f"https://files.example.test:{port_of(host)}/layer.geojson"
        with client.get(url) as fetched:
            assert (fetched.status_code, fetched.read()) == (200, b"{}")
            assert str(fetched.url) == url
        assert seen == ["files.example.test"]
        assert host.calls[0].header("host") == f"files.example.test:{port_of(host)}"

        # The certificate is checked against the name asked for, not the address connected to.
        impostor = GuardedClient(
            policy(allowlist=("127.0.0.1",)),
            resolver=lambda name, port: ["127.0.0.1"],
            transport=httpx.HTTPTransport(verify=trust),
        )
        with pytest.raises(OutboundError):
            with impostor.get(f"https://other.example.test:{port_of(host)}/layer.geojson"):
                pass
        assert len(host.calls) == 1


def test_allowlisted_host_name_skips_the_address_check(file_host: FakeService) -> None:
    resolver: Callable[[str, int], list[str]] = lambda name, port: ["127.0.0.1"]  # noqa: E731
    client = GuardedClient(policy(allowlist=("files.internal.test",)), resolver=resolver)
    with client.get(f"http://files.internal.test:{port_of(file_host)}/layer.geojson") as fetched:
        assert fetched.status_code == 200
    assert file_host.calls[0].header("host") == f"files.internal.test:{port_of(file_host)}"


def test_system_resolver_prefers_ipv4() -> None:
    addresses = system_resolver("localhost", 80)
    assert addresses and ":" not in addresses[0]
    assert system_resolver("name.invalid", 80) == []
