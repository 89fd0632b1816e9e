"""CPython's test.test_asyncio.test_threads, run on py_async_lib's loop."""
from test.test_asyncio.test_threads import *  # noqa: F401,F403
