"""Hostile download and HXL proxy URLs through the real API and a real worker: every one refused before any
connection is made (``download-refused``, ``hxl-proxy-refused``), redirect chains into private space and a
DNS-rebinding host included, and the worker alive afterwards.

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
        "6to4 of loopback": f"http://[2002:7f00:1::1]{path}",
        "6to4 of the metadata service": "http://[2002:a9fe:a9fe::1]/latest/meta-data/",
        "NAT64 of loopback": f"http://[64:ff9b::7f00:1]{path}",
        "NAT64 of a private address": "http://[64:ff9b::a00:1]/file.geojson",
        "local-use NAT64": f"http://[64:ff9b:1::7f00:1]{path}",
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


def test_a_redirect_chain_ending_at_the_metadata_service_is_refused(
    client: FlaskClient, fake_ckan: FakeCkan, spawn: Callable[..., Proc], file_host: FakeService, tmp_path: Path
) -> None:
    """Three allowed hops (127.0.0.1 is allowlisted here), then 169.254.169.254: refused at the last one."""
    file_host.route("GET", "/chain/1", Reply(status=301, headers={"Location": "/chain/2"}))
    file_host.route("GET", "/chain/2", Reply(status=307, headers={"Location": f"{file_host.url}/chain/3"}))
    metadata = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
    file_host.route("GET", "/chain/3", Reply(status=302, headers={"Location": metadata}))
    ids = run_imports(client, {"chain": f"{file_host.url}/chain/1"})
    guard_log = tmp_path / "netguard.log"
    worker = spawn("worker", "geo_q", extra_env={**netguard_env(guard_log), "HDXRQ_DOWNLOAD_ALLOWLIST": "127.0.0.1"})

    assert outcomes(fake_ckan, ids, 1) == {"chain": REFUSED}
    assert [call.path for call in file_host.calls] == ["/chain/1", "/chain/2", "/chain/3"]
    assert not guard_log.exists(), guard_log.read_text()
    assert worker.alive(), worker.output()


PUBLIC = "93.184.216.34"


def test_a_rebinding_host_gets_no_request_to_loopback(
    client: FlaskClient, fake_ckan: FakeCkan, spawn: Callable[..., Proc], file_host: FakeService, tmp_path: Path
) -> None:
    """The host's first DNS answer is public (checked, allowed), every later one 127.0.0.1: the worker
    connects to the address it checked, so the loopback file server hears nothing."""
    port = int(file_host.url.rsplit(":", 1)[1])
    ids = run_imports(client, {"rebinding": f"http://rebind.example.test:{port}/files/layer.geojson"})
    guard_log = tmp_path / "netguard.log"
    dns = {"HDXRQ_TEST_FAKE_DNS": f"rebind.example.test={PUBLIC},127.0.0.1"}
    worker = spawn("worker", "geo_q", extra_env={**netguard_env(guard_log), **dns})

    assert outcomes(fake_ckan, ids, 1) == {"rebinding": ("failure", "download-problem")}
    assert file_host.calls == []
    lines = guard_log.read_text().splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == [
        f"resolved rebind.example.test -> {PUBLIC}",  # once: the answer that was checked
        f"refused connect to ('{PUBLIC}', {port})",  # and the connection went there
    ]
    assert worker.alive(), worker.output()


FS_CHECK_ACTION = "hdx_fs_check_resource_revise"


@pytest.mark.parametrize("target", ["loopback", "rebinding", "redirect to metadata"])
def test_an_hxl_proxy_url_into_private_space_is_refused(
    client: FlaskClient,
    fake_ckan: FakeCkan,
    spawn: Callable[..., Proc],
    file_host: FakeService,
    tmp_path: Path,
    target: str,
) -> None:
    """CKAN hears ``state: error`` with ``hxl-proxy-refused``; the loopback "proxy" hears nothing."""
    port = int(file_host.url.rsplit(":", 1)[1])
    file_host.route("GET", "/api/source-info", Reply(body={"format": "CSV", "sheets": []}))
    with FakeService("redirector") as redirector:
        redirector.route("GET", "/go", Reply(status=302, headers={"Location": "http://169.254.169.254/latest/"}))
        url, extra = {
            "loopback": (f"http://127.0.0.1:{port}/api/source-info", {}),
            "rebinding": (
                f"http://proxy.example.test:{port}/api/source-info",
                {"HDXRQ_TEST_FAKE_DNS": f"proxy.example.test={PUBLIC},127.0.0.1"},
            ),
            "redirect to metadata": (
                f"{redirector.url}/go",
                {"HDXRQ_DOWNLOAD_ALLOWLIST": redirector.url[7:].split(":")[0]},
            ),
        }[target]
        answer = client.post(
            "/api/file-structure-check/dataset/d1/resource/r1",
            json={"hxl_proxy_source_info_url": url, "fs_check_info": "[]"},
        )
        assert answer.get_json() == {"success": True}
        guard_log = tmp_path / "netguard.log"
        worker = spawn("worker", "fs_check_q", extra_env={**netguard_env(guard_log), **extra})
        value = fake_ckan.wait_for_action(FS_CHECK_ACTION, 1, timeout=60)[0].json()["value"]

    expected = "hxl-proxy-problem" if target == "rebinding" else "hxl-proxy-refused"
    assert (value["state"], value["error_type"], value["hxl_proxy_response"]) == ("error", expected, None)
    assert file_host.calls == []
    log = guard_log.read_text() if guard_log.exists() else ""
    assert "127.0.0.1" not in log and "169.254" not in log, log
    assert worker.alive(), worker.output()
