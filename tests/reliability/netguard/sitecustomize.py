"""Test-only: refuse every socket connection to a non-loopback address, before any packet leaves.

Loaded at interpreter start by the processes of the hostile-URL tests (``PYTHONPATH`` points here). An
attempt is written to ``$HDXRQ_TEST_NETGUARD_LOG`` and fails like a refused connection, so a bug in the
code under test shows up as a failed assertion, never as traffic to another machine.

``$HDXRQ_TEST_FAKE_DNS`` (``name=address,address;other=address``) makes ``getaddrinfo`` answer a name with
its addresses in turn, one per lookup, the last one from then on: a DNS-rebinding host. Each lookup is
written to the log too (``resolved name -> address``).
"""

from __future__ import annotations

import ipaddress
import os
import socket

_original_connect = socket.socket.connect
_original_connect_ex = socket.socket.connect_ex


def _allowed(address: object) -> bool:
    if not isinstance(address, tuple) or not address:
        return True  # Unix sockets and the like
    try:
        ip = ipaddress.ip_address(str(address[0]).split("%")[0])
    except ValueError:
        return False  # a host name here would bypass the resolver checks: refuse
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_unspecified


def _refuse(address: object) -> None:
    log = os.environ.get("HDXRQ_TEST_NETGUARD_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as out:
            out.write(f"{os.getpid()} refused connect to {address!r}\n")
    raise ConnectionRefusedError(f"netguard: connections to {address!r} are not allowed in tests")


def _connect(self: socket.socket, address: object) -> None:
    if not _allowed(address):
        _refuse(address)
    return _original_connect(self, address)


def _connect_ex(self: socket.socket, address: object) -> int:
    if not _allowed(address):
        _refuse(address)
    return _original_connect_ex(self, address)


_original_getaddrinfo = socket.getaddrinfo
_answers: dict[str, list[str]] = {}
for _item in filter(None, os.environ.get("HDXRQ_TEST_FAKE_DNS", "").split(";")):
    _name, _, _addresses = _item.partition("=")
    _answers[_name.strip().lower()] = [address.strip() for address in _addresses.split(",") if address.strip()]


def _getaddrinfo(host: object, port: object, *args: object, **kwargs: object) -> list:  # type: ignore[type-arg]
    name = host.decode() if isinstance(host, bytes) else str(host)
    queue = _answers.get(name.lower().rstrip("."))
    if queue:
        address = queue.pop(0) if len(queue) > 1 else queue[0]
        log = os.environ.get("HDXRQ_TEST_NETGUARD_LOG")
        if log:
            with open(log, "a", encoding="utf-8") as out:
                out.write(f"{os.getpid()} resolved {name} -> {address}\n")
        return _original_getaddrinfo(address, port, *args, **kwargs)  # type: ignore[arg-type]
    return _original_getaddrinfo(host, port, *args, **kwargs)  # type: ignore[arg-type]


socket.getaddrinfo = _getaddrinfo  # type: ignore[assignment]
socket.socket.connect = _connect  # type: ignore[method-assign]
socket.socket.connect_ex = _connect_ex  # type: ignore[method-assign]
