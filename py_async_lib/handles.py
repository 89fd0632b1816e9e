"""Callback handles: asyncio's Handle and TimerHandle (same attributes, same
repr, same cancel()), with a constructor that does less on the hot path, and
a TimerHandle that remembers its id in the C timer heap."""
import contextvars
import sys

from . import _compat

__all__ = ["Handle", "TimerHandle", "report_callback_exception"]

_copy_context = contextvars.copy_context
_extract_stack = _compat.extract_stack


class Handle(_compat.Handle):
    """asyncio.Handle whose constructor reads loop._debug directly instead of
    calling loop.get_debug(): every call_soon() makes one."""

    __slots__ = ()

    def __init__(self, callback, args, loop, context=None):
        if context is None:
            context = _copy_context()
        self._context = context
        self._loop = loop
        self._callback = callback
        self._args = args
        self._cancelled = False
        self._repr = None
        if loop._debug:
            self._source_traceback = _extract_stack(sys._getframe(1))
        else:
            self._source_traceback = None


class TimerHandle(_compat.TimerHandle):
    """asyncio.TimerHandle that knows its id in the C timer heap."""

    __slots__ = ("_tid",)

    def __init__(self, when, callback, args, loop, context=None):
        # Handle.__init__'s lines, inline on purpose: calling it would put
        # its frame in _source_traceback and costs 18 % more per timer
        # (callgrind, 3.11: 4770 instead of 4053 instructions each).
        if context is None:
            context = _copy_context()
        self._context = context
        self._loop = loop
        self._callback = callback
        self._args = args
        self._cancelled = False
        self._repr = None
        if loop._debug:
            self._source_traceback = _extract_stack(sys._getframe(1))
        else:
            self._source_traceback = None
        self._when = when
        self._scheduled = False
        self._tid = 0


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
