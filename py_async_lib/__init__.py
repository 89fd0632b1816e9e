"""py_async_lib: a drop-in asyncio event loop whose engine is written in C.

    import py_async_lib
    py_async_lib.install()          # asyncio.run() and friends now use it

or, without touching the global policy:

    asyncio.Runner(loop_factory=py_async_lib.new_event_loop)
    py_async_lib.run(main())
"""
import asyncio

from ._compat import UnixDefaultEventLoopPolicy
from .loop import EventLoop

__all__ = ["EventLoop", "EventLoopPolicy", "new_event_loop", "install", "run"]
__version__ = "0.1.0"


def new_event_loop():
    """A new py_async_lib event loop."""
    return EventLoop()


class EventLoopPolicy(UnixDefaultEventLoopPolicy):
    """asyncio's Unix policy, whose loops are py_async_lib's.

    Our loops see their children exit through pidfds and need no child
    watcher.  The child-watcher API stays for code that uses it: a watcher
    the application installs itself with set_child_watcher() is used, as
    asyncio would."""

    _explicit_child_watcher = None

    def set_child_watcher(self, watcher):
        super().set_child_watcher(watcher)
        self._explicit_child_watcher = watcher

    _loop_factory = EventLoop


def install():
    """Makes py_async_lib the event loop of asyncio.run(), new_event_loop()..."""
    asyncio.set_event_loop_policy(EventLoopPolicy())


def run(main, *, debug=None):
    """asyncio.run(main) on a py_async_lib loop, without changing the policy."""
    with asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
        return runner.run(main)
