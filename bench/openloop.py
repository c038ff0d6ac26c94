#!/usr/bin/env python3
"""An open-loop HTTP/1.1 load generator: requests leave on a fixed timetable, whatever the server does.

    .venv/bin/python bench/openloop.py URL --rate 500 --seconds 5 [--method POST --body-file F] [--expect TEXT]

``--body-file`` holds one body, or with ``--body-lines`` one body per line, sent in turn; ``--url-lines``
names a file of URLs (same host as ``URL``), one per line, also used in turn (a different resource each time).

Request ``i`` is due at ``start + i / rate``. Its latency is measured from that *due* time until the last
byte of the response, so a server (or a connection) that stalls is charged for every request that had to
wait behind the stall (no coordinated omission). The requests share a pool of pre-opened keep-alive
connections; a request due while every connection is busy waits for one, and that wait is part of its
latency. With ``--new-connection-per-request`` each request instead opens its own TCP connection and
sends ``Connection: close``, as a client does that calls ``requests.post(...)`` without a session (CKAN's
send-analytics); the connect is part of the latency and ``--connections`` caps the requests in flight.
The run is bounded: exactly ``rate * seconds`` requests, and whatever has not been answered
``--timeout`` seconds after the last one was due counts as failed.

Meant to run in a process of its own (the benchmarks start it with :func:`run_in_subprocess`) so it
does not share a GIL with the code that starts servers. It is cheap: one asyncio loop over raw sockets,
with ``select()`` as the selector because epoll's millisecond timeout would send up to 1 ms late.
Prints one JSON object: ``latency_ms`` (from the due time), ``service_ms`` (from the actual send),
``send_late_ms`` (how late the generator itself sent), ``errors``, ``statuses``, ``first_due_epoch`` and
``answered_epoch`` (when each accepted answer arrived, wall clock).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import selectors
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HEADER_END = b"\r\n\r\n"


class ConnectionClosed(Exception):
    """The server closed a keep-alive connection while a request was waiting for its answer."""


class HttpConnection(asyncio.Protocol):
    """One keep-alive connection: one request in flight at a time, response framed by Content-Length."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes, float]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionClosed())

    def data_received(self, data: bytes) -> None:
        arrived = time.monotonic()
        self.buffer += data
        end = self.buffer.find(HEADER_END)
        if end < 0 or self.waiter is None:
            return
        head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        content_length = _header(head[1:], "content-length")
        if content_length is None:
            raise ValueError("response without Content-Length (chunked answers are not supported)")
        length = int(content_length)
        if len(self.buffer) < end + 4 + length:
            return
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
        if (_header(head[1:], "connection") or "").lower() == "close" and self.transport is not None:
            self.closed = True  # the server said so: this connection takes no further request
            self.transport.close()
        if not self.waiter.done():
            self.waiter.set_result((int(head[0].split()[1]), body, arrived))

    async def exchange(self, request: bytes) -> tuple[int, bytes, float]:
        """Send ``request``; return the status, the body and when its last byte arrived."""
        if self.closed or self.transport is None:
            raise ConnectionClosed()
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        try:
            return await self.waiter
        finally:
            self.waiter = None


def _header(header_lines: list[str], wanted: str) -> str | None:
    """The value of the header named ``wanted`` (lower case), or None."""
    for line in header_lines:
        name, _, value = line.partition(":")
        if name.strip().lower() == wanted:
            return value.strip()
    return None


@dataclass
class Results:
    """What one run measured."""

    latency_ms: list[float] = field(default_factory=list)
    service_ms: list[float] = field(default_factory=list)
    send_late_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    first_due_epoch: float = 0.0
    """When the first timed request was due (``time.time()``): after start-up and warm-up."""
    answered_epoch: list[float] = field(default_factory=list)
    """When each accepted answer (200, with the expected text) arrived (``time.time()``), in arrival order."""
    epoch_offset: float = field(default_factory=lambda: time.time() - time.monotonic())
    """``time.time() - time.monotonic()``: turns this process's monotonic moments into wall-clock ones."""


