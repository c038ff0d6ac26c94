"""The Landlock sandbox of GDAL children, tried from inside a confined child: its own environment, files
outside its folders, and TCP ports it was not given are out of reach; its folders and port are not.

These run on kernels with Landlock's TCP rules (ABI 4, Linux 6.7): the first test says so plainly when
the machine has no such kernel, rather than skipping what the import relies on.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.sandbox import Sandbox, abi_version, before_exec

SECRET = "sandbox-secret-4f1d"
PYTHON = (sys.prefix, sys.base_prefix, str(Path(sys.executable).resolve().parent.parent))


def run(sandbox: Sandbox, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv),
        env={"PATH": "/usr/bin:/bin", "HDXRQ_TEST_SECRET": SECRET},
        capture_output=True,
        text=True,
        timeout=30,
        preexec_fn=before_exec(sandbox),
        pass_fds=sandbox.pass_fds,
    )


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server


def test_this_kernel_has_landlock_with_tcp_rules() -> None:
    assert abi_version() >= 4, "the GDAL sandbox needs Landlock ABI 4 (Linux 6.7) for its port rule"


def test_a_confined_child_cannot_read_its_environment_or_outside_files(tmp_path: Path) -> None:
    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    (work / "layer.csv").write_text("inside\n")
    (outside / "secret.csv").write_text(f"{SECRET}\n")
    sandbox = Sandbox.prepare(write=[work])
    assert sandbox is not None
    try:
        environ = run(sandbox, "cat", "/proc/self/environ")
        assert environ.returncode != 0 and SECRET not in environ.stdout
        assert "Permission denied" in environ.stderr
        stolen = run(sandbox, "cat", str(outside / "secret.csv"))
        assert stolen.returncode != 0 and SECRET not in stolen.stdout
        assert run(sandbox, "cat", "/etc/passwd").returncode != 0
        assert run(sandbox, "cat", str(work / "layer.csv")).stdout == "inside\n"  # its own folder: fine
        assert run(sandbox, "touch", str(outside / "planted")).returncode != 0
        assert run(sandbox, "touch", str(work / "made")).returncode == 0
    finally:
        sandbox.close()
    assert not (outside / "planted").exists() and (work / "made").exists()


def test_a_confined_child_connects_only_to_its_ports(tmp_path: Path, listener: socket.socket) -> None:
    allowed_port = listener.getsockname()[1]
    with socket.create_server(("127.0.0.1", 0)) as other:
        other_port = other.getsockname()[1]
        code = "import socket, sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=5)"
        sandbox = Sandbox.prepare(read=PYTHON, write=[tmp_path], connect_ports=[allowed_port])
        assert sandbox is not None and sandbox.restricts_ports
        try:
            assert run(sandbox, sys.executable, "-c", code, str(allowed_port)).returncode == 0
            refused = run(sandbox, sys.executable, "-c", code, str(other_port))
        finally:
            sandbox.close()
        assert refused.returncode != 0 and "PermissionError" in refused.stderr
        other.setblocking(False)
        with pytest.raises(BlockingIOError):
            other.accept()  # the child has ended: a connection it made would be waiting here
