"""Callback handles: asyncio's Handle and TimerHandle (same attributes, same
repr, same cancel()), made by functions that do less than asyncio's
constructors (no Python __init__), and a TimerHandle that remembers its id
in the C timer heap."""
import contextvars
import sys

from . import _compat

__all__ = ["Handle", "TimerHandle", "make_handle", "make_timer_handle",
           "report_callback_exception"]

_copy_context = contextvars.copy_context
_extract_stack = _compat.extract_stack


class Handle(_compat.Handle):
    """asyncio.Handle, made without a Python __init__: Handle() is a bare
    instance (allocated in C, no frame) whose slots the maker sets.
    make_handle() is the constructor; call_soon() and
    call_soon_threadsafe() do its stores inline (callgrind, 3.11: Handle()
    costs 860 instructions with its free, object.__new__(Handle) 1150, a
    Python __init__ 600 more)."""

    __slots__ = ()
    __init__ = object.__init__


def make_handle(callback, args, loop, context=None):
    """Handle(callback, args, loop, context) as asyncio's constructor makes
    it; in debug mode its _source_traceback ends at the caller."""
    handle = Handle()
    handle._context = _copy_context() if context is None else context
    handle._loop = loop
    handle._callback = callback
    handle._args = args
    handle._cancelled = False
    handle._repr = None
    if loop._debug:
        handle._source_traceback = _extract_stack(sys._getframe(1))
    else:
        handle._source_traceback = None
    return handle


class TimerHandle(_compat.TimerHandle):
    """asyncio.TimerHandle that knows its id in the C timer heap (_tid), made
    as Handle is: TimerHandle() is bare, make_timer_handle() the constructor
    (base_loop's _timer_at() does its stores inline)."""

    __slots__ = ("_tid",)
    __init__ = object.__init__

    def cancel(self):
        # asyncio's TimerHandle.cancel() and Handle.cancel() in one frame,
        # reading the loop's _debug instead of calling get_debug(): a
        # timeout cancels its timer whenever what it guards finishes first.
        if not self._cancelled:
            loop = self._loop
            loop._timer_handle_cancelled(self)
            self._cancelled = True
            if loop._debug:
                # As asyncio keeps it: what a slow-callback warning shows.
                self._repr = repr(self)
            self._callback = None
            self._args = None


def make_timer_handle(when, callback, args, loop, context=None):
    """TimerHandle(when, callback, args, loop, context) as asyncio's
    constructor makes it, not yet scheduled (_tid 0); in debug mode its
    _source_traceback ends at the caller."""
    timer = TimerHandle()
    timer._context = _copy_context() if context is None else context
    timer._loop = loop
    timer._callback = callback
    timer._args = args
    timer._cancelled = False
    timer._repr = None
    if loop._debug:
        timer._source_traceback = _extract_stack(sys._getframe(1))
    else:
        timer._source_traceback = None
    timer._when = when
    timer._scheduled = False
    timer._tid = 0
    return timer


def report_callback_exception(handle, exc):
    """What Handle._run does when its callback raises: hand the error to the
    loop's exception handler.  The loop runs callbacks inline for speed and
    calls this only on the rare error path.  The message is the one
    Handle._run builds on this Python version."""
    if _compat.FORMAT_CALLBACK_TAKES_DEBUG:
        cb = _compat.format_callback_source(
            handle._callback, handle._args, debug=handle._loop.get_debug())
    else:
        cb = _compat.format_callback_source(handle._callback, handle._args)
    context = {
        "message": f"Exception in callback {cb}",
        "exception": exc,
        "handle": handle,
    }
    if handle._source_traceback:
        context["source_traceback"] = handle._source_traceback
    handle._loop.call_exception_handler(context)