class Pool:
    """Pre-opened connections handed out oldest-idle first (so load spreads over all of them)."""

    def __init__(self, host: str, port: int, size: int) -> None:
        self.host, self.port, self.size = host, port, size
        self.idle: collections.deque[HttpConnection] = collections.deque()
        self.waiting: collections.deque[asyncio.Future[HttpConnection]] = collections.deque()

    async def open(self) -> None:
        for _ in range(self.size):
            self.idle.append(await self._connect())

    async def done_with(self, connection: HttpConnection) -> None:
        """Give ``connection`` back after a request (the next user reconnects if the server closed it)."""
        self.release(connection)

    async def _connect(self) -> HttpConnection:
        loop = asyncio.get_running_loop()
        _transport, protocol = await loop.create_connection(HttpConnection, self.host, self.port)
        return protocol

    async def acquire(self) -> HttpConnection:
        if self.idle:
            connection = self.idle.popleft()
        else:
            waiter = asyncio.get_running_loop().create_future()
            self.waiting.append(waiter)
            connection = await waiter
        # Closed by the server (``Connection: close``, a keep-alive timeout): as a real client does, the
        # request opens a new one, and the connect is part of its latency.
        return connection if not connection.closed else await self._connect()

    def release(self, connection: HttpConnection) -> None:
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        self.idle.append(connection)

    def close(self) -> None:
        for connection in self.idle:
            if connection.transport is not None:
                connection.transport.close()


class FreshConnections(Pool):
    """One new connection per request, at most ``size`` open at a time (no keep-alive)."""

    def __init__(self, host: str, port: int, size: int) -> None:
        super().__init__(host, port, size)
        self.free_slots = size

    async def open(self) -> None:
        pass

    async def acquire(self) -> HttpConnection:
        if self.free_slots > 0:
            self.free_slots -= 1
        else:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.waiting.append(waiter)  # type: ignore[arg-type]
            await waiter
        return await self._connect()

    async def done_with(self, connection: HttpConnection) -> None:
        if connection.transport is not None:
            connection.transport.close()
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)  # type: ignore[arg-type]
                return
        self.free_slots += 1


def build_request(url: str, method: str, body: bytes | None, *, keep_alive: bool = True) -> bytes:
    """The raw HTTP/1.1 request (keep-alive, or ``Connection: close``)."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    connection = "keep-alive" if keep_alive else "close"
    lines = [f"{method} {path or '/'} HTTP/1.1", f"Host: {parts.netloc}", f"Connection: {connection}"]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


async def _one(pool: Pool, request: bytes, due: float, expect: bytes | None, results: Results) -> None:
    try:
        connection = await pool.acquire()
    except OSError as error:
        results.errors.append(type(error).__name__)
        failed = HttpConnection()
        failed.closed = True  # nothing to reuse: the pool opens another
        await pool.done_with(failed)
        return
    sent = time.monotonic()
    try:
        status, body, done = await connection.exchange(request)
    except (ConnectionClosed, OSError, ValueError) as error:
        results.errors.append(type(error).__name__)
        await pool.done_with(connection)
        return
    await pool.done_with(connection)
    results.statuses[status] += 1
    if status != 200 or (expect is not None and expect not in body):
        results.errors.append(f"HTTP {status}: {body[:120]!r}")
    else:
        results.answered_epoch.append(done + results.epoch_offset)
    results.latency_ms.append((done - due) * 1000)
    results.service_ms.append((done - sent) * 1000)
    results.send_late_ms.append((sent - due) * 1000)


async def run(
    url: str, *, rate: float, seconds: float, method: str = "GET", bodies: list[bytes | None] | None = None,
    connections: int = 16, expect: bytes | None = None, timeout: float = 10.0, warmup: int = 2,
    new_connection_per_request: bool = False, urls: list[str] | None = None,
) -> Results:  # fmt: skip
    """Send ``rate * seconds`` requests on the open-loop timetable and measure them (bodies in turn)."""
    parts = urlsplit(url)
    kind = FreshConnections if new_connection_per_request else Pool
    pool = kind(parts.hostname or "127.0.0.1", parts.port or 80, connections)
    await pool.open()
    keep_alive = not new_connection_per_request
    bodies, urls = bodies or [None], urls or [url]
    requests = [
        build_request(urls[index % len(urls)], method, bodies[index % len(bodies)], keep_alive=keep_alive)
        for index in range(max(len(urls), len(bodies)))
    ]
    if warmup:  # every connection answers before the clock starts (with bodies not sent in the run)
        first = build_request(url, "GET", None, keep_alive=keep_alive) if bodies else requests[0]
        for _ in range(warmup):
            await asyncio.gather(*(_one(pool, first, time.monotonic(), None, Results()) for _ in range(connections)))
    results, tasks = Results(), []
    count, start = int(rate * seconds), time.monotonic() + 0.05
    results.first_due_epoch = time.time() + (start - time.monotonic())
    for index in range(count):
        due = start + index / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        request = requests[index % len(requests)]
        tasks.append(asyncio.ensure_future(_one(pool, request, due, expect, results)))
    _done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    results.errors.extend(["timeout"] * len(pending))
    pool.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--method", default="GET")
    parser.add_argument("--body-file", type=Path, help="request body (sent as application/json)")
    parser.add_argument("--body-lines", action="store_true", help="the body file holds one body per line")
    parser.add_argument("--url-lines", type=Path, help="a file of URLs, one per line, requested in turn")
    parser.add_argument("--warmup", type=int, default=2, help="untimed requests per connection first")
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections in the pool")
    parser.add_argument(
        "--new-connection-per-request", action="store_true", help="no keep-alive: connect, send, close (CKAN's way)"
    )
    parser.add_argument("--expect", help="text every response body must contain")
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    raw = args.body_file.read_bytes() if args.body_file else None
    bodies = raw.splitlines() if raw is not None and args.body_lines else [raw]
    loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
    results = loop.run_until_complete(
        run(
            args.url, rate=args.rate, seconds=args.seconds, method=args.method, bodies=bodies,
            connections=args.connections, expect=args.expect.encode() if args.expect else None, timeout=args.timeout,
            warmup=args.warmup, new_connection_per_request=args.new_connection_per_request,
            urls=args.url_lines.read_text().split() if args.url_lines else None,
        )
    )  # fmt: skip
    loop.close()
    json.dump({**results.__dict__, "statuses": dict(results.statuses)}, sys.stdout)


def command(url: str, *, rate: float, seconds: float, **options: Any) -> list[str]:
    """The command line running the generator with these options (``body_lines=True`` -> ``--body-lines``)."""
    argv = [sys.executable, __file__, url, "--rate", str(rate), "--seconds", str(seconds)]
    for name, value in options.items():
        if value is True:
            argv.append(f"--{name.replace('_', '-')}")
        elif value is not None and value is not False:
            argv += [f"--{name.replace('_', '-')}", str(value)]
    return argv


def run_in_subprocess(url: str, *, rate: float, seconds: float, **options: Any) -> dict[str, Any]:
    """Run the generator in a process of its own and return its results (see :func:`main`)."""
    argv = command(url, rate=rate, seconds=seconds, **options)
    completed = subprocess.run(argv, capture_output=True, check=True, timeout=seconds + 120)
    return json.loads(completed.stdout)  # type: ignore[no-any-return]


def percentile(values: list[float], pct: float) -> float:
    """The ``pct`` percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, int(round(pct / 100 * len(ordered) + 0.5)) - 1))]


