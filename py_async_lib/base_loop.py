"""BaseLoop: asyncio's BaseEventLoop with its engine replaced by libcasyncio.

What asyncio's base loop does above the engine (tasks, futures, executors,
exception handling, async generators, name resolution, connection logic) is
inherited unchanged, so behaviour and error messages stay asyncio's.  What the
engine does is replaced: the poll, timers, fd watchers and (in transports.py)
socket I/O live in C.  Each iteration crosses into C once: loop_run_once()
polls and fills an array with every ready fd, expired timer and completed
read, which _dispatch() turns into ready callbacks in asyncio's order (I/O,
then timers, each run after the callbacks that were already ready).
"""
import collections
import contextvars
import itertools
import os
import struct
import threading
import time
import weakref

from . import _compat
from ._binding import NULL, check, ffi, lib, os_error
from ._binding import (EV_CHILD, EV_DATA, EV_DRAINED, EV_EOF, EV_ERROR,
                       EV_IO, EV_READABLE, EV_RESUME, EV_TIMER, EVENT_INTS,
                       READABLE, WRITABLE)
from ._compat import logger
from .handles import (Handle, TimerHandle, make_handle, make_timer_handle,
                      report_callback_exception)
from .health import LoopStats, SlowIterationHook, log_slow_iteration
from .transports import BULK_READ

__all__ = ["BaseLoop"]

# Events one crossing can carry; more simply wait for the next iteration.
_EVENTS_MAX = 1024
# The event array read as (kind, fd, a, b) tuples: iter_unpack() over a view
# of the n events makes them in C.  One view per small n is made once: with
# one connection an iteration carries one event, and slicing a view costs
# as much as the rest of reading it (callgrind, 3.11: 1.7k instructions for
# one event against 4.2k with tolist() and zip(), 16.6k against 18.1k for
# 16).
_iter_events = struct.Struct("@%dq" % EVENT_INTS).iter_unpack
_EVENT_BYTES = 8 * EVENT_INTS
_EVENT_VIEWS = 64

_fileobj_to_fd = _compat.fileobj_to_fd
_futures = _compat.futures
_tasks = _compat.tasks
_running_loop = _compat.get_running_loop_or_none
_ASKING_COSTS_A_SYSCALL = _compat.RUNNING_LOOP_ASKS_PID
_loop_run_once = lib.pyal_run_once   # one lookup, not one per iteration
_poll_due = lib.pyal_poll_due
_loop_call_at = lib.loop_call_at
_loop_timer_cancel = lib.loop_timer_cancel
_monotonic_ns = time.monotonic_ns    # the C loop's clock (CLOCK_MONOTONIC)
# range(n) for the small n of most batches: making one costs as much as
# running a callback's loop step ten times (callgrind, 3.11: 940
# instructions), and a call_soon() chain makes one per callback.
_RANGES = tuple(range(n) for n in range(64))
_islice = itertools.islice
_copy_context = contextvars.copy_context
# The one kind of handle the inline run below must not run inline: its
# _run() takes the lock its cancel() takes (3.14+, call_soon_threadsafe()'s;
# None before).
_LockedHandle = _compat.ThreadSafeHandle

# loop_stats_t fields that stats() copies (LoopStats less what Python keeps).
_STATS_FIELDS = tuple(name for name in LoopStats.__annotations__
                      if name != "slow_iterations")


def _debug_answer(value):
    """A C callable that takes no argument and returns value (and holds
    nothing else: no cycle through the loop)."""
    return itertools.repeat(value).__next__


def _is_debug_answer(obj):
    return type(getattr(obj, "__self__", None)) is itertools.repeat


