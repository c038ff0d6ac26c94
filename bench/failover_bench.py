#!/usr/bin/env python3
"""The pause a Redis Sentinel failover causes, over repeated runs of the failover test.

    .venv/bin/python bench/failover_bench.py [--runs 5] [--down-after-ms 1000,5000]

Each run is ``tests/reliability/test_redis_failover.py``: a private primary, replica and three sentinels,
the API and three workers on ``redis+sentinel://`` URLs, change events, analytics events and imports
flowing, then the primary SIGKILLed. The test checks that nothing accepted is lost and prints what it
measured; this script collects those figures for each Sentinel ``down-after-milliseconds`` given and prints
them with their medians. The baseline is Sentinel's own failover time in the same run (kill → the replica
answers as primary); the ratios say how much longer the service paused than Sentinel took:

* ``api pause``: the longest time without a successful answer from the API (requests wait, none refused);
* ``slowest answer``: the longest single request (one caught by the kill);
* ``stream pause``: the longest gap between two change events on the stream (the event worker's pause).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST = "tests/reliability/test_redis_failover.py"
FIGURES = ("promoted_after_s", "api_pause_s", "slowest_answer_s", "stream_pause_s")


def one_run(down_after_ms: int) -> dict:
    """Run the test once; the figures it printed."""
    env = {**os.environ, "HDXRQ_TEST_SENTINEL_DOWN_AFTER_MS": str(down_after_ms)}
    argv = [sys.executable, "-m", "pytest", TEST, "-q", "-s", "-p", "no:cacheprovider"]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("failover {")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"the failover test failed:\n{done.stdout[-3000:]}")
    return json.loads(lines[-1].removeprefix("failover "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--down-after-ms", default="1000", help="comma-separated Sentinel detection times")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}", flush=True)
    for down_after in (int(value) for value in args.down_after_ms.split(",")):
        runs = []
        for number in range(1, args.runs + 1):
            runs.append(one_run(down_after))
            figures = "  ".join(f"{name} {runs[-1][name]:5.2f}" for name in FIGURES)
            print(f"down-after {down_after} ms, run {number}: {figures}  refused {runs[-1]['refused']}", flush=True)
        medians = {name: statistics.median(run[name] for run in runs) for name in FIGURES}
        baseline = medians["promoted_after_s"]
        worst = max(run["api_pause_s"] for run in runs)
        print(
            f"down-after {down_after} ms, median of {args.runs}: Sentinel failover {baseline:.2f} s; "
            + ", ".join(f"{name} {medians[name]:.2f} s ({medians[name] / baseline:.2f}x)" for name in FIGURES[1:])
            + f"; max api pause {worst:.2f} s, refused {sum(run['refused'] for run in runs)}",
            flush=True,
        )


if __name__ == "__main__":
    main()