def summary(result: dict[str, Any]) -> str:
    """One line: p50/p99/max from the due time, the service-time p99 and the generator's own lateness."""
    lat, service, late = result["latency_ms"], result["service_ms"], result["send_late_ms"]
    errors = result["errors"]
    return (
        f"p50 {percentile(lat, 50):6.2f}  p99 {percentile(lat, 99):6.2f}  max {max(lat, default=0):6.2f} ms"
        f"  (service p99 {percentile(service, 99):5.2f}, sender late p99 {percentile(late, 99):4.2f})"
        + (f"  {len(errors)} ERRORS e.g. {errors[0]}" if errors else "")
    )


def machine_summary(result: dict[str, Any]) -> str:
    """The server's CPU per request and the machine's steal time during a :func:`measure` run."""
    return f"API CPU {result['cpu_ms']:.2f} ms/request, steal {result['steal_pct']:.0f} %"


def measure(server_pid: int, url: str, *, rate: float, seconds: float, **options: Any) -> dict[str, Any]:
    """:func:`run_in_subprocess` plus the server's CPU time per request (``cpu_ms``, the process tree of
    ``server_pid``); a run with a failed request stops the benchmark."""
    cpu_before, machine_before = tree_cpu_seconds(server_pid), machine_ticks()
    result = run_in_subprocess(url, rate=rate, seconds=seconds, **options)
    result["cpu_ms"] = (tree_cpu_seconds(server_pid) - cpu_before) * 1000 / max(1, len(result["latency_ms"]))
    result["steal_pct"] = steal_percent(machine_before, machine_ticks())
    if result["errors"]:
        raise SystemExit(f"{url}: {len(result['errors'])} failed requests, e.g. {result['errors'][0]}")
    return result


def machine_ticks() -> list[int]:
    """The machine's CPU time counters (the ``cpu`` line of /proc/stat: user, nice, system, idle, ...)."""
    return [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]


def steal_percent(before: list[int], after: list[int]) -> float:
    """Share of the time between two :func:`machine_ticks` readings the hypervisor ran someone else on our
    CPUs ("steal"): on a shared virtual machine, a latency tail's usual cause that no code here can change."""
    spent = [b - a for a, b in zip(before, after, strict=True)]
    return 100.0 * spent[7] / max(1, sum(spent[:8]))


def tree_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by process ``pid`` and its living descendants (Linux /proc)."""
    total, todo = 0.0, [pid]
    ticks = os.sysconf("SC_CLK_TCK")
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(child) for child in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


if __name__ == "__main__":
    main()
