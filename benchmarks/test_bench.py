"""pytest-benchmark suite: fixed-size event loop workloads on every loop.

Run with::

    python -m pytest benchmarks --benchmark-only
    python -m pytest benchmarks --benchmark-only --benchmark-group-by=func
    python -m pytest benchmarks --benchmark-only -k tasks_sleep0

(Collected only with --benchmark-only; see conftest.py.)  Each test is
parametrised by loop: asyncio (SelectorEventLoop), uvloop (skipped if not
installed), py_async_lib (skipped unless it imports and provides
new_event_loop()) and, for the loop-level workloads, the Python floor
(benchmarks/floor.py).  Every round runs on a brand-new loop created in the
untimed setup; the timed part is one fixed-size round of the same workload
functions ``python -m benchmarks.throughput`` uses, with smaller sizes so the
whole suite stays well under two minutes.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Tuple

import pytest

from benchmarks.workloads import (InProcessEcho, call_later_timers_round,
                                  call_soon_burst_round, call_soon_chain_round,
                                  call_soon_threadsafe_round, future_pingpong_round,
                                  tasks_sleep0_round)

ROUNDS = 20
WARMUP_ROUNDS = 2

# name -> (round function, kwargs, expected ops per round)
LOOP_WORKLOADS: Dict[str, Tuple[Callable[..., int], Dict[str, Any], int]] = {
    "call_soon_chain": (call_soon_chain_round, {"n": 10_000}, 10_000),
    "call_soon_burst": (call_soon_burst_round, {"n": 10_000}, 10_000),
    "call_later_timers": (call_later_timers_round, {"n": 5_000}, 5_000),
    "tasks_sleep0": (tasks_sleep0_round, {"ntasks": 5_000, "nsleeps": 3}, 15_000),
    "future_pingpong": (future_pingpong_round, {"n": 5_000}, 10_000),
    "call_soon_threadsafe": (call_soon_threadsafe_round, {"n": 20_000, "nthreads": 2}, 20_000),
}


@pytest.mark.parametrize("workload", list(LOOP_WORKLOADS))
def test_loop_workload(benchmark: Any, fresh_loops: Any, workload: str) -> None:
    fn, kwargs, expected = LOOP_WORKLOADS[workload]
    benchmark.group = workload
    benchmark.extra_info.update(loop=fresh_loops.name, ops_per_round=expected)

    def setup() -> Tuple[tuple, dict]:
        return (fresh_loops.new(),), kwargs

    ops = benchmark.pedantic(fn, setup=setup, rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS,
                             iterations=1)
    assert ops == expected


ECHO_ROUND_TRIPS = 1_000


def test_echo_round_trips_1k(benchmark: Any, fresh_loops: Any) -> None:
    """1000 sequential 1 KiB round trips between a Protocol client and a
    Protocol echo server on 127.0.0.1, both in the loop under test."""
    if fresh_loops.name == "floor":
        pytest.skip("the floor loop has no I/O; see benchmarks/floor_server.py")
    benchmark.group = "echo_inprocess_1k"
    benchmark.extra_info.update(loop=fresh_loops.name, ops_per_round=ECHO_ROUND_TRIPS)

    def setup() -> Tuple[tuple, dict]:
        loop = fresh_loops.new()
        echo = InProcessEcho(loop, size=1024).open()
        fresh_loops.on_close.append(echo.close)
        return (echo,), {}

    def run(echo: InProcessEcho) -> int:
        return echo.round_trips(ECHO_ROUND_TRIPS)

    ops = benchmark.pedantic(run, setup=setup, rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS,
                             iterations=1)
    assert ops == ECHO_ROUND_TRIPS
