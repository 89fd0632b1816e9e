"""The cffi binding of libcasyncio, and the one way to turn its errors into
Python exceptions."""
import os

from ._casyncio import ffi, lib

__all__ = ["ffi", "lib", "NULL", "os_error", "check",
           "EV_IO", "EV_TIMER", "EV_DATA", "EV_EOF", "EV_ERROR", "EV_DRAINED",
           "EV_RESUME", "EV_CHILD", "EV_READABLE", "READABLE", "WRITABLE"]

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


def os_error(rc):
    """The OSError (or subclass, picked by errno) for a negative return code."""
    err = -rc
    return OSError(err, os.strerror(err))


def check(rc):
    """Returns rc, raising the matching OSError if it is a negative errno."""
    if rc < 0:
        raise os_error(rc)
    return rc
