"""CPython's test.test_asyncio.test_subprocess, run on py_async_lib's loop.

Its watcher classes (SubprocessThreadedWatcherTests...) make their loops
with policy.new_event_loop(), which conftest.py makes ours; the watcher they
attach is then never asked about our children, which the loop watches
through pidfds."""
from test.test_asyncio.test_subprocess import *  # noqa: F401,F403
