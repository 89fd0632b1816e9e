"""cffi out-of-line API-mode builder for py_async_lib._casyncio.

The extension links libcasyncio.so, which ships inside the package beside it
and is found through an $ORIGIN rpath (no LD_LIBRARY_PATH).  `python
build_ffi.py` builds it in place (the Makefile's `ffi` target); setup.py
builds it for `pip install .` through `cffi_modules`.
"""
import os
import shutil
import sys

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
LIBDIR = os.path.join(HERE, "libcasyncio")

ffibuilder = FFI()
with open(os.path.join(HERE, "py_async_lib", "_casyncio_cdef.h")) as f:
    ffibuilder.cdef(f.read())

# cffi releases and retakes the GIL around every call.  No libcasyncio call
# waits except a loop_run_once() that may poll, and most take less time than
# that hand-over (a drop and a take of the GIL: ~600 instructions, 5 % of a
# 1 KiB echo message, which makes one loop_write()).  So the wrappers keep
# the GIL, and pyal_run_once() lets it go only around a poll that may block.
PREAMBLE = r"""
#include <stdint.h>
#include <time.h>

#include "casyncio.h"

#undef Py_BEGIN_ALLOW_THREADS
#undef Py_END_ALLOW_THREADS
#define Py_BEGIN_ALLOW_THREADS {
#define Py_END_ALLOW_THREADS }

static int pyal_run_once(loop_t *loop, int timeout_ms, loop_event_t *events,
                         int max)
{
    PyThreadState *ts;
    int rc;

    if (timeout_ms == 0)
        return loop_run_once(loop, 0, events, max);
    ts = PyEval_SaveThread();
    rc = loop_run_once(loop, timeout_ms, events, max);
    PyEval_RestoreThread(ts);
    return rc;
}

/* 1 when loop_run_once(loop, 0, ...) could report or run something (an fd
 * in epoll, a queued C callback or event, a timer due: loop_poll_hint()),
 * 0 when it would find nothing.  One call instead of two reads of the hint
 * and one of the clock in Python: a third of their cost, which the loop
 * pays after every batch of callbacks. */
static int pyal_poll_due(const loop_t *loop)
{
    const int64_t *hint = loop_poll_hint(loop);
    struct timespec now;

    if (hint[0] != 0)
        return 1;
    if (hint[1] == INT64_MAX)
        return 0;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return hint[1] <= (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}
"""

ffibuilder.set_source(
    "py_async_lib._casyncio",
    PREAMBLE,
    include_dirs=[LIBDIR],
    library_dirs=[LIBDIR],
    libraries=["casyncio"],
    extra_compile_args=["-O2"],
    extra_link_args=["-Wl,-rpath,$ORIGIN"],
)


def build_in_place():
    """Compiles the module under build/ffi/<python> and copies it into
    py_async_lib/.  Each interpreter has its own build directory (its object
    file is compiled against its own Python.h) and its own module name
    (_casyncio.cpython-311-..., -314-...), so the builds of several Pythons
    coexist in one tree and all share py_async_lib/libcasyncio.so."""
    tmpdir = os.path.join(HERE, "build", "ffi", sys.implementation.cache_tag)
    built = ffibuilder.compile(tmpdir=tmpdir, verbose=False)
    dest = os.path.join(HERE, "py_async_lib", os.path.basename(built))
    shutil.copy2(built, dest)
    return dest


if __name__ == "__main__":
    print(build_in_place(), file=sys.stderr)
