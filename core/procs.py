"""The process tree, read from ``/proc`` (Linux): who is whose child."""

from __future__ import annotations

from pathlib import Path


def _stat_fields(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state, parent, ...); None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces: fields after the closing parenthesis are fixed.
    return stat[stat.rindex(")") + 2 :].split()


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running process: not gone, and not a zombie (a killed work horse whose parent
    died too stays one where nothing reaps orphans, e.g. a container without an init)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def parent_pids() -> dict[int, int]:
    """Every live process id and its parent's id."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(entry.name)) is not None:  # else gone meanwhile
            parents[int(entry.name)] = int(fields[1])
    return parents


def children(parent: int) -> list[int]:
    """The direct children of ``parent``."""
    return [pid for pid, ppid in parent_pids().items() if ppid == parent]


def descendants(root: int) -> list[int]:
    """Every process below ``root``: children, their children, and so on."""
    parents = parent_pids()
    found, frontier = [], [root]
    while frontier:
        below = [pid for pid, parent in parents.items() if parent in frontier]
        found += below
        frontier = below
    return found
