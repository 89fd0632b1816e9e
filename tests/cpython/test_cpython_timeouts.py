"""CPython's test.test_asyncio.test_timeouts, run on py_async_lib's loop."""
from test.test_asyncio.test_timeouts import *  # noqa: F401,F403
