"""Callback handles: asyncio's own Handle and TimerHandle, extended only
where the C loop needs it (a timer remembers its C timer id)."""
from asyncio import events, format_helpers

__all__ = ["Handle", "TimerHandle", "report_callback_exception"]

Handle = events.Handle


class TimerHandle(events.TimerHandle):
    """asyncio.TimerHandle that knows its id in the C timer heap."""

    __slots__ = ("_tid",)


def report_callback_exception(handle, exc):
    """What Handle._run does when its callback raises: hand the error to the
    loop's exception handler.  The loop runs callbacks inline for speed and
    calls this only on the rare error path."""
    cb = format_helpers._format_callback_source(handle._callback, handle._args)
    context = {
        "message": f"Exception in callback {cb}",
        "exception": exc,
        "handle": handle,
    }
    if handle._source_traceback:
        context["source_traceback"] = handle._source_traceback
    handle._loop.call_exception_handler(context)
