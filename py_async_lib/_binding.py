"""The cffi binding of libcasyncio, and the one way to turn its errors into
Python exceptions."""
import os

from ._casyncio import ffi, lib

__all__ = ["ffi", "lib", "NULL", "os_error", "check",
           "EV_IO", "EV_TIMER", "EV_DATA", "EV_EOF", "EV_ERROR", "EV_DRAINED",
           "EV_RESUME", "EV_CHILD", "EV_READABLE", "READABLE", "WRITABLE",
           "EVENT_INTS", "HINT_INTS"]

NULL = ffi.NULL

# The kinds of loop_event_t (see casyncio.h) and the readiness bits, bound
# once here for every module that reads events.
EV_IO = lib.LOOP_EV_IO
EV_TIMER = lib.LOOP_EV_TIMER
EV_DATA = lib.LOOP_EV_DATA
EV_EOF = lib.LOOP_EV_EOF
EV_ERROR = lib.LOOP_EV_ERROR
EV_DRAINED = lib.LOOP_EV_DRAINED
EV_RESUME = lib.LOOP_EV_RESUME
EV_CHILD = lib.LOOP_EV_CHILD
EV_READABLE = lib.LOOP_EV_READABLE
READABLE = lib.LOOP_READABLE
WRITABLE = lib.LOOP_WRITABLE

# base_loop reads the event array as flat int64s, EVENT_INTS per event
# (kind, fd, a, b), and the poll hint as HINT_INTS int64s: say so at import
# if the library was built with another layout, instead of misreading it.
EVENT_INTS = 4
HINT_INTS = 2
_FIELDS = ("kind", "fd", "a", "b")
if (ffi.sizeof("int64_t") != 8
        or ffi.sizeof("loop_event_t") != 8 * EVENT_INTS
        or [ffi.offsetof("loop_event_t", f) for f in _FIELDS] != [0, 8, 16, 24]):
    raise ImportError("libcasyncio's loop_event_t is not the four int64 "
                      "fields (kind, fd, a, b) that py_async_lib reads")


def os_error(rc):
    """The OSError (or subclass, picked by errno) for a negative return code."""
    err = -rc
    return OSError(err, os.strerror(err))


def check(rc):
    """Returns rc, raising the matching OSError if it is a negative errno."""
    if rc < 0:
        raise os_error(rc)
    return rc
