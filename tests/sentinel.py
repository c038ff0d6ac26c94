"""A real Redis Sentinel set-up of the test's own: one primary, one replica, three sentinels on 127.0.0.1.

Every process is a private ``redis-server`` / ``redis-sentinel`` on a free port with its files in a temp
directory, so a test (or ``bench/failover_bench.py``) may kill the primary without touching the shared Redis.
Failure detection is tuned down (``down-after-milliseconds``, ``failover-timeout``) so that a failover takes
seconds, not the half-minute of Sentinel's defaults.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis import Redis

SERVICE = "hdxrq"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000
QUORUM = 2


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


@dataclass
class Node:
    """One ``redis-server`` or ``redis-sentinel`` process."""

    name: str
    directory: Path
    argv: list[str]
    port: int
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with (self.directory / f"{self.name}.log").open("ab") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        """SIGKILL: the machine under it died; nothing is flushed or handed over."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class SentinelCluster:
    """Primary + replica + three sentinels monitoring them as :data:`SERVICE`."""

    directory: Path
    password: str | None = None
    appendfsync: str = "everysec"
    down_after_ms: int = DOWN_AFTER_MS
    failover_timeout_ms: int = FAILOVER_TIMEOUT_MS
    data: list[Node] = field(default_factory=list)
    sentinels: list[Node] = field(default_factory=list)

    def start(self) -> SentinelCluster:
        primary_port, replica_port = free_port(), free_port()
        self.data = [
            self._data_node("primary", primary_port, None),
            self._data_node("replica", replica_port, primary_port),
        ]
        for node in self.data:
            node.start()
        wait_for(lambda: self._ask(replica_port, lambda r: r.info("replication")).get("master_link_status") == "up", 30,
                 "the replica to sync")  # fmt: skip
        self.sentinels = [self._sentinel(number, primary_port) for number in range(3)]
        for node in self.sentinels:
            node.start()
        wait_for(self._sentinels_agree, 30, "the sentinels to see each other and the replica")
        return self

    def stop(self) -> None:
        for node in [*self.sentinels, *self.data]:
            node.kill()

    def url(self, db: int) -> str:
        """``HDXRQ_REDIS_URL`` / ``HDXRQ_STREAM_REDIS_URL`` for database ``db`` of this set-up."""
        auth = f":{self.password}@" if self.password else ""
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.sentinels)
        return f"redis+sentinel://{auth}{hosts}/{SERVICE}/{db}"

    def primary_port(self) -> int:
        """The port of the primary the sentinels name now."""
        for node in self.sentinels:
            with contextlib.suppress(Exception):
                return int(self._ask(node.port, lambda r: r.sentinel_get_master_addr_by_name(SERVICE))[1])
        raise AssertionError("no sentinel answers")

    def node_on(self, port: int) -> Node:
        return next(node for node in self.data if node.port == port)

    def client(self, db: int = 0, port: int | None = None) -> Redis:
        """A plain client of the current primary (or of the data node on ``port``)."""
        return Redis(
            host="127.0.0.1", port=port or self.primary_port(), db=db, password=self.password, socket_timeout=5
        )

    def kill_primary(self) -> int:
        """SIGKILL the primary; its port."""
        port = self.primary_port()
        self.node_on(port).kill()
        return port

    def wait_for_new_primary(self, old_port: int, timeout: float = 60) -> int:
        """Wait until the sentinels have promoted the replica and it answers as primary; its port."""

        def promoted() -> bool:
            port = self.primary_port()
            if port == old_port:
                return False
            with contextlib.suppress(Exception):
                return self._ask(port, lambda r: r.info("replication"))["role"] == "master"
            return False

        wait_for(promoted, timeout, "the sentinels to promote the replica")
        return self.primary_port()

    # --- building the nodes ---

    def _data_node(self, name: str, port: int, primary_port: int | None) -> Node:
        directory = self.directory / name
        directory.mkdir(parents=True, exist_ok=True)
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)]
        argv += ["--appendonly", "yes", "--appendfsync", self.appendfsync, "--save", "", "--databases", "16"]
        argv += ["--repl-diskless-sync-delay", "0"]  # the replica's first sync starts at once, not after 5 s
        if self.password:
            # masterauth on both: the old primary, once back, becomes a replica of the new one
            argv += ["--requirepass", self.password, "--masterauth", self.password]
        if primary_port is not None:
            argv += ["--replicaof", "127.0.0.1", str(primary_port)]
        return Node(name, directory, argv, port)

    def _sentinel(self, number: int, primary_port: int) -> Node:
        port = free_port()
        directory = self.directory / f"sentinel-{number}"
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "sentinel.conf"  # Sentinel rewrites its config file: each needs its own
        lines = [
            f"port {port}",
            "bind 127.0.0.1",
            f"dir {directory}",
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} {QUORUM}",
            f"sentinel down-after-milliseconds {SERVICE} {self.down_after_ms}",
            f"sentinel failover-timeout {SERVICE} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {SERVICE} 1",
        ]
        if self.password:
            lines.append(f"sentinel auth-pass {SERVICE} {self.password}")
        config.write_text("\n".join(lines) + "\n")
        return Node(f"sentinel-{number}", directory, ["redis-sentinel", str(config)], port)

    def _ask(self, port: int, command: Callable[[Redis], Any]) -> Any:
        """``command(client)`` on the node on ``port``, over a connection of its own closed at once."""
        password = None if any(node.port == port for node in self.sentinels) else self.password
        with Redis(host="127.0.0.1", port=port, password=password, socket_timeout=2, socket_connect_timeout=2) as r:
            return command(r)

    def _sentinels_agree(self) -> bool:
        try:
            for node in self.sentinels:
                state = self._ask(node.port, lambda r: r.sentinel_master(SERVICE))
                if state["num-other-sentinels"] < len(self.sentinels) - 1 or state["num-slaves"] < 1:
                    return False
        except Exception:
            return False
        return True
