"""What loop.stats() returns, and the default report of a slow iteration.

The C loop keeps the counters (loop_stats_t in casyncio.h) at a few additions
per poll and nothing per callback, so they can stay on in production.  A
batch is what happens between a poll's return and the next poll: the events
are dispatched and the ready callbacks run; nothing new is noticed meanwhile,
so batch durations are the loop's lag.  An iteration runs from one poll's
start to the next (the wait plus the batch).  Iterations that run callbacks
without polling (nothing in epoll, no timer due) belong to the batch around
them; time between two runs of the loop (run_forever() returning) counts in
neither.
"""
import asyncio
from typing import Callable, List, Tuple, TypedDict

from ._compat import format_handle, logger

__all__ = ["LoopStats", "HISTOGRAM_BOUNDS", "SlowIterationHook",
           "log_slow_iteration"]

#: Upper bounds, in seconds, of the buckets of iter_hist and batch_hist:
#: bucket 0 counts durations under 1 us, bucket k those in [2**(k-1), 2**k)
#: us, and the last one everything from 2**22 us (4.19 s) up.
HISTOGRAM_BOUNDS: Tuple[float, ...] = tuple(
    [2 ** k / 1e6 for k in range(23)] + [float("inf")])


class LoopStats(TypedDict):
    """loop.stats(): counters since the loop was created, durations in ns."""
    iterations: int       # calls into the C loop (loop_run_once)
    io_events: int        # epoll events handled
    timers_fired: int     # timers the C loop fired (call_later/call_at)
    callbacks_run: int    # C callbacks run by the C loop itself (0 here)
    events_emitted: int   # events handed to Python
    bytes_read: int       # by the C loop's stream reads
    bytes_written: int    # by the C loop's stream writes
    poll_ns: int          # time waiting in epoll
    events_dropped: int   # events lost to a bug in the library: always 0
    batch_ns: int         # time in batches: dispatch and callbacks
    batch_max_ns: int     # the longest batch: the worst lag so far
    batch_max_end: int    # when it ended (time.monotonic_ns()), 0: none yet
    fds: int              # fds in epoll now
    timers: int           # pending timers now
    iter_hist: List[int]  # iteration durations, buckets of HISTOGRAM_BOUNDS
    batch_hist: List[int]  # batch durations, buckets of HISTOGRAM_BOUNDS
    slow_iterations: int  # iterations reported by report_slow_iterations()


#: hook(seconds, handles): the callbacks' time of one iteration, and the
#: handles (asyncio.Handle) it ran, in order.
SlowIterationHook = Callable[[float, List[asyncio.Handle]], object]

# Handles named in a log line; the rest are counted.
_LOG_HANDLES = 10


def log_slow_iteration(seconds: float, handles: List[asyncio.Handle]) -> None:
    """The default hook: one warning on asyncio's logger naming the handles
    (as asyncio's debug mode names a slow callback)."""
    named = ", ".join(format_handle(h)
                      for h in handles[:_LOG_HANDLES])
    more = len(handles) - _LOG_HANDLES
    if more > 0:
        named += f" and {more} more"
    logger.warning("Iteration took %.3f seconds running %d callbacks: %s",
                   seconds, len(handles), named)
