"""py_async_lib: a drop-in asyncio event loop whose engine is written in C.

    import py_async_lib
    py_async_lib.run(main())                        # asyncio.run() on our loop
    asyncio.run(main(), loop_factory=py_async_lib.new_event_loop)   # 3.12+
    with asyncio.Runner(loop_factory=py_async_lib.new_event_loop) as r:
        r.run(main())

or, where asyncio still has event loop policies (until Python 3.16; 3.14
deprecated them):

    py_async_lib.install()          # asyncio.run() and friends now use it
"""
import asyncio
import warnings
from typing import Any, Coroutine, Optional, TypeVar

from . import _compat
from .health import HISTOGRAM_BOUNDS, LoopStats
from .loop import EventLoop

# The one place the version is written: pyproject.toml and the Makefile
# (the C library's file name and casyncio.pc) read it from here.
__version__ = "0.1.0"

# asyncio 3.14 keeps set_event_loop_policy() in __all__ but no policy class.
__all__ = ["EventLoop", "new_event_loop", "run", "LoopStats",
           "HISTOGRAM_BOUNDS"]
if _compat.HAS_POLICIES:
    __all__.append("install")
    if not _compat.POLICIES_DEPRECATED:
        __all__.append("EventLoopPolicy")

_INSTEAD = ("use py_async_lib.run(main()), asyncio.run(main(), loop_factory="
            "py_async_lib.new_event_loop), asyncio.Runner(loop_factory="
            "py_async_lib.new_event_loop) or py_async_lib.new_event_loop() "
            "instead (and loop_factory = py_async_lib.EventLoop in an "
            "IsolatedAsyncioTestCase)")


_T = TypeVar("_T")


def new_event_loop() -> EventLoop:
    """A new py_async_lib event loop (a loop_factory for asyncio.run() and
    asyncio.Runner; as a class attribute, IsolatedAsyncioTestCase's
    loop_factory, take the class, EventLoop, which does not bind)."""
    return EventLoop()


def run(main: Coroutine[Any, Any, _T], *,
        debug: Optional[bool] = None) -> _T:
    """asyncio.run(main) on a new py_async_lib loop, without touching the
    event loop policy: the same checks, cancellation and shutdown."""
    if _compat.RUN_HAS_LOOP_FACTORY:
        return asyncio.run(main, debug=debug, loop_factory=new_event_loop)
    # 3.11: asyncio.run()'s own lines, with a loop factory.
    if _compat.get_running_loop_or_none() is not None:
        raise RuntimeError(
            "asyncio.run() cannot be called from a running event loop")
    with asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
        return runner.run(main)


if _compat.HAS_POLICIES:
    class EventLoopPolicy(_compat.UnixDefaultEventLoopPolicy):
        """asyncio's Unix policy, whose loops are py_async_lib's.

        Our loops see their children exit through pidfds and need no child
        watcher.  Where asyncio still has child watchers (3.11 to 3.13), a
        watcher the application installs itself with set_child_watcher()
        is used, as asyncio would."""

        _loop_factory = EventLoop

        if _compat.HAS_CHILD_WATCHERS:
            _explicit_child_watcher = None

            def set_child_watcher(self, watcher):
                super().set_child_watcher(watcher)
                self._explicit_child_watcher = watcher

    _Policy = EventLoopPolicy
    if _compat.POLICIES_DEPRECATED:
        # Served by __getattr__, which warns as asyncio.DefaultEventLoopPolicy
        # does on 3.14.
        del EventLoopPolicy
else:
    _Policy = None


def install() -> None:
    """Makes py_async_lib the event loop of asyncio.run(), new_event_loop()...
    by setting asyncio's event loop policy to EventLoopPolicy().

    Deprecated where asyncio.set_event_loop_policy() is (3.14, warns the
    same), RuntimeError where asyncio has no policies (3.16)."""
    if _Policy is None:
        raise RuntimeError(
            f"py_async_lib.install() sets asyncio's event loop policy, and "
            f"Python {_compat.PYTHON} has none: {_INSTEAD}")
    if _compat.POLICIES_DEPRECATED:
        warnings.warn(
            f"'py_async_lib.install' is deprecated and slated for removal in "
            f"Python 3.16, as asyncio.set_event_loop_policy() is: {_INSTEAD}",
            DeprecationWarning, stacklevel=2)
    _compat.set_event_loop_policy(_Policy())


def __getattr__(name: str) -> Any:
    if name == "EventLoopPolicy":
        if _Policy is None:
            raise AttributeError(
                f"py_async_lib.EventLoopPolicy is an asyncio event loop "
                f"policy, and Python {_compat.PYTHON} has none: {_INSTEAD}")
        warnings.warn(
            f"'py_async_lib.EventLoopPolicy' is deprecated and slated for "
            f"removal in Python 3.16, as asyncio.DefaultEventLoopPolicy is: "
            f"{_INSTEAD}", DeprecationWarning, stacklevel=2)
        return _Policy
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
