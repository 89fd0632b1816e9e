"""Event loop factories the benchmarks compare.

Every loop is described by a name and a zero-argument factory returning a new,
not yet running event loop.  ``asyncio`` is always available; ``uvloop`` and
``py_async_lib`` are used only when they import (and, for py_async_lib, when
the package really exposes ``new_event_loop``: an empty or half-built checkout
imports as a namespace package and must not count as available).
"""

from __future__ import annotations

import asyncio
import importlib
import platform
from typing import Callable, Dict, Optional, Tuple

LoopFactory = Callable[[], asyncio.AbstractEventLoop]

#: All loops, in display order; OURS is the loop under development.
LOOP_NAMES: Tuple[str, ...] = ("asyncio", "uvloop", "py_async_lib")
OURS = "py_async_lib"
BASELINE = "asyncio"
RIVAL = "uvloop"


class LoopUnavailable(Exception):
    """The requested loop cannot be imported or created."""


def get_loop_factory(name: str) -> LoopFactory:
    """Return the factory for loop *name* or raise LoopUnavailable."""
    if name == "asyncio":
        return asyncio.SelectorEventLoop
    if name == "uvloop":
        try:
            mod = importlib.import_module("uvloop")
        except Exception as exc:  # ImportError, or a broken install
            raise LoopUnavailable(f"uvloop not importable: {exc!r}") from exc
        return mod.new_event_loop
    if name == "py_async_lib":
        try:
            mod = importlib.import_module("py_async_lib")
        except Exception as exc:
            raise LoopUnavailable(f"py_async_lib not importable: {exc!r}") from exc
        factory = getattr(mod, "new_event_loop", None)
        if not callable(factory):
            raise LoopUnavailable(
                "py_async_lib has no new_event_loop() (package not built yet?)"
            )
        return factory
    if name == "floor":  # the Python floor of the loop-level rows (not a usable loop)
        from benchmarks.floor import FloorLoop
        return FloorLoop
    raise LoopUnavailable(f"unknown loop {name!r}; known: {', '.join(LOOP_NAMES)}")


def loop_version(name: str) -> Optional[str]:
    if name == "asyncio":
        return platform.python_version()
    try:
        mod = importlib.import_module(name)
    except Exception:
        return None
    return getattr(mod, "__version__", None)


def probe(name: str) -> Tuple[bool, str]:
    """Check that loop *name* can create a loop and run a trivial coroutine.

    Returns (available, reason-or-version).  Meant to run in a child process:
    a broken C extension may crash instead of raising.
    """
    try:
        factory = get_loop_factory(name)
    except LoopUnavailable as exc:
        return False, str(exc)
    try:
        loop = factory()
        try:
            result = loop.run_until_complete(_probe_coro())
        finally:
            loop.close()
        if result != 42:
            return False, f"probe coroutine returned {result!r}"
    except Exception as exc:
        return False, f"{name} loop failed a trivial run: {exc!r}"
    return True, loop_version(name) or "unknown version"


async def _probe_coro() -> int:
    await asyncio.sleep(0)
    await asyncio.sleep(0.001)
    return 42


def available_loops() -> Dict[str, Optional[LoopFactory]]:
    """In-process availability (used by the pytest suite)."""
    out: Dict[str, Optional[LoopFactory]] = {}
    for name in LOOP_NAMES:
        try:
            out[name] = get_loop_factory(name)
        except LoopUnavailable:
            out[name] = None
    return out
