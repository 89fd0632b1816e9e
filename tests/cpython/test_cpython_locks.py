"""CPython's test.test_asyncio.test_locks, run on py_async_lib's loop."""
from test.test_asyncio.test_locks import *  # noqa: F401,F403
