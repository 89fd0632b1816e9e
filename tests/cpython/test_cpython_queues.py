"""CPython's test.test_asyncio.test_queues, run on py_async_lib's loop."""
from test.test_asyncio.test_queues import *  # noqa: F401,F403
