"""The API under uWSGI (``serve``) and the all-in-one ``run`` command, as real processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx
from rq import Worker

from core.connections import SERIALIZER, queue
from core.queues import LANES
from core.runtime import Runtime
from processes import waits
from tests.conftest import HDXRQ_PY, ROOT, free_port
from tests.waiting import wait_until


def read_until(stream: IO[str], *needles: str, limit: int = 2000) -> list[str]:
    """Read lines until every needle was seen as often as it is listed (blocking reads, no polling)."""
    seen: list[str] = []
    missing = Counter(needles)
    for _ in range(limit):
        line = stream.readline()
        if not line:
            break
        seen.append(line)
        for needle in [n for n in missing if n in line]:
            missing[needle] -= 1
        missing = +missing
        if not missing:
            return seen
    raise AssertionError(f"never saw {dict(missing)} in output:\n{''.join(seen)}")


@contextmanager
def hdxrq(env: dict[str, str], *args: str) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, HDXRQ_PY, *args],
        env={"PATH": os.environ["PATH"], **env},
        cwd=ROOT,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


def test_serve_runs_the_api_under_uwsgi(settings_env: dict[str, str]) -> None:
    port = free_port()
    env = {**settings_env, "HDXRQ_API_WORKERS": "3"}
    with hdxrq(env, "serve", "--port", str(port)) as server:
        assert server.stderr is not None
        startup = read_until(server.stderr, *["spawned uWSGI worker"] * 3, "gracefully_kill_them_all")
        assert not any("as root" in line for line in startup)  # uWSGI's repeated warning is drained
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            for _ in range(2):  # keep-alive: both requests on one connection
                sock.sendall(b"GET /version HTTP/1.1\r\nHost: api\r\n\r\n")
                answer = b""
                while b"}" not in answer:
                    answer += sock.recv(4096)
                assert answer.startswith(b"HTTP/1.1 200") and b'"version"' in answer
        # The router reaches the worker processes over a Unix socket: the only TCP port is the API's.
        group = process_group(server.pid)
        assert tcp_listening_ports(group) == {port}
        assert f"@hdxrq-api-{port}-{server.pid}" in {name.rstrip("@") for name in unix_socket_names(group)}

        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0


def process_group(leader: int) -> set[int]:
    """The pids of the process group ``leader`` leads (uWSGI's master, router and workers)."""
    pids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) == leader:
                    pids.add(int(entry))
            except ProcessLookupError:
                continue
    return pids


def _socket_inodes(pids: set[int]) -> set[str]:
    inodes = set()
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    return inodes


def tcp_listening_ports(pids: set[int]) -> set[int]:
    """TCP ports (IPv4 and IPv6) the processes listen on."""
    inodes = _socket_inodes(pids)
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def unix_socket_names(pids: set[int]) -> set[str]:
    """Names of the Unix sockets the processes hold (abstract ones start with ``@``; the kernel's table
    also shows a NUL byte in a name as ``@``)."""
    inodes = _socket_inodes(pids)
    names = set()
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) > 7 and fields[6] in inodes:
            names.add(fields[7])
    return names


def test_run_starts_api_and_workers_and_ctrl_c_stops_them_all(settings_env: dict[str, str], runtime: Runtime) -> None:
    port = free_port()
    with hdxrq(settings_env, "run", "--port", str(port)) as run:
        assert run.stderr is not None
        read_until(run.stderr, "spawned uWSGI worker", "started with PID", "started with PID")
        assert httpx.get(f"http://127.0.0.1:{port}/version", timeout=10).status_code == 200

        queue("event_q", runtime.redis).enqueue("tests.jobs.record", "run-marker", "done")
        assert runtime.redis.blpop(["run-marker"], timeout=60) == (b"run-marker", b"done")
        # One worker per lane (HDXRQ_RUN_WORKERS, 3): each takes its lane's queues in the lane's order.
        workers = wait_until(lambda: _registered_workers(runtime, 3), what="three workers registered")
        assert sorted(worker.queue_names() for worker in workers) == sorted(list(lane.queues) for lane in LANES)

        run.send_signal(signal.SIGINT)
        assert run.wait(timeout=60) == 0

    assert Worker.all(connection=runtime.redis, serializer=SERIALIZER) == []
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0  # the API is gone too


def _registered_workers(runtime: Runtime, count: int) -> list[Worker] | None:
    workers = Worker.all(connection=runtime.redis, serializer=SERIALIZER)
    return workers if len(workers) == count else None


