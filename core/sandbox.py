"""Confine a child process with Landlock: the files it may read or write, the TCP ports it may connect to.

Used for GDAL's ``ogrinfo`` and ``ogr2ogr``, which parse files written by attackers: even if a format
trick made GDAL try to open a path or a URL named inside a file, the child can read only the system's
libraries and data and the job's own folder (not ``/proc``, so not its own environment holding the
database password), write only the job's folder, and open TCP connections only to the ports it needs
(the database's; none at all to inspect a file).

Landlock is a Linux security module any process may use on itself (no privileges; Linux 5.13 for files,
6.7 for TCP ports). The ruleset is built in the parent before the fork; the child only calls
``prctl(PR_SET_NO_NEW_PRIVS)`` and ``landlock_restrict_self`` between fork and exec, and the
restriction stays for the life of the program it runs. Where the kernel lacks Landlock (or only its
file part), :meth:`Sandbox.prepare` says so and the caller runs the child without it (or without the
port rule): the other guards of the import do not depend on it.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446  # the same on x86-64 and arm64
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH, _RULE_NET_PORT = 1, 2
_PR_SET_PDEATHSIG, _PR_SET_NO_NEW_PRIVS = 1, 38

# LANDLOCK_ACCESS_FS_* bits
EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_ABI1 = (1 << 13) - 1  # EXECUTE .. MAKE_SYM
_REFER, _TRUNCATE, _IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_FILE_ONLY = EXECUTE | WRITE_FILE | READ_FILE | _TRUNCATE | _IOCTL_DEV
"""Rights that apply to a regular file (a rule on a file may hold only these)."""
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1

READ = EXECUTE | READ_FILE | READ_DIR
SYSTEM_PATHS = ("/usr", "/lib", "/lib64", "/bin", "/sbin", "/opt")
SYSTEM_FILES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/nsswitch.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/resolv.conf",
    "/etc/gai.conf",
    "/etc/localtime",
    "/etc/ssl",
    "/etc/gdal",
    "/etc/proj",
    "/dev/null",
    "/dev/urandom",
    "/dev/random",
)
"""What a GDAL command needs besides libraries: the loader cache, name resolution (for the database
host), TLS roots (for the database connection), the time zone, and the null and random devices."""


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _NetPortAttr(ctypes.Structure):
    _fields_ = [("allowed_access", ctypes.c_uint64), ("port", ctypes.c_uint64)]


_loaded: list[ctypes.CDLL] = []


def _libc() -> ctypes.CDLL:
    """The C library, loaded once in the parent (the child between fork and exec must not load anything)."""
    if not _loaded:
        _loaded.append(ctypes.CDLL(None, use_errno=True))
    return _loaded[0]


def abi_version() -> int:
    """The kernel's Landlock ABI version (0 when Landlock is unavailable or disabled)."""
    try:
        version = _libc().syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), _CREATE_RULESET_VERSION)
    except (OSError, AttributeError):
        return 0
    return max(int(version), 0)


@dataclass
class Sandbox:
    """A prepared ruleset: pass :attr:`pass_fds` and :meth:`enter` to ``subprocess``; close it afterwards."""

    ruleset_fd: int
    abi: int
    restricts_ports: bool
    pass_fds: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.pass_fds = (self.ruleset_fd,)

    @classmethod
    def prepare(
        cls, *, read: Iterable[str | Path] = (), write: Iterable[str | Path] = (), connect_ports: Sequence[int] = ()
    ) -> Sandbox | None:
        """A ruleset allowing reads of the system paths and ``read``, everything in ``write``, and TCP
        connections to ``connect_ports`` only; None where the kernel has no Landlock."""
        abi = abi_version()
        if abi < 1:
            return None
        handled_fs = _FS_ABI1 | (_REFER if abi >= 2 else 0) | (_TRUNCATE if abi >= 3 else 0)
        handled_fs |= _IOCTL_DEV if abi >= 5 else 0
        handled_net = (_NET_BIND_TCP | _NET_CONNECT_TCP) if abi >= 4 else 0
        attr = _RulesetAttr(handled_fs, handled_net)
        size = ctypes.sizeof(_RulesetAttr) if handled_net else ctypes.sizeof(ctypes.c_uint64)
        libc = _libc()
        fd = int(libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0))
        if fd < 0:
            log.warning("Landlock ruleset refused: %s", os.strerror(ctypes.get_errno()))
            return None
        try:
            for path in (*SYSTEM_PATHS, *SYSTEM_FILES, *read):
                _allow_path(libc, fd, Path(path), READ | (WRITE_FILE if str(path) == "/dev/null" else 0), handled_fs)
            for path in write:
                _allow_path(libc, fd, Path(path), handled_fs, handled_fs)
            for port in connect_ports if handled_net else ():
                _add_rule(libc, fd, _RULE_NET_PORT, _NetPortAttr(_NET_CONNECT_TCP, port))
        except OSError:
            os.close(fd)
            raise
        return cls(ruleset_fd=fd, abi=abi, restricts_ports=bool(handled_net))

    def enter(self, libc: ctypes.CDLL) -> None:  # pragma: no cover - runs in the child between fork and exec
        """Restrict the calling process (and what it executes) to the ruleset."""
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            os._exit(126)
        if libc.syscall(_SYS_RESTRICT_SELF, self.ruleset_fd, 0) != 0:
            os._exit(126)  # never run the child unconfined when confinement was asked for
        os.close(self.ruleset_fd)

    def close(self) -> None:
        try:
            os.close(self.ruleset_fd)
        except OSError:
            pass


def before_exec(sandbox: Sandbox | None) -> Callable[[], None]:
    """The ``preexec_fn`` of a confined child: die with the parent (``PR_SET_PDEATHSIG``), then enter
    ``sandbox`` if there is one. Everything it calls is resolved here, in the parent."""
    libc = _libc()

    def setup() -> None:  # pragma: no cover - runs in the child between fork and exec
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if sandbox is not None:
            sandbox.enter(libc)

    return setup


def _allow_path(libc: ctypes.CDLL, ruleset_fd: int, path: Path, access: int, handled: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # not on this system: nothing to allow
    try:
        allowed = access & handled
        if not os.path.isdir(path):
            allowed &= _FILE_ONLY
        _add_rule(libc, ruleset_fd, _RULE_PATH_BENEATH, _PathBeneathAttr(allowed, fd))
    finally:
        os.close(fd)


def _add_rule(libc: ctypes.CDLL, ruleset_fd: int, rule_type: int, attr: ctypes.Structure) -> None:
    if libc.syscall(_SYS_ADD_RULE, ruleset_fd, rule_type, ctypes.byref(attr), 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"landlock_add_rule: {os.strerror(errno)}")
