"""The queues and the worker lanes that serve them.

Queue names are the wire contract (CONTRACTS.md §1: the old service's workers and CKAN's tooling use them),
so they are spelled once, here. ``tiles_q`` is hdxrq's own: tile prerenders, which nothing outside waits for.

A *lane* is what one worker takes: its queues, in order, and rq's dequeue strategy. rq takes a worker's
queues in strict order (the first non-empty one) and runs one job at a time, so a worker busy with long
jobs, or with a queue that never empties, holds up everything listed after it. The lanes keep the kinds
of work apart (bench/RESULTS.md has the measurements behind them):

* ``events``: change events, file-structure checks and scheduled CKAN calls, all short; round robin, so
  none of the three waits for the others to empty. It never takes an import or the analytics drain.
* ``analytics``: the analytics drain, which under steady traffic runs for its whole budget (two minutes)
  and would hold any other lane's worker that long; between drains it helps the events lane.
* ``geo``: imports and their callbacks to CKAN (queued at the *front* of ``geo_q``, so the worker that
  ended an import sends its callback next), then tile prerenders, only when no import waits.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum


class QueueName(StrEnum):
    """Every queue a worker can take (the values are what Redis and the old service know)."""

    GEO = "geo_q"
    ANALYTICS = "analytics_q"
    FS_CHECK = "fs_check_q"
    EVENT = "event_q"
    SCHEDULER = "default_scheduler_q"
    TILES = "tiles_q"


CONTRACT_QUEUES: tuple[QueueName, ...] = (
    QueueName.GEO,
    QueueName.ANALYTICS,
    QueueName.FS_CHECK,
    QueueName.EVENT,
    QueueName.SCHEDULER,
)
"""The old service's queues (CONTRACTS.md §1): where its jobs may still wait at a cutover."""
ALL_QUEUES: tuple[QueueName, ...] = tuple(QueueName)
"""Every queue, in the order a worker with no queue named (and no ``QUEUES`` setting) listens to them."""

STRICT = "default"
ROUND_ROBIN = "round_robin"
"""rq's dequeue strategies (``--dequeue-strategy``): strict order, or the queue after the last one served first."""


@dataclass(frozen=True)
class Lane:
    """What one worker takes: ``queues`` in order, dequeued with ``strategy``."""

    name: str
    queues: tuple[QueueName, ...]
    strategy: str = STRICT


LANES: tuple[Lane, ...] = (
    Lane("events", (QueueName.EVENT, QueueName.FS_CHECK, QueueName.SCHEDULER), ROUND_ROBIN),
    Lane("analytics", (QueueName.ANALYTICS, QueueName.EVENT, QueueName.FS_CHECK, QueueName.SCHEDULER)),
    Lane("geo", (QueueName.GEO, QueueName.TILES)),
)
LANES_BY_NAME = {lane.name: lane for lane in LANES}
SCALED_LANE = LANES_BY_NAME["geo"]
"""The lane workers beyond one per lane join: imports are the long jobs that gain from running side by side."""


def lane_layout(workers: int, lanes: tuple[Lane, ...] = LANES) -> list[tuple[Lane, ...]]:
    """The lanes each of ``workers`` workers takes: one lane each, extra workers in :data:`SCALED_LANE`
    (or in the first of ``lanes`` when it is not among them).

    With fewer workers than lanes, the last worker takes the remaining lanes together (:func:`merge_lanes`):
    nothing is left unserved, but that worker's long jobs hold up its other queues: the lanes need three.
    """
    if workers < 1:
        raise ValueError("at least one worker")
    if not lanes:
        raise ValueError("at least one lane")
    alone: list[tuple[Lane, ...]] = [(lane,) for lane in lanes]
    if workers >= len(lanes):
        scaled = next((lane for lane in lanes if lane.name == SCALED_LANE.name), lanes[0])
        return alone + [(scaled,)] * (workers - len(lanes))
    return alone[: workers - 1] + [lanes[workers - 1 :]]


def within(lanes: tuple[Lane, ...], allowed: Collection[str]) -> tuple[Lane, ...]:
    """``lanes`` limited to the queues of ``allowed`` (the ``QUEUES`` setting), each keeping its order and
    strategy; a lane left with no queue is dropped."""
    kept = (Lane(lane.name, tuple(name for name in lane.queues if name in allowed), lane.strategy) for lane in lanes)
    return tuple(lane for lane in kept if lane.queues)


def merge_lanes(lanes: tuple[Lane, ...]) -> Lane:
    """One lane taking every queue of ``lanes`` (in the order first named), round robin when there are several."""
    if len(lanes) == 1:
        return lanes[0]
    queues = tuple(dict.fromkeys(name for lane in lanes for name in lane.queues))
    return Lane("+".join(lane.name for lane in lanes), queues, ROUND_ROBIN)