def test_sigterm_lets_in_flight_requests_finish(settings_env: dict[str, str], runtime: Runtime) -> None:
    port = free_port()
    with hdxrq(settings_env, "serve", "--port", str(port)) as server:
        assert server.stderr is not None
        read_until(server.stderr, "spawned uWSGI worker", "gracefully_kill_them_all")
        body = {"inputs": {"username": "u", "new_dataset_dict": {"type": "dataset", "name": "n"}}}
        results: list[httpx.Response] = []

        def slow_request() -> None:
            # No worker runs: the API holds this request for the 3 s the client is willing to wait.
            results.append(
                httpx.post(
                    f"http://127.0.0.1:{port}/processes/change-detection/execution",
                    json=body,
                    headers={"Prefer": "wait=3"},
                    timeout=30,
                )
            )

        client = threading.Thread(target=slow_request)
        client.start()
        wait_until(lambda: queue("event_q", runtime.redis).count == 1, what="the request to be in flight")
        server.send_signal(signal.SIGTERM)
        client.join(timeout=30)

        assert results and results[0].status_code == 201  # answered, not cut off
        assert server.wait(timeout=30) == 0


def test_a_body_the_view_did_not_read_leaves_the_next_request_unharmed(settings_env: dict[str, str]) -> None:
    """A keep-alive client (httpx) posts bodies no view reads (405) and then asks again."""
    port = free_port()
    env = {**settings_env, "HDXRQ_API_WORKERS": "1", "HDXRQ_API_MAX_WORKERS": "3"}
    with hdxrq(env, "serve", "--port", str(port)) as server, httpx.Client(timeout=30) as client:
        assert server.stderr is not None
        read_until(server.stderr, "spawned uWSGI worker")
        base = f"http://127.0.0.1:{port}"
        for size in (10_000, 100_000, 5_000_000):
            unread = client.post(f"{base}/version", content=b"x" * size)
            assert unread.status_code == 405 and "error_type" in unread.json()
            assert client.get(f"{base}/version").status_code == 200


def test_job_waits_hold_at_most_all_api_processes_but_one(settings_env: dict[str, str], runtime: Runtime) -> None:
    """Two processes (no worker runs): one request waits for its job (``Prefer: wait``), the other process
    answers CKAN at once, and a second waiting request is answered at once too (201) instead of taking it."""
    port = free_port()
    env = {**settings_env, "HDXRQ_API_WORKERS": "2", "HDXRQ_API_MAX_WORKERS": "2"}
    body = {"inputs": {"username": "u", "new_dataset_dict": {"type": "dataset", "name": "n"}}}
    url = f"http://127.0.0.1:{port}/processes/change-detection/execution"

    def held() -> None:
        try:
            httpx.post(url, json=body, headers={"Prefer": "wait=120"}, timeout=150)
        except httpx.HTTPError:
            pass  # cut off when the test stops the server

    with hdxrq(env, "serve", "--port", str(port)) as server:
        assert server.stderr is not None
        read_until(server.stderr, "spawned uWSGI worker 2")
        client = threading.Thread(target=held)
        client.start()
        wait_until(lambda: runtime.redis.zcard(waits.KEY) == 1, what="the held request to wait")
        second = httpx.post(url, json=body, headers={"Prefer": "wait=120"}, timeout=30)
        assert second.status_code == 201 and "Preference-Applied" not in second.headers
        assert second.json()["status"] == "accepted"
        notification = {"username": "u", "old_dataset_dict": {}, "new_dataset_dict": {"type": "dataset"}}
        answer = httpx.post(f"http://127.0.0.1:{port}/api/create-change-events", json=notification, timeout=30)
        assert answer.json() == {"state": "success"}
        assert client.is_alive()
    client.join(timeout=30)


def test_with_one_api_process_nobody_waits_for_a_job(settings_env: dict[str, str]) -> None:
    port = free_port()
    body = {"inputs": {"username": "u", "new_dataset_dict": {"type": "dataset", "name": "n"}}}
    env = {**settings_env, "HDXRQ_API_WORKERS": "1", "HDXRQ_API_MAX_WORKERS": "3"}
    with hdxrq(env, "serve", "--port", str(port)) as server:
        assert server.stderr is not None
        read_until(server.stderr, "spawned uWSGI worker")
        url = f"http://127.0.0.1:{port}/processes/change-detection/execution"
        answer = httpx.post(url, json=body, headers={"Prefer": "wait=120"}, timeout=30)
    assert answer.status_code == 201 and "Preference-Applied" not in answer.headers
