"""Reference columns of the benchmark table: the limits, measured in the same
run as the loops.

``floor``       the Python floor.  Loop-level rows run on ``FloorLoop``
                (benchmarks/floor.py: slotted handle, deque, context.run,
                heapq); network rows are served by benchmarks/floor_server.py
                (libcasyncio through py_async_lib's own cffi binding, one
                crossing per iteration): the Protocol rows by the same
                Protocol classes with no asyncio at all; the streams and
                sock_* rows (``--api``) by workloads.py's own servers on
                ``FloorIOLoop`` (benchmarks/floor_io.py), since every loop
                runs those through asyncio's stream classes and a Task.
``c_casyncio``  examples/echo_server.c: the echo server in C on libcasyncio
                alone (build/echo_server, built by ``make``).  Echo rows only.
``c_epoll``     benchmarks/epoll_echo.c: a plain epoll server in C
                (build/epoll_echo, ``make loadgen``, or compiled on demand).
                Echo and HTTP rows.

The two C servers are "the C limit": what the engine costs (c_casyncio
against c_epoll) and what Python costs (the loops against c_casyncio).  The
echo rows of every API (Protocol, streams, sock_*) share one C limit:
echoing the bytes is the work, and what the API adds shows against it; each
API has its own floor, so that ours/floor is what our loop costs beyond the
least any Python-level loop pays for that API.  A reference that has
nothing to say for a row (C servers on the loop-level rows, c_casyncio on
HTTP) reports ``skipped``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from benchmarks.workloads import (BENCH_DIR, RunOptions, Workload, run_network,
                                  start_external)

FLOOR = "floor"
C_CASYNCIO = "c_casyncio"
C_EPOLL = "c_epoll"
REFERENCES: Tuple[str, ...] = (FLOOR, C_CASYNCIO, C_EPOLL)

REPO_ROOT = BENCH_DIR.parent
ECHO_SERVER = REPO_ROOT / "build" / "echo_server"
EPOLL_ECHO_SRC = BENCH_DIR / "epoll_echo.c"


def _epoll_echo_binary() -> Path:
    """build/epoll_echo, compiled with cc when missing or stale."""
    target = REPO_ROOT / "build" / "epoll_echo"
    if target.is_file() and target.stat().st_mtime >= EPOLL_ECHO_SRC.stat().st_mtime:
        return target
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise RuntimeError("no C compiler for benchmarks/epoll_echo.c; run `make loadgen`")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    proc = subprocess.run([cc, "-O2", "-o", str(tmp), str(EPOLL_ECHO_SRC)],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"could not build epoll_echo: {proc.stderr.strip()}")
    os.replace(tmp, target)
    return target


def probe_reference(name: str) -> Tuple[bool, str]:
    """Can reference *name* run here?  (available, reason-or-description)."""
    if name == FLOOR:
        try:
            import py_async_lib._casyncio  # noqa: F401  (the network floor)
        except Exception as exc:
            return True, f"loop rows only (no cffi module for this Python: {exc!r}; " \
                         "`make ffi PYTHON=...`)"
        return True, "FloorLoop + floor_server/floor_io (cffi)"
    if name == C_CASYNCIO:
        if not os.access(ECHO_SERVER, os.X_OK):
            return False, f"{ECHO_SERVER} missing; run `make`"
        return True, "examples/echo_server.c"
    if name == C_EPOLL:
        try:
            _epoll_echo_binary()
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            return False, str(exc)
        return True, "benchmarks/epoll_echo.c"
    return False, f"unknown reference {name!r}"


def server_argv(name: str, workload: Workload) -> Optional[List[str]]:
    """The reference server's command for a network workload, or None."""
    spec = workload.spec
    assert spec is not None
    if name == FLOOR:
        return [sys.executable, "-m", "benchmarks.floor_server"] + (
            ["--http"] if spec.protocol == "http" else []) + (
            ["--api", spec.api] if spec.api != "protocol" else [])
    if name == C_CASYNCIO:
        return [str(ECHO_SERVER)] if spec.protocol == "echo" else None
    if name == C_EPOLL:
        return [str(_epoll_echo_binary())] + (["--http"] if spec.protocol == "http" else [])
    raise ValueError(name)


def skip_reason(name: str, workload: Workload) -> Optional[str]:
    """Why reference *name* has no figure for *workload* (None: it has one).
    Decided without running anything, so the parent process skips these."""
    if workload.kind == "loop":
        return None if name == FLOOR else "no C reference for loop-level rows"
    if name == C_CASYNCIO and workload.spec is not None and workload.spec.protocol != "echo":
        return "examples/echo_server.c serves echo only"
    return None


def run_reference(name: str, workload: Workload, options: RunOptions) -> Dict[str, Any]:
    """One measurement of reference *name* on *workload*: the result dict of
    Workload.run, or {"skipped": why}."""
    if workload.kind == "loop":
        if name != FLOOR:
            return {"skipped": "no C reference for loop-level rows"}
        from benchmarks.floor import FloorLoop
        loop = FloorLoop()
        asyncio.set_event_loop(loop)
        try:
            return workload.run(loop, options)
        finally:
            asyncio.set_event_loop(None)
            loop.close()
    if name == FLOOR:
        try:
            import py_async_lib._casyncio  # noqa: F401
        except Exception as exc:
            return {"skipped": f"no cffi module for this Python ({exc!r})"}
    argv = server_argv(name, workload)
    if argv is None:
        return {"skipped": skip_reason(name, workload) or "not applicable"}
    spec = dataclasses.replace(workload.spec, start=functools.partial(start_external, argv))
    # The harness side (starting the server, waiting for the load
    # generator) runs on a stdlib loop; the server is another process.
    loop = asyncio.SelectorEventLoop()
    try:
        return run_network(loop, spec, options)
    finally:
        loop.close()
