"""The Python floor of the loop-level workloads: the least a Python-level
event loop must do to run them with asyncio's semantics.

``FloorLoop`` is not a usable event loop (no I/O, no signals, no executor,
no debug mode); it exists so that the benchmark table can show, in the same
run, how far a loop whose dispatch is written in Python could go at all:

* ``call_soon`` makes a slotted handle holding the callback, its arguments
  and its context (a copy of the current one when none is given, as asyncio
  does) and appends it to a ``deque``;
* an iteration moves the timers that are due from a ``heapq`` of
  ``(when, sequence, handle)`` tuples (compared in C; cancelled ones are
  dropped lazily when they reach the top) to the ready queue, then
  runs the handles that were ready when it started, each as
  ``context.run(callback, *args)`` under a try/except that hands errors to
  ``call_exception_handler``;
* ``call_soon_threadsafe`` is ``call_soon`` plus a one-byte write on a pipe,
  made only when the loop is about to sleep or sleeping (the flag is set
  before the loop's last look at the ready queue, so no wake-up is lost);
* futures and tasks are asyncio's own (the C ``_asyncio`` ones), exactly as
  every loop, ours included, uses them.

Only the benchmarks use this module; it is never imported by py_async_lib.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import heapq
import itertools
import os
import select
import sys
import time
from typing import Any, Callable, Optional

_monotonic = time.monotonic
_copy_context = contextvars.copy_context


class _Handle:
    __slots__ = ("_callback", "_args", "_context", "_cancelled")

    def __init__(self, callback: Callable[..., Any], args: tuple,
                 context: contextvars.Context) -> None:
        self._callback = callback
        self._args = args
        self._context = context
        self._cancelled = False

    def cancel(self) -> None:
        self._cancelled = True

    def cancelled(self) -> bool:
        return self._cancelled


class _TimerHandle(_Handle):
    __slots__ = ("_when",)

    def __init__(self, when: float, callback: Callable[..., Any], args: tuple,
                 context: contextvars.Context) -> None:
        _Handle.__init__(self, callback, args, context)
        self._when = when

    def when(self) -> float:
        return self._when


class FloorLoop(asyncio.AbstractEventLoop):
    """A bare ready queue, a timer heap and a wake-up pipe; see the module
    docstring."""

    def __init__(self) -> None:
        self._ready: collections.deque = collections.deque()
        self._timers: list = []  # (when, sequence, _TimerHandle)
        self._sequence = itertools.count()
        self._stopping = False
        self._running = False
        self._closed = False
        self._sleeping = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    # ---- scheduling ---------------------------------------------------------

    def call_soon(self, callback: Callable[..., Any], *args: Any,
                  context: Optional[contextvars.Context] = None) -> _Handle:
        handle = _Handle(callback, args, _copy_context() if context is None else context)
        self._ready.append(handle)
        return handle

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any,
                             context: Optional[contextvars.Context] = None) -> _Handle:
        handle = self.call_soon(callback, *args, context=context)
        if self._sleeping:
            try:
                os.write(self._wake_w, b"\0")
            except BlockingIOError:  # pipe full: a wake-up is pending anyway
                pass
        return handle

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any,
                   context: Optional[contextvars.Context] = None) -> _TimerHandle:
        return self.call_at(_monotonic() + delay, callback, *args, context=context)

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any,
                context: Optional[contextvars.Context] = None) -> _TimerHandle:
        timer = _TimerHandle(when, callback, args,
                             _copy_context() if context is None else context)
        heapq.heappush(self._timers, (when, next(self._sequence), timer))
        return timer

    def time(self) -> float:
        return _monotonic()

    def create_future(self) -> "asyncio.Future[Any]":
        return asyncio.Future(loop=self)

    def create_task(self, coro: Any, *, name: Optional[str] = None,
                    context: Optional[contextvars.Context] = None) -> "asyncio.Task[Any]":
        if context is None:
            return asyncio.Task(coro, loop=self, name=name)
        return asyncio.Task(coro, loop=self, name=name, context=context)

    # ---- running ------------------------------------------------------------

    def _run_once(self) -> None:
        ready = self._ready
        timers = self._timers
        if timers:
            now = _monotonic()
            while timers and (timers[0][0] <= now or timers[0][2]._cancelled):
                timer = heapq.heappop(timers)[2]
                if not timer._cancelled:
                    ready.append(timer)
        if not ready:
            self._sleep()
            return
        for _ in range(len(ready)):
            handle = ready.popleft()
            if handle._cancelled:
                continue
            try:
                handle._context.run(handle._callback, *handle._args)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self.call_exception_handler({"message": "Exception in callback",
                                             "exception": exc, "handle": handle})

    def _sleep(self) -> None:
        if self._stopping:
            return
        self._sleeping = True
        try:
            if self._ready:  # a thread added one after the first look
                return
            timeout = max(0.0, self._timers[0][0] - _monotonic()) if self._timers else None
            select.select([self._wake_r], [], [], timeout)
            try:
                os.read(self._wake_r, 4096)
            except BlockingIOError:
                pass
        finally:
            self._sleeping = False

    def run_forever(self) -> None:
        if self._running:
            raise RuntimeError("This event loop is already running")
        self._running = True
        asyncio.events._set_running_loop(self)
        try:
            while True:
                self._run_once()
                if self._stopping:
                    break
        finally:
            self._stopping = False
            self._running = False
            asyncio.events._set_running_loop(None)

    def run_until_complete(self, future: Any) -> Any:
        future = asyncio.ensure_future(future, loop=self)
        future.add_done_callback(lambda _: self.stop())
        self.run_forever()
        if not future.done():
            raise RuntimeError("Event loop stopped before Future completed.")
        return future.result()

    def stop(self) -> None:
        self._stopping = True

    def is_running(self) -> bool:
        return self._running

    def is_closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._ready.clear()
        self._timers.clear()
        os.close(self._wake_r)
        os.close(self._wake_w)

    async def shutdown_asyncgens(self) -> None:
        pass

    async def shutdown_default_executor(self, timeout: Optional[float] = None) -> None:
        pass

    # ---- what asyncio's futures and tasks ask of a loop ---------------------

    def get_debug(self) -> bool:
        return False

    def set_debug(self, enabled: bool) -> None:
        pass

    def call_exception_handler(self, context: dict) -> None:
        exc = context.get("exception")
        print(f"FloorLoop: {context.get('message')}: {exc!r}", file=sys.stderr)

    def default_exception_handler(self, context: dict) -> None:
        self.call_exception_handler(context)