class BaseLoop(_compat.BaseEventLoop):
    """The engine half of the loop: scheduling, timers, fd watchers and the
    dispatch of the C loop's events."""

    # There is no selectors.Selector: epoll belongs to the C loop.  (Code
    # that reports on a loop, like CPython's tests, reads this attribute.)
    _selector = None

    def __init__(self):
        cloop = ffi.new("loop_t **")
        check(lib.loop_new(cloop))
        self._cloop = cloop[0]
        # Created before BaseEventLoop.__init__ so that __del__ and close()
        # find them even if that raises.
        self._wakeup_lock = threading.Lock()
        self._wakeup_pending = False
        # Set once call_soon_threadsafe() queued a _LockedHandle (3.14+):
        # until then the run loop does not look for them.
        self._locked_handles = False
        self._pid = os.getpid()
        # report_slow_iterations(): None (off), or (threshold ns, hook).
        self._slow_report = None
        self._slow_count = 0
        super().__init__()
        self._choose_ready_runner()
        self._publish_debug()
        self._ready = collections.deque()
        self._timers = {}       # C timer id -> TimerHandle
        self._readers = {}      # fd -> Handle
        self._writers = {}      # fd -> Handle
        self._streams = {}      # fd -> transport whose I/O the C loop does
        self._children = {}     # pid -> (callback(pid, returncode), context)
        # A weak map fd -> transport, as selector_events keeps it, so that
        # add_reader() refuses fds that belong to a transport.  Stream
        # transports are found in _streams instead: a weak reference per
        # connection costs a server 120 bytes each (issue 12).
        self._transports = weakref.WeakValueDictionary()
        self._events = ffi.new("loop_event_t[]", _EVENTS_MAX)
        raw = memoryview(ffi.buffer(self._events))
        self._event_bytes = raw
        self._event_views = tuple(raw[:n * _EVENT_BYTES]
                                  for n in range(_EVENT_VIEWS))
        base = ffi.new("char **")
        size = ffi.new("size_t *")
        lib.loop_read_arena(self._cloop, base, size)
        self._arena = ffi.buffer(base[0], size[0])

    # ---- closing -------------------------------------------------------

    def close(self):
        if self._pid != os.getpid():
            self._forget_parent()
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self._closed:
            return
        super().close()
        for stream in list(self._streams.values()):
            stream._loop_closed()
        self._streams.clear()
        # Like asyncio closing its selector: watchers are dropped, not
        # cancelled.
        self._readers.clear()
        self._writers.clear()
        for handle in self._timers.values():
            handle._scheduled = False
        self._timers.clear()
        self._arena = None
        self._event_bytes = self._event_views = None
        with self._wakeup_lock:
            cloop, self._cloop = self._cloop, None
        lib.loop_free(cloop)

    def _forget_parent(self):
        """In a child forked from the process that made the loop (perhaps
        from inside one of its callbacks, so that the loop looks running
        here): the loop runs in the parent, and what it waits on is the
        parent's.  Closing it here frees memory and closes this process's
        copies of its fds, no more: loop_free() makes no epoll_ctl() call,
        which on the epoll instance the two processes share would remove the
        parent's registrations, and the parent's children are not ours to
        reap."""
        self._pid = os.getpid()
        self._thread_id = None
        self._children.clear()
        # Another thread may have held it at the fork; none runs here.
        self._wakeup_lock = threading.Lock()
        self._wakeup_pending = False

    def _close_without_base(self):
        # Frees the C loop when BaseEventLoop.__init__ never ran.
        if getattr(self, "_cloop", None) is not None:
            lib.loop_free(self._cloop)
            self._cloop = None

    def __del__(self, _warn=None):
        if not hasattr(self, "_closed"):
            self._close_without_base()
            return
        super().__del__()

    # ---- scheduling ----------------------------------------------------

    def call_soon(self, callback, *args, context=None):
        if self._closed:
            raise RuntimeError("Event loop is closed")
        if self._debug:
            self._check_thread()
            self._check_callback(callback, "call_soon")
            handle = make_handle(callback, args, self, context)
            del handle._source_traceback[-1]
        else:
            if not callable(callback):
                self._check_callback(callback, "call_soon")
            # make_handle(), inline: its call would be a fifth of what a
            # call_soon() costs.  _compat checks at import that these are
            # all of asyncio's Handle slots.
            handle = Handle()
            handle._context = _copy_context() if context is None else context
            handle._loop = self
            handle._callback = callback
            handle._args = args
            handle._cancelled = False
            handle._repr = None
            handle._source_traceback = None
        self._ready.append(handle)
        return handle

    def _call_soon(self, callback, args, context):
        # asyncio's internals use this.
        handle = make_handle(callback, args, self, context)
        if handle._source_traceback:
            del handle._source_traceback[-1]
        self._ready.append(handle)
        return handle

    def call_soon_threadsafe(self, callback, *args, context=None):
        """Like call_soon(), but thread-safe."""
        # asyncio's, with the handle made inline and the wakeup skipped
        # while one is pending (no Python call for either).
        if self._closed:
            raise RuntimeError("Event loop is closed")
        if self._debug:
            self._check_callback(callback, "call_soon_threadsafe")
        if _LockedHandle is not None:
            # 3.14+: asyncio's own handle, whose lock the loop takes to
            # run it.  Said before the handle is queued: the run loop reads
            # it after it counted the handles it will run.
            self._locked_handles = True
            handle = _LockedHandle(callback, args, self, context)
            if handle._source_traceback:
                # Its __init__'s frame and ours.
                del handle._source_traceback[-2:]
        elif self._debug:
            handle = make_handle(callback, args, self, context)
            del handle._source_traceback[-1]
        else:
            # make_handle(), inline (see call_soon()).
            handle = Handle()
            handle._context = _copy_context() if context is None else context
            handle._loop = self
            handle._callback = callback
            handle._args = args
            handle._cancelled = False
            handle._repr = None
            handle._source_traceback = None
        self._ready.append(handle)
        if not self._wakeup_pending:
            self._write_to_self()
        return handle

    def call_later(self, delay, callback, *args, context=None):
        # asyncio's goes through call_at(); one Python call less here.
        if delay is None:
            raise TypeError("delay must not be None")
        return self._timer_at(self.time() + delay, callback, args, context)

    def call_at(self, when, callback, *args, context=None):
        if when is None:
            raise TypeError("when cannot be None")
        return self._timer_at(when, callback, args, context)

    def _timer_at(self, when, callback, args, context):
        if self._closed:
            raise RuntimeError("Event loop is closed")
        if self._debug:
            self._check_thread()
            self._check_callback(callback, "call_at")
            timer = make_timer_handle(when, callback, args, self, context)
            # This frame and call_at()'s or call_later()'s: the traceback
            # ends where the user scheduled the timer.
            del timer._source_traceback[-2:]
        else:
            if not callable(callback):
                self._check_callback(callback, "call_at")
            # make_timer_handle(), inline (see call_soon()).
            timer = TimerHandle()
            timer._context = _copy_context() if context is None else context
            timer._loop = self
            timer._callback = callback
            timer._args = args
            timer._cancelled = False
            timer._repr = None
            timer._source_traceback = None
            timer._when = when
            timer._scheduled = False
        tid = _loop_call_at(self._cloop, when, NULL, NULL)
        if tid < 0:
            # NaN or infinite.  asyncio accepts both: a NaN deadline compares
            # as due at once, +inf never comes, -inf is now.
            if when != when or when < 0:
                tid = check(_loop_call_at(self._cloop, 0.0, NULL, NULL))
            else:
                timer._tid = 0
                return timer
        timer._tid = tid
        timer._scheduled = True
        self._timers[tid] = timer
        return timer

    def _timer_handle_cancelled(self, handle):
        if handle._scheduled:
            handle._scheduled = False
            tid = handle._tid
            del self._timers[tid]
            _loop_timer_cancel(self._cloop, tid)

    def create_future(self):
        # asyncio's is Future(loop=self).  The C Future's type makes a dict
        # of that keyword and parses it: with get_debug()'s frame, half of
        # what a future costs (callgrind, 3.11: Future(loop=l) 1990
        # instructions, Future() 1180).  A Future made without a loop takes
        # the running one, which is this one whenever one of its callbacks
        # or tasks asks; from anywhere else, asyncio's call.  Not on 3.11,
        # where asking costs a getpid() and Future() another, which
        # callgrind does not count (it counts no kernel time): 453 ns a
        # future, against 152 ns for Future(loop=self) (perf_counter, 1M).
        if not _ASKING_COSTS_A_SYSCALL and _running_loop() is self:
            return _futures.Future()
        return _futures.Future(loop=self)

    def create_task(self, coro, **kwargs):
        # The common call (no name, context or factory, from a callback or
        # task of this loop) makes Task(coro): asyncio's Task(coro,
        # loop=self, name=None, context=None) has the C Task's type make a
        # dict of three keywords and parse it.  On 3.11 it is Task(coro,
        # loop=self), from anywhere the loop is open: as create_future().
        # Anything else is asyncio's create_task(), whose keywords differ
        # between versions.
        if kwargs or self._task_factory is not None:
            return super().create_task(coro, **kwargs)
        if _ASKING_COSTS_A_SYSCALL and not self._closed:
            task = _tasks.Task(coro, loop=self)
        elif _running_loop() is self:
            task = _tasks.Task(coro)
        else:
            return super().create_task(coro)
        if task._source_traceback:
            del task._source_traceback[-1]
        return task

    def _write_to_self(self):
        # Called by call_soon_threadsafe from any thread, and from signal
        # handlers.  One wakeup is enough until the loop takes it: the loop
        # clears the flag before it looks at the ready queue and polls, so a
        # callback queued after that finds the flag clear and wakes the
        # loop itself.  The lock keeps close() from freeing the C loop
        # under the write.
        if self._wakeup_pending:
            return
        self._wakeup_pending = True
        with self._wakeup_lock:
            if self._cloop is not None:
                lib.loop_wakeup(self._cloop)

    def _process_events(self, event_list):
        raise NotImplementedError("the C loop dispatches its own events")

    # ---- one iteration -------------------------------------------------

    def run_forever(self):
        # The lag counts from here (the first iterations may not poll), and
        # the time until the loop runs again is not lag.
        if self._cloop is not None:
            lib.loop_stats_resume(self._cloop)
        try:
            super().run_forever()
        finally:
            if self._cloop is not None:
                lib.loop_stats_pause(self._cloop)

    def _run_once(self):
        # asyncio's iterations, one after the other until the loop stops:
        # run_forever() would only check _stopping and call us again.  A
        # poll that finds nothing to run polls again inside _dispatch(), so
        # a server waiting for its next message stays there.  The debug and
        # timed runners take one iteration per call.
        ready = self._ready
        cloop = self._cloop
        popleft = ready.popleft
        while True:
            if not ready:
                later = self._dispatch(0 if self._stopping else -1)
            elif _poll_due(cloop):
                # Made here, not by _dispatch(): with callbacks ready most
                # polls find nothing (a stream's task, woken by the read
                # that the last poll delivered), and a call of _dispatch()
                # for that costs more than the poll (callgrind, 3.11,
                # streams echo: 1.5k instructions per round trip).
                self._wakeup_pending = False
                n = _loop_run_once(cloop, 0, self._events, _EVENTS_MAX)
                later = self._dispatch(0, n) if n else 0
            else:
                # Callbacks to run, and the C loop has nothing that could
                # report (no fd in epoll, no C callback, no timer due): its
                # non-blocking poll would find nothing, so the crossing (a
                # third of a call_soon() chain's time) is skipped.  A
                # pending wakeup only says that _ready is not empty, which
                # it is not.
                later = 0
            if self._ready_runner is not None:   # debug mode, slow-iteration reports
                self._ready_runner(self, len(ready))
                return
            ntodo = len(ready) - later
            # Read after the count: call_soon_threadsafe() sets it before
            # it queues its handle.
            locked = self._locked_handles
            for _ in (_RANGES[ntodo] if ntodo < 64 else range(ntodo)):
                handle = popleft()
                if handle._cancelled:
                    continue
                if locked and handle.__class__ is _LockedHandle:
                    handle._run()
                    continue
                args = handle._args
                try:
                    # Most callbacks take no argument or one (a future's
                    # done callbacks, a task's wakeup): run(f, *args) builds
                    # a list and a tuple and makes a generic call, which
                    # costs more than the run itself (callgrind, 3.11: 1770
                    # against 610 instructions without arguments).
                    if not args:
                        handle._context.run(handle._callback)
                    elif len(args) == 1:
                        handle._context.run(handle._callback, args[0])
                    else:
                        handle._context.run(handle._callback, *args)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    report_callback_exception(handle, exc)
            handle = None  # Break cycles when an exception occurred.
            if self._stopping:
                return

    def get_debug(self):
        return self._debug

    def set_debug(self, enabled):
        super().set_debug(enabled)
        self._choose_ready_runner()
        self._publish_debug()

    def _publish_debug(self):
        # asyncio's C Future and Task call loop.get_debug() each time one
        # is made (a future per read a stream waits for, per sock_recv()
        # wait, per sleep): a Python method costs a frame each time
        # (callgrind, 3.11: ~600 instructions).  The instance gets a C
        # callable answering the same value instead, replaced whenever the
        # value changes (asyncio sets _debug in __init__ and set_debug()
        # only).  Not when a subclass has its own get_debug(), nor over one
        # that someone else put on the instance (a mock).
        if type(self).get_debug is not BaseLoop.get_debug:
            return
        current = self.__dict__.get("get_debug")
        if current is None or _is_debug_answer(current):
            self.get_debug = _debug_answer(self._debug)

    def _choose_ready_runner(self):
        # What runs the ready callbacks when the plain loop of _run_once()
        # does not: one attribute, so that the plain case pays one check.
        # A function, not a bound method: that would be a cycle.
        if self._debug:
            self._ready_runner = BaseLoop._run_ready_debug
        elif self._slow_report is not None:
            self._ready_runner = BaseLoop._run_ready_timed
        else:
            self._ready_runner = None

    def _run_ready_timed(self, ntodo):
        ready = self._ready
        ran = list(_islice(ready, ntodo))
        t0 = _monotonic_ns()
        for _ in range(ntodo):
            handle = ready.popleft()
            if not handle._cancelled:
                handle._run()
        handle = None
        elapsed = _monotonic_ns() - t0
        threshold, hook = self._slow_report
        if elapsed < threshold:
            return
        self._slow_count += 1
        try:
            hook(elapsed / 1e9, [h for h in ran if not h._cancelled])
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self.call_exception_handler({
                "message": "Exception in the slow-iteration hook",
                "exception": exc,
                "loop": self,
            })

    def _run_ready_debug(self, ntodo):
        ready = self._ready
        for _ in range(ntodo):
            handle = ready.popleft()
            if handle._cancelled:
                continue
            try:
                self._current_handle = handle
                t0 = self.time()
                handle._run()
                dt = self.time() - t0
                if dt >= self.slow_callback_duration:
                    logger.warning("Executing %s took %.3f seconds",
                                   _compat.format_handle(handle), dt)
            finally:
                self._current_handle = None

    def _dispatch(self, timeout, n=0, events=None):
        """Polls the C loop (timeout -1: until something happens, or 0) and
        routes the events it reports.  With timeout -1 it polls again as
        long as the events leave nothing ready to run (one connection's
        message, typically, which the protocol got inline as below): a
        server waiting for its next message stays in this loop, without a
        Python call per message, and returns once a callback is ready, the
        loop is stopping, or after each poll in debug mode.

        The loop owns the ready queue, the timers and the fd watchers: a
        due timer or a ready fd puts its handle in the queue.  A stream
        belongs to its transport (transports.StreamTransport), which owns
        its read mode, its pending bytes and its write limits; the loop only
        hands it what the C loop reported and never touches its fields:
          LOOP_EV_DATA      the loop copies the bytes out of its arena (which
                            the next poll reuses) and calls
                            transport._data_read(bytes, size), or
                            transport._data_now(bytes, size), or gives them
                            to the protocol through transport._direct_read
                            (below)
          LOOP_EV_READABLE  transport._readable(): the transport reads
                            for itself
          EOF, ERROR, DRAINED, RESUME
                            transport._stream_event(kind, a, b)
        _data_read() and _readable() return the transport's read handle
        when it is to be queued (it delivers the bytes), else None.  A
        transport registers and unregisters its stream with _stream_opened()
        and _stream_closed().

        asyncio would queue every read handle behind the callbacks already
        ready and run it this iteration.  While nothing else is queued yet,
        running it right here for bytes the C loop read (LOOP_EV_DATA) is
        the same order and saves the trip through the queue: the loop then
        calls _data_now(), which does what _data_read() and the read handle
        would, or, for a read under BULK_READ while the transport's
        _direct_read is set (nothing pending, reading on: see
        StreamTransport._read_state_changed), what the read handle would do
        with the bytes itself: _direct_read.run(protocol.data_received, bytes),
        and transport._data_received_failed(exc) if that raises.  What the
        runs schedule belongs to the next iteration, so it is set aside and
        queued after this iteration's handles.  Returns how many handles
        were set aside so (at the end of _ready, not to run in this
        iteration).

        The events are read from an iterator over the array's (kind, fd, a,
        b) tuples.  When an inline run raises, the rest of them is queued by
        a call with that iterator (`events`, timeout 0), which does not
        poll; nor does a call with n, the count of events that a poll made
        by the caller (timeout 0) left in the array.
        """
        ready = self._ready
        cloop = self._cloop
        streams = self._streams
        arena = self._arena
        while True:
            if events is None:
                if not n:
                    self._wakeup_pending = False
                    n = _loop_run_once(cloop, timeout, self._events, _EVENTS_MAX)
                if n <= 0:
                    if n < 0:
                        raise os_error(n)
                    if timeout >= 0:
                        return 0
                events = _iter_events(self._event_views[n] if n < _EVENT_VIEWS
                                      else self._event_bytes[:n * _EVENT_BYTES])
                n = 0
                inline = not ready and self._ready_runner is None
            else:
                inline = False
            # What read handles run inline scheduled, for the next
            # iteration: in _ready itself while every event so far ran
            # inline, in a list made once one did not.
            later = None
            for kind, fd, a, b in events:
                if kind == EV_DATA:
                    try:
                        stream = streams[fd]
                    except KeyError:   # closed by a callback of this batch
                        continue
                    # a bytes at offset b.  Slicing the cffi buffer makes the
                    # bytes in one step; made in the call that takes them (no
                    # local), they are freed as it returns, before the next
                    # read's are allocated (1 KiB messages, 16 connections: a
                    # local that kept them alive until then cost glibc's
                    # _int_malloc 164 instructions more per message).  a is
                    # the size.
                    if not inline:
                        handle = stream._data_read(arena[b:b + a], a)
                        if handle is not None:
                            ready.append(handle)
                        continue
                    # The transport's read context, not its bound run(): a
                    # method object per connection is ~70 bytes of each idle
                    # connection's memory (idle_10k).
                    direct = stream._direct_read
                    try:
                        if direct is not None and a < BULK_READ:
                            try:
                                direct.run(stream._protocol.data_received,
                                           arena[b:b + a])
                            except (SystemExit, KeyboardInterrupt):
                                raise
                            except BaseException as exc:
                                stream._data_received_failed(exc)
                        else:
                            stream._data_now(arena[b:b + a], a)
                    except BaseException:
                        # (SystemExit, KeyboardInterrupt: the transport catches
                        # the rest.)  The events not routed yet are queued, as
                        # asyncio would have them.
                        later = list(ready)
                        ready.clear()
                        self._dispatch(0, 0, events)
                        ready.extend(later)
                        raise
                    continue
                if inline:
                    # A handle of this iteration gets queued: it runs before
                    # those that the inline runs scheduled.
                    inline = False
                    if ready:
                        later = list(ready)
                        ready.clear()
                if kind == EV_READABLE:
                    # Always queued: the transport's own read must come after
                    # the stream's other events of this poll (a flush that
                    # failed took the socket's error, which the read reports).
                    stream = streams.get(fd)
                    if stream is not None:
                        handle = stream._readable()
                        if handle is not None:
                            ready.append(handle)
                elif kind == EV_TIMER:
                    handle = self._timers.pop(a, None)
                    if handle is not None:
                        handle._scheduled = False
                        ready.append(handle)
                elif kind == EV_IO:
                    mask = a
                    if mask & READABLE:
                        handle = self._readers.get(fd)
                        if handle is not None:
                            if handle._cancelled:
                                self._remove_reader(fd)
                            else:
                                ready.append(handle)
                    if mask & WRITABLE:
                        handle = self._writers.get(fd)
                        if handle is not None:
                            if handle._cancelled:
                                self._remove_writer(fd)
                            else:
                                ready.append(handle)
                elif (kind == EV_DRAINED or kind == EV_RESUME or kind == EV_EOF
                      or kind == EV_ERROR):
                    stream = streams.get(fd)
                    if stream is not None:
                        stream._stream_event(kind, a, b)
                elif kind == EV_CHILD:
                    # fd is the pid.
                    child = self._children.pop(fd, None)
                    if child is not None:
                        # None: reaped by someone else, the status is lost.
                        returncode = None if b else a
                        self._call_soon(child[0], (fd, returncode), child[1])
                # No other kind exists (casyncio.h): nothing else is routed.
            if inline:
                # Only inline runs: all that is queued is theirs.
                count = len(ready)
            elif later:
                ready.extend(later)
                count = len(later)
            else:
                count = 0
            if (timeout >= 0 or ready or self._stopping
                    or self._ready_runner is not None):
                return count
            events = None

    def _stream_opened(self, fd, transport):
        """fd is now a C stream of this loop, its events transport's."""
        self._streams[fd] = transport

    def _stream_closed(self, fd):
        self._streams.pop(fd, None)

    # ---- fd watchers ---------------------------------------------------

    def _ensure_fd_no_transport(self, fd):
        fileno = fd
        if not isinstance(fileno, int):
            try:
                fileno = int(fileno.fileno())
            except (AttributeError, TypeError, ValueError):
                raise ValueError(f"Invalid file object: {fd!r}") from None
        transport = self._streams.get(fileno)
        if transport is None:
            transport = self._transports.get(fileno)
        if transport is not None and not transport.is_closing():
            raise RuntimeError(
                f"File descriptor {fd!r} is used by transport {transport!r}")

    def _add_watcher(self, watchers, add, fd, callback, args, context=None):
        self._check_closed()
        fd = _fileobj_to_fd(fd)
        handle = make_handle(callback, args, self, context)
        rc = add(self._cloop, fd, NULL, NULL)
        if rc < 0:
            raise os_error(rc)
        return self._set_watcher(watchers, fd, handle)

    def _set_watcher(self, watchers, fd, handle):
        """Makes handle fd's entry in watchers (_readers or _writers), once
        the C loop watches fd: the one it replaces is cancelled, as asyncio's
        add_reader() cancels the handle it replaces."""
        old = watchers.get(fd)
        watchers[fd] = handle
        if old is not None:
            old.cancel()
        return handle

    def _remove_watcher(self, watchers, remove, fd):
        if self.is_closed():
            return False
        # An invalid fd or file object raises ValueError, as the lookup in
        # asyncio's selector does.
        fd = _fileobj_to_fd(fd)
        handle = watchers.pop(fd, None)
        if handle is None:
            return False
        remove(self._cloop, fd)
        handle.cancel()
        return True

    # context: 3.15's selector loop takes one (its transports pass theirs).
    def _add_reader(self, fd, callback, *args, context=None):
        return self._add_watcher(self._readers, lib.loop_add_reader,
                                 fd, callback, args, context)

    def _add_writer(self, fd, callback, *args, context=None):
        return self._add_watcher(self._writers, lib.loop_add_writer,
                                 fd, callback, args, context)

    def _remove_reader(self, fd):
        return self._remove_watcher(self._readers, lib.loop_remove_reader, fd)

    def _remove_writer(self, fd):
        return self._remove_watcher(self._writers, lib.loop_remove_writer, fd)

    def add_reader(self, fd, callback, *args):
        self._ensure_fd_no_transport(fd)
        self._add_reader(fd, callback, *args)

    def remove_reader(self, fd):
        self._ensure_fd_no_transport(fd)
        return self._remove_reader(fd)

    def add_writer(self, fd, callback, *args):
        self._ensure_fd_no_transport(fd)
        self._add_writer(fd, callback, *args)

    def remove_writer(self, fd):
        self._ensure_fd_no_transport(fd)
        return self._remove_writer(fd)

    # ---- introspection -------------------------------------------------

    def stats(self) -> LoopStats:
        """A snapshot of the loop's counters, cheap enough to sample while a
        server runs (one call into C).  py_async_lib.health.LoopStats says
        what each field is."""
        self._check_closed()
        out = ffi.new("loop_stats_t *")
        lib.loop_stats(self._cloop, out)
        stats = {name: getattr(out, name) for name in _STATS_FIELDS}
        stats["iter_hist"] = list(stats["iter_hist"])
        stats["batch_hist"] = list(stats["batch_hist"])
        stats["slow_iterations"] = self._slow_count
        return stats

    def report_slow_iterations(self, threshold: "float | None",
                               hook: "SlowIterationHook | None" = None) -> None:
        """Reports every iteration whose callbacks take `threshold` seconds
        or more, without debug mode: hook(seconds, handles) is called after
        it with the handles it ran (by default, one warning on asyncio's
        logger names them).  None turns it off (the default).  While on, an
        iteration costs two clock reads and a copy of its ready queue; while
        off, nothing.  In debug mode, asyncio's per-callback report
        (slow_callback_duration) runs instead."""
        if threshold is None:
            self._slow_report = None
        elif not threshold >= 0:
            raise ValueError(f"threshold must be >= 0 or None, not {threshold!r}")
        else:
            self._slow_report = (int(threshold * 1e9),
                                 log_slow_iteration if hook is None else hook)
        self._choose_ready_runner()
