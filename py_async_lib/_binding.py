"""The cffi binding of libcasyncio, and the one way to turn its errors into
Python exceptions."""
import os

from ._casyncio import ffi, lib

__all__ = ["ffi", "lib", "NULL", "os_error", "check"]

NULL = ffi.NULL


def os_error(rc):
    """The OSError (or subclass, picked by errno) for a negative return code."""
    err = -rc
    return OSError(err, os.strerror(err))


def check(rc):
    """Returns rc, raising the matching OSError if it is a negative errno."""
    if rc < 0:
        raise os_error(rc)
    return rc
