"""The process tree, read from ``/proc`` (Linux): who is whose child."""

from __future__ import annotations

from pathlib import Path


def parent_pids() -> dict[int, int]:
    """Every live process id and its parent's id."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # gone meanwhile
            # The command name may contain spaces: fields after the closing parenthesis are fixed.
            parents[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
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
