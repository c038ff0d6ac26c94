"""Hostile download URLs through the real API and a real worker: every one refused with ``download-refused``
before any connection is made, redirects into private space included, and the worker alive afterwards.

The worker runs under ``netguard`` (see conftest): a connection attempt to any non-loopback address is
refused inside the process and logged, so these tests never send a packet off the machine, and an
attempt shows up as a failed assertion. Loopback targets are real listeners that must receive nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from tests.fakes import FakeCkan, FakeService, Reply

from . import hostile
from .conftest import Proc, netguard_env

ACTION = "hdx_resource_update_metadata"
REFUSED = ("failure", "download-refused")


@pytest.fixture
def file_host() -> Iterator[FakeService]:
    """A loopback file server that must never be reached by a refused download."""
    with FakeService("file-host") as host:
        host.route("GET", "/files/layer.geojson", Reply(body=hostile.VALID))
        yield host


@pytest.fixture
def inner_host() -> Iterator[FakeService]:
    """A server on 127.0.0.2: "an internal service" that redirects must not lead to."""
    with FakeService("internal", host="127.0.0.2") as host:
        host.route("GET", "/secret", Reply(body=hostile.VALID))
        yield host


def direct_urls(port: int) -> dict[str, str]:
    """Private, loopback, link-local, metadata and odd spellings of them (allowlist empty)."""
    path = f":{port}/files/layer.geojson"
    return {
        "loopback": f"http://127.0.0.1{path}",
        "localhost": f"http://localhost{path}",
        "name resolving to loopback (/etc/hosts)": f"http://vm{path}",
        "trailing-dot localhost": f"http://localhost.{path}",
        "short loopback 127.1": f"http://127.1{path}",
        "decimal loopback": f"http://2130706433{path}",
        "hex loopback": f"http://0x7f000001{path}",
        "octal loopback": f"http://0177.0.0.1{path}",
        "unspecified 0.0.0.0": f"http://0.0.0.0{path}",
        "IPv6 loopback": f"http://[::1]{path}",
        "IPv4-mapped IPv6 loopback": f"http://[::ffff:127.0.0.1]{path}",
        "IPv4-mapped IPv6, hex form": f"http://[::ffff:7f00:1]{path}",
        "credentials in URL": f"http://user:pass@127.0.0.1{path}",
        "metadata service": "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "metadata service, IPv6": "http://[fd00:ec2::254]/latest/meta-data/",
        "metadata host name": "http://metadata.google.internal/computeMetadata/v1/",
        "link-local": "http://169.254.1.1/file.geojson",
        "IPv6 link-local": "http://[fe80::1]/file.geojson",
        "private 10/8": "http://10.0.0.1/file.geojson",
        "private 172.16/12": "http://172.16.0.1/file.geojson",
        "private 192.168/16": "https://192.168.1.1/file.geojson",
        "carrier-grade NAT": "http://100.64.0.1/file.geojson",
        "IPv6 unique local": "http://[fc00::1]/file.geojson",
        "multicast": "http://224.0.0.1/file.geojson",
        "file scheme": "file:///etc/passwd",
        "ftp scheme": "ftp://127.0.0.1/file.geojson",
        "gopher scheme": "gopher://127.0.0.1:6379/_FLUSHALL",
        "absolute path on the worker": "/etc/passwd",
        "relative path on the worker": "tests/reliability/hostile.py",
    }


def run_imports(client: FlaskClient, urls: dict[str, str]) -> dict[str, str]:
    ids = {}
    for name, url in urls.items():
        ids[name] = str(uuid.uuid4())
        answer = client.get(
            f"/api/add-layer/dataset/hostile/resource/{ids[name]}",
            query_string={"resource_download_url": url, "url_type": "api"},
        )
        assert answer.status_code == 200 and answer.get_json()["state"] == "processing", answer.data
    return ids


def outcomes(fake_ckan: FakeCkan, ids: dict[str, str], count: int) -> dict[str, tuple[str, str]]:
    calls = fake_ckan.wait_for_action(ACTION, count, timeout=120)
    by_id = {call.json()["id"]: json.loads(call.json()["shape_info"]) for call in calls}
    assert len(by_id) == len(calls), "more than one callback for a resource"
    return {name: (by_id[rid]["state"], by_id[rid]["error_type"]) for name, rid in ids.items()}


@pytest.fixture
def settings_env(settings_env: dict[str, str]) -> dict[str, str]:
    return {**settings_env, "HDXRQ_DOWNLOAD_ALLOWLIST": ""}  # the suite's default allows 127.0.0.1


def test_private_and_odd_addresses_are_refused_before_connecting(
    client: FlaskClient, fake_ckan: FakeCkan, spawn: Callable[..., Proc], file_host: FakeService, tmp_path: Path
) -> None:
    guard_log = tmp_path / "netguard.log"
    urls = direct_urls(int(file_host.url.rsplit(":", 1)[1]))
    local_layer = tmp_path / "on-the-worker.geojson"  # would import fine if a path were taken for a URL
    local_layer.write_bytes(hostile.VALID)
    urls["a geo file on the worker's disk"] = str(local_layer)
    ids = run_imports(client, urls)
    worker = spawn("worker", "geo_q", extra_env=netguard_env(guard_log))

    assert outcomes(fake_ckan, ids, len(urls)) == {name: REFUSED for name in urls}
    assert file_host.calls == []  # refused before connecting, not after
    assert not guard_log.exists(), guard_log.read_text()  # nothing even tried to leave the machine
    assert worker.alive(), worker.output()


def test_redirects_into_private_space_are_refused(
    client: FlaskClient,
    fake_ckan: FakeCkan,
    spawn: Callable[..., Proc],
    file_host: FakeService,
    inner_host: FakeService,
    tmp_path: Path,
) -> None:
    """The first hop is allowed (127.0.0.1 is allowlisted here); where it redirects to is not."""
    inner_port = inner_host.url.rsplit(":", 1)[1]
    targets = {
        "redirect to another loopback address": f"http://127.0.0.2:{inner_port}/secret",
        "redirect to its decimal form": f"http://2130706434:{inner_port}/secret",
        "redirect to IPv4-mapped IPv6": f"http://[::ffff:127.0.0.2]:{inner_port}/secret",
        "redirect to the metadata service": "http://169.254.169.254/latest/meta-data/",
        "redirect to a private network": "http://10.1.2.3/internal.geojson",
        "redirect to a file URL": "file:///etc/passwd",
    }
    urls = {}
    for number, (name, target) in enumerate(targets.items()):
        status = (301, 302, 303, 307, 308)[number % 5]
        file_host.route("GET", f"/go/{number}", Reply(status=status, headers={"Location": target}))
        urls[name] = f"{file_host.url}/go/{number}"
    ids = run_imports(client, urls)
    guard_log = tmp_path / "netguard.log"
    extra = {**netguard_env(guard_log), "HDXRQ_DOWNLOAD_ALLOWLIST": "127.0.0.1"}
    worker = spawn("worker", "geo_q", extra_env=extra)

    assert outcomes(fake_ckan, ids, len(urls)) == {name: REFUSED for name in urls}
    assert inner_host.calls == []
    assert len(file_host.calls) == len(urls)  # each first hop was fetched once
    assert not guard_log.exists(), guard_log.read_text()
    assert worker.alive(), worker.output()
